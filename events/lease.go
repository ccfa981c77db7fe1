package events

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// LeaseBucket is the key-value bucket of the leader lease. Its entries expire after the
// lease time (the bucket's TTL), so the lease of a node that died ends by itself.
const LeaseBucket = "gl_leader"

const leaseKey = "leader"

// LeaseConfig configures an election.
type LeaseConfig struct {
	Node     string        // this node's name, the lease's value while it leads
	Replicas int           // replicas of the bucket: 1 embedded, 3 in a cluster
	TTL      time.Duration // lease time (default 10 s): how long a dead leader keeps it
	// Candidate false only watches who leads (IS_SLAVE): the node never takes the lease.
	Candidate bool
}

// Lease elects one node among those that share a NATS cluster, through a key of a KV
// bucket whose entries live TTL: a candidate creates the key if it is absent (a create
// is refused when the key exists), the leader renews it by revision every TTL/3 (a
// compare-and-set, so a leader that lost it cannot take it back), and deletes it when it
// stops, so another takes over at once. A leader that cannot renew steps down before
// the server could expire its lease: its duties never overlap with a successor's.
type Lease struct {
	kv  jetstream.KeyValue
	cfg LeaseConfig
	log zerolog.Logger

	leading atomic.Bool
	mu      sync.Mutex
	leader  string // the last leader seen, "" when none
	changes atomic.Uint64
}

// OpenLease creates or finds the lease bucket (idempotent, retried while the cluster is
// not ready).
func OpenLease(ctx context.Context, js jetstream.JetStream, cfg LeaseConfig, log zerolog.Logger) (*Lease, error) {
	if cfg.TTL <= 0 {
		cfg.TTL = 10 * time.Second
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	var kv jetstream.KeyValue
	err := Retry(ctx, log, "create key-value bucket "+LeaseBucket, func(ctx context.Context) (err error) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      LeaseBucket,
			Description: "gpt-load: the node that runs the background duties",
			TTL:         cfg.TTL,
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return &Lease{kv: kv, cfg: cfg, log: log}, nil
}

// Leading reports whether this node holds the lease now.
func (l *Lease) Leading() bool { return l.leading.Load() }

// Leader is the node that held the lease when last seen ("" when none).
func (l *Lease) Leader() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.leader
}

// Changes counts the times this node took or lost the lease.
func (l *Lease) Changes() uint64 { return l.changes.Load() }

// TTL is the lease time.
func (l *Lease) TTL() time.Duration { return l.cfg.TTL }

func (l *Lease) seen(node string) {
	l.mu.Lock()
	l.leader = node
	l.mu.Unlock()
}

// Run takes part in the election until ctx ends. Whenever this node takes the lease, it
// runs lead with a context that ends when the lease is lost (or ctx ends), and waits for
// lead to return before it campaigns again. On the way out a leader deletes its lease.
func (l *Lease) Run(ctx context.Context, lead func(ctx context.Context)) {
	tick := l.cfg.TTL / 3
	for ctx.Err() == nil {
		rev, ok := l.campaign(ctx)
		if !ok {
			sleepCtx(ctx, tick)
			continue
		}
		l.hold(ctx, rev, lead)
	}
}

// campaign takes the lease if nobody holds it; it returns the revision when it did.
func (l *Lease) campaign(ctx context.Context) (uint64, bool) {
	actx, cancel := context.WithTimeout(ctx, min(AttemptTimeout, l.cfg.TTL/3))
	defer cancel()
	if l.cfg.Candidate {
		rev, err := l.kv.Create(actx, leaseKey, []byte(l.cfg.Node))
		if err == nil {
			return rev, true
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && ctx.Err() == nil {
			l.log.Debug().Err(err).Msg("leader lease: campaign failed")
		}
	}
	e, err := l.kv.Get(actx, leaseKey)
	switch {
	case err == nil:
		l.seen(string(e.Value()))
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		l.seen("")
	}
	return 0, false
}

// hold runs lead while it renews the lease, and steps down when a renewal fails for so
// long that the lease could expire on the server.
func (l *Lease) hold(ctx context.Context, rev uint64, lead func(ctx context.Context)) {
	// The server stamps each renewal after we send it, so the lease lasts at least TTL
	// from the moment we sent the last renewal that succeeded.
	validUntil := time.Now().Add(l.cfg.TTL)
	l.leading.Store(true)
	l.changes.Add(1)
	l.seen(l.cfg.Node)
	l.log.Info().Str("node", l.cfg.Node).Dur("lease", l.cfg.TTL).Msg("this node leads: running the background duties")
	lctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { lead(lctx) })
	defer func() {
		stop()
		wg.Wait()
		l.leading.Store(false)
		l.changes.Add(1)
	}()
	tick := time.NewTicker(l.cfg.TTL / 3)
	defer tick.Stop()
	for {
		// Step down a margin before the lease could expire, so that a successor never
		// runs the duties while they still run here.
		deadline := time.Until(validUntil) - l.cfg.TTL/6
		select {
		case <-ctx.Done():
			stop()
			wg.Wait()
			l.leading.Store(false)
			l.release(rev)
			return
		case <-time.After(deadline):
			l.log.Warn().Msg("leader lease not renewed in time: stepping down")
			return
		case <-tick.C:
		}
		sent := time.Now()
		actx, cancel := context.WithTimeout(ctx, max(time.Until(validUntil)-l.cfg.TTL/6, time.Millisecond))
		next, err := l.kv.Update(actx, leaseKey, []byte(l.cfg.Node), rev)
		cancel()
		if err == nil {
			rev, validUntil = next, sent.Add(l.cfg.TTL)
			continue
		}
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound) {
			l.log.Warn().Err(err).Msg("leader lease taken by another node: stepping down")
			return
		}
		if ctx.Err() == nil {
			l.log.Warn().Err(err).Msg("leader lease renewal failed; trying again")
		}
	}
}

// release deletes the lease this node holds, so another takes over without waiting for
// it to expire. A lease renewed by another node (revision changed) is left alone.
func (l *Lease) release(rev uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), AttemptTimeout)
	defer cancel()
	if err := l.kv.Delete(ctx, leaseKey, jetstream.LastRevision(rev)); err != nil {
		l.log.Warn().Err(err).Msg("leader lease not released; it expires by itself")
		return
	}
	l.seen("")
	l.log.Info().Msg("leader lease released")
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// LeaseHolder is the node holding the leader lease of the cluster js reaches, "" when
// none does (no node running, or none a candidate).
func LeaseHolder(ctx context.Context, js jetstream.JetStream) (string, error) {
	kv, err := js.KeyValue(ctx, LeaseBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("key-value bucket %s: %w", LeaseBucket, err)
	}
	e, err := kv.Get(ctx, leaseKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("leader lease: %w", err)
	}
	return string(e.Value()), nil
}
