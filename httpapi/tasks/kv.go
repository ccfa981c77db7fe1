package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"gpt-load/events"
)

// Bucket is the key-value bucket of the cluster-wide task slot.
const Bucket = "gl_tasks"

const slotKey = "slot"

// KVConfig configures a KV store.
type KVConfig struct {
	Node     string        // this node, recorded as the owner of the tasks it runs
	Replicas int           // 1 embedded, 3 in a cluster
	Lease    time.Duration // a running task not renewed for this long has lost its node (default 10 s)
	Now      func() time.Time
}

// KV keeps the slot in a JetStream key-value bucket, so that every node of a cluster
// sees the same task: Begin creates the slot entry if there is none, or replaces a
// finished one by revision (a compare-and-set: of two nodes beginning at once, one gets
// ErrBusy); the node that runs the task renews its entry every Lease/3 while it runs. A
// running task whose entry was not renewed for Lease belongs to a node that died: it is
// shown as failed, and the slot is free again.
//
// Reads are direct gets, which any replica of the bucket may answer: Current on one node
// can lag a write made on another by the milliseconds a replica takes to apply it. The
// claim itself is never stale: a create or an update by revision is decided by the
// bucket's leader.
type KV struct {
	kv  jetstream.KeyValue
	js  jetstream.JetStream
	cfg KVConfig
	log zerolog.Logger

	mu    sync.Mutex // serialises this node's writes of its own task
	own   *kvEntry   // the task this node runs, nil when none
	rev   uint64     // revision of the last write of own
	renew context.CancelFunc
}

// kvEntry is the slot as stored: the status with what the API does not show.
type kvEntry struct {
	ID     string `json:"id"`
	Node   string `json:"node"`
	Status Status `json:"status"`
}

// OpenKV creates or finds the bucket; create retries while the cluster is not ready.
func OpenKV(ctx context.Context, js jetstream.JetStream, cfg KVConfig, log zerolog.Logger) (*KV, error) {
	if cfg.Lease <= 0 {
		cfg.Lease = 10 * time.Second
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var kv jetstream.KeyValue
	err := events.Retry(ctx, log, "create key-value bucket "+Bucket, func(ctx context.Context) (err error) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      Bucket,
			Description: "gpt-load: the one admin task slot of the cluster",
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return &KV{kv: kv, js: js, cfg: cfg, log: log}, nil
}

// read returns the slot entry and its revision; nil and 0 when there is none. It reads
// as KV.Get does, by a direct get, which a replica may answer before it has applied the
// latest write: good for showing the status, not for deciding on it (readLeader).
func (s *KV) read(ctx context.Context) (*kvEntry, uint64, error) {
	e, err := s.kv.Get(ctx, slotKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read the task slot: %w", err)
	}
	return s.decode(e.Value(), e.Created(), e.Revision())
}

func (s *KV) decode(raw []byte, created time.Time, rev uint64) (*kvEntry, uint64, error) {
	var ent kvEntry
	if err := json.Unmarshal(raw, &ent); err != nil {
		return nil, 0, fmt.Errorf("decode the task slot: %w", err)
	}
	// A running task whose node stopped renewing it is over. The entry's time is the
	// server's, stamped at the last renewal.
	if ent.Status.IsRunning && s.cfg.Now().Sub(created) > s.cfg.Lease {
		ent.Status = s.orphaned(ent, created)
	}
	return &ent, rev, nil
}

// readLeader reads the slot from the leader of the bucket's stream, which has every
// acknowledged write: Begin decides on it, so that a task that has just finished on
// another node never makes the slot look busy.
func (s *KV) readLeader(ctx context.Context) (*kvEntry, uint64, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": "$KV." + Bucket + "." + slotKey})
	msg, err := s.js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_"+Bucket, req)
	if err != nil {
		return nil, 0, fmt.Errorf("read the task slot: %w", err)
	}
	var resp struct {
		Message *struct {
			Seq  uint64    `json:"seq"`
			Data []byte    `json:"data"`
			Time time.Time `json:"time"`
		} `json:"message"`
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, 0, fmt.Errorf("read the task slot: %w", err)
	}
	if resp.Error != nil {
		if resp.Error.ErrCode == 10037 { // no message found: the slot was never taken
			return nil, 0, nil
		}
		return nil, 0, fmt.Errorf("read the task slot: %s (%d)", resp.Error.Description, resp.Error.ErrCode)
	}
	if resp.Message == nil {
		return nil, 0, errors.New("read the task slot: empty answer")
	}
	return s.decode(resp.Message.Data, resp.Message.Time, resp.Message.Seq)
}

// orphaned is the status of a task whose node stopped renewing it at last.
func (s *KV) orphaned(ent kvEntry, last time.Time) Status {
	st := ent.Status
	st.IsRunning = false
	end := last.Add(s.cfg.Lease)
	st.FinishedAt = &end
	d := end.Sub(st.StartedAt).Seconds()
	st.DurationSeconds = &d
	st.Error = fmt.Sprintf("the task was lost: node %s stopped before it finished", ent.Node)
	return st
}

func (s *KV) write(ctx context.Context, ent kvEntry, rev uint64) (uint64, error) {
	raw, err := json.Marshal(ent)
	if err != nil {
		return 0, err
	}
	if rev == 0 {
		return s.kv.Create(ctx, slotKey, raw)
	}
	return s.kv.Update(ctx, slotKey, raw, rev)
}

// Begin implements Store.
func (s *KV) Begin(ctx context.Context, st Status) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, rev, err := s.readLeader(ctx)
	if err != nil {
		return err
	}
	if cur != nil && cur.Status.IsRunning {
		return ErrBusy
	}
	ent := kvEntry{ID: st.ID, Node: s.cfg.Node, Status: st}
	nrev, err := s.write(ctx, ent, rev)
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return ErrBusy // another node began a task since we read the slot
	}
	if err != nil {
		return fmt.Errorf("claim the task slot: %w", err)
	}
	if s.renew != nil {
		s.renew()
	}
	s.own, s.rev = &ent, nrev
	rctx, cancel := context.WithCancel(context.Background())
	s.renew = cancel
	go s.keepAlive(rctx, ent.ID)
	return nil
}

// keepAlive renews the entry of this node's running task until it ends.
func (s *KV) keepAlive(ctx context.Context, id string) {
	t := time.NewTicker(s.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		if s.own == nil || s.own.ID != id {
			s.mu.Unlock()
			return
		}
		if err := s.put(ctx, *s.own); err != nil && ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("task lease not renewed")
		}
		s.mu.Unlock()
	}
}

// put writes this node's own entry by revision, reading the revision again if a write
// of ours raced it; ErrNotOwner when the slot holds another task. Called with mu held.
func (s *KV) put(ctx context.Context, ent kvEntry) error {
	actx, cancel := context.WithTimeout(ctx, events.AttemptTimeout)
	defer cancel()
	nrev, err := s.write(actx, ent, s.rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		cur, rev, rerr := s.read(actx)
		if rerr != nil {
			return rerr
		}
		if cur == nil || cur.ID != ent.ID {
			return ErrNotOwner
		}
		s.rev = rev
		nrev, err = s.write(actx, ent, s.rev)
	}
	if err != nil {
		return err
	}
	s.rev = nrev
	return nil
}

// Update implements Store.
func (s *KV) Update(ctx context.Context, st Status) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.own == nil || s.own.ID != st.ID {
		return ErrNotOwner
	}
	ent := kvEntry{ID: st.ID, Node: s.cfg.Node, Status: st}
	if err := s.put(ctx, ent); err != nil {
		return err
	}
	s.own = &ent
	if !st.IsRunning {
		s.own = nil
		if s.renew != nil {
			s.renew()
			s.renew = nil
		}
	}
	return nil
}

// Current implements Store.
func (s *KV) Current(ctx context.Context) (Status, error) {
	cur, _, err := s.read(ctx)
	if err != nil || cur == nil {
		return Status{}, err
	}
	st := cur.Status
	st.ID = cur.ID
	if !st.IsRunning && st.FinishedAt != nil && s.cfg.Now().Sub(*st.FinishedAt) > Retention {
		return Status{}, nil
	}
	return st, nil
}

// Close stops renewing this node's running task, as a node that stops does: another
// node shows it failed once its lease runs out.
func (s *KV) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.renew != nil {
		s.renew()
		s.renew = nil
	}
}
