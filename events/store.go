package events

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"

	"gpt-load/domain"
)

// Stream names. They are part of the data: renaming one starts an empty log.
const (
	EventsStream = "GL_EVENTS"
	ReqLogStream = "GL_REQLOG"
	reqLogSubj   = "gl.reqlog.>"
)

// ErrConflict means the aggregate moved on since the state the command was decided on.
var ErrConflict = errors.New("events: aggregate changed concurrently")

// ErrLogUnavailable means an append got no answer in time: NATS is out of reach, the stream
// has no leader, or its store cannot write (disk full). The fact may still land.
var ErrLogUnavailable = errors.New("events: the event log did not acknowledge in time")

// StoreConfig configures the streams.
type StoreConfig struct {
	Node     string  // recorded in every event
	Replicas int     // 1 embedded, 3 in a cluster
	Cipher   *Cipher // encrypts key values inside events
	// Request-log stream bounds: it is a buffer in front of SQL, not a record.
	ReqLogMaxAge   time.Duration
	ReqLogMaxBytes int64
	// NewID makes event ids (the Nats-Msg-Id that deduplicates retried publishes) and Now
	// stamps events; both default to the real thing and exist for tests.
	NewID func() string
	Now   func() time.Time
}

func (c *StoreConfig) setDefaults() {
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.ReqLogMaxAge == 0 {
		c.ReqLogMaxAge = 72 * time.Hour
	}
	if c.ReqLogMaxBytes == 0 {
		c.ReqLogMaxBytes = 1 << 30
	}
	if c.Cipher == nil {
		c.Cipher = &Cipher{}
	}
	if c.NewID == nil {
		c.NewID = nuid.Next // the package-level generator is safe for concurrent use
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Store is the event log: the domain-event stream, and the request-log stream beside it.
type Store struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	codec  codec
	log    zerolog.Logger
	// maxMsg is the largest message, headers included, the event stream takes: the
	// server's max_payload, or the stream's max_msg_size when smaller.
	maxMsg int
	newID  func() string
	now    func() time.Time
	// replicas of the streams, for the staging stream of a rebase
	replicas int

	appends, conflicts, appendErrs, appendNanos atomic.Uint64
}

// AppendStats counts the guarded appends of this store since it opened.
type AppendStats struct {
	Appends   uint64        // appends that reached the log
	Conflicts uint64        // appends refused because the aggregate had moved on (ErrConflict)
	Errors    uint64        // appends that failed otherwise (NATS away, timeout, too large)
	Took      time.Duration // summed time of the successful appends, acknowledgement included
}

// Stats reads the append counters.
func (s *Store) Stats() AppendStats {
	return AppendStats{Appends: s.appends.Load(), Conflicts: s.conflicts.Load(), Errors: s.appendErrs.Load(),
		Took: time.Duration(s.appendNanos.Load())}
}

// OpenStore creates or updates both streams (idempotent) and returns the store.
func OpenStore(ctx context.Context, js jetstream.JetStream, cfg StoreConfig, log zerolog.Logger) (*Store, error) {
	cfg.setDefaults()
	if err := checkServerVersion(js.Conn().ConnectedServerVersion()); err != nil {
		return nil, err
	}
	var st jetstream.Stream
	err := Retry(ctx, log, "create stream "+EventsStream, func(ctx context.Context) (err error) {
		st, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:        EventsStream,
			Description: "gpt-load domain events: the system of record",
			Subjects:    eventSubjects,
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
			Retention:   jetstream.LimitsPolicy,
			Duplicates:  2 * time.Minute,
			DenyDelete:  true,
			DenyPurge:   true,
			AllowDirect: true,
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := Retry(ctx, log, "create stream "+ReqLogStream, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:        ReqLogStream,
			Description: "gpt-load request logs, on their way to SQL",
			Subjects:    []string{reqLogSubj},
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      cfg.ReqLogMaxAge,
			MaxBytes:    cfg.ReqLogMaxBytes,
			Discard:     jetstream.DiscardOld,
			Duplicates:  2 * time.Minute,
		})
		if isInsufficientStorage(err) {
			// The server reserves MaxBytes of its store for the stream up front: waiting
			// for it does not help, a smaller bound or more space does.
			return &permanentError{fmt.Errorf("JetStream has no room to reserve %d bytes for the request-log stream (REQLOG_MAX_BYTES): lower REQLOG_MAX_BYTES or give the NATS store (DATA_DIR when embedded) more space: %w", cfg.ReqLogMaxBytes, err)}
		}
		return err
	}); err != nil {
		return nil, err
	}
	// A replicated stream just created may not have elected its leader yet: wait until
	// it answers, so the first read of the log does not fail the start.
	if err := Retry(ctx, log, "reach stream "+EventsStream, func(ctx context.Context) error {
		_, err := st.Info(ctx)
		return err
	}); err != nil {
		return nil, err
	}
	maxMsg := int(js.Conn().MaxPayload())
	if m := int(st.CachedInfo().Config.MaxMsgSize); m > 0 && (maxMsg <= 0 || m < maxMsg) {
		maxMsg = m
	}
	return &Store{
		js: js, stream: st, log: log, maxMsg: maxMsg,
		codec: codec{reg: newRegistry(), cipher: cfg.Cipher, node: cfg.Node},
		newID: cfg.NewID,
		now:   cfg.Now, replicas: cfg.Replicas,
	}, nil
}

// JetStream gives other parts of the service (the request-log pipeline) the same context.
func (s *Store) JetStream() jetstream.JetStream { return s.js }

// Cipher is the cipher of key values.
func (s *Store) Cipher() *Cipher { return s.codec.cipher }

// Append publishes facts of one aggregate if no event of that aggregate was appended after
// sequence expect (0: none ever). Only the first fact is guarded; facts that must stand or
// fall together belong in one fact. Health facts are never guarded. It returns the
// sequence of the last fact.
func (s *Store) Append(ctx context.Context, actor string, expect uint64, facts ...domain.Fact) (uint64, error) {
	start := time.Now()
	last, err := s.append(ctx, actor, expect, facts)
	switch {
	case err == nil:
		s.appends.Add(1)
		s.appendNanos.Add(uint64(time.Since(start)))
	case errors.Is(err, ErrConflict):
		s.conflicts.Add(1)
	default:
		s.appendErrs.Add(1)
	}
	return last, err
}

func (s *Store) append(ctx context.Context, actor string, expect uint64, facts []domain.Fact) (uint64, error) {
	var last uint64
	for i, f := range facts {
		agg := domain.AggregateOf(f)
		id := s.newID()
		msg, err := s.codec.encode(f, id, actor, s.now())
		if err != nil {
			return 0, err
		}
		if err := s.checkSize(msg); err != nil {
			return 0, err
		}
		opts := []jetstream.PublishOpt{jetstream.WithMsgID(id), jetstream.WithExpectStream(EventsStream)}
		if i == 0 && agg.Kind != domain.AggHealth {
			opts = append(opts, jetstream.WithExpectLastSequenceForSubject(expect, guard(agg)))
		}
		ack, err := s.js.PublishMsg(ctx, msg, opts...)
		if isWrongLastSeq(err) {
			return 0, ErrConflict
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) ||
			errors.Is(err, jetstream.ErrNoStreamResponse) {
			return 0, fmt.Errorf("append %s: %w", msg.Header.Get(hdrType), errors.Join(ErrLogUnavailable, err))
		}
		if err != nil {
			return 0, fmt.Errorf("append %s: %w", msg.Header.Get(hdrType), err)
		}
		last = ack.Sequence
	}
	return last, nil
}

// publishHeaderRoom is room for the headers the publish options add (expected stream,
// expected last sequence and its subject filter).
const publishHeaderRoom = 256

// checkSize refuses an event the stream could not take, with an error a user can read
// rather than the server's "maximum payload exceeded". Domain validation keeps every
// legal command well under the limit; this is the last line.
func (s *Store) checkSize(msg *nats.Msg) error {
	if s.maxMsg <= 0 {
		return nil
	}
	size := len(msg.Data) + len("NATS/1.0\r\n\r\n") + publishHeaderRoom
	for k, vs := range msg.Header {
		for _, v := range vs {
			size += len(k) + len(v) + 4
		}
	}
	if size > s.maxMsg {
		return domain.Errorf(domain.EINVALID, "the %s event would be %d bytes, more than the %d bytes one event may hold: make the change smaller",
			msg.Header.Get(hdrType), size, s.maxMsg)
	}
	return nil
}

// minServer is the oldest nats-server that honours an expected last sequence for a
// subject filter (Nats-Expected-Last-Subject-Sequence-Subject, added in 2.11). Older
// servers ignore the header silently, which would turn every guarded append into a blind
// one: two nodes could then create the same group name.
var minServer = [3]int{2, 11, 0}

func checkServerVersion(v string) error {
	var got [3]int
	if _, err := fmt.Sscanf(strings.TrimPrefix(v, "v"), "%d.%d.%d", &got[0], &got[1], &got[2]); err != nil {
		return fmt.Errorf("NATS server version %q: cannot parse it", v)
	}
	for i := range got {
		if got[i] != minServer[i] {
			if got[i] < minServer[i] {
				return fmt.Errorf("NATS server %s is too old: gpt-load needs %d.%d.%d or newer, whose streams check the expected last sequence of a subject filter", v, minServer[0], minServer[1], minServer[2])
			}
			break
		}
	}
	return nil
}

// Publish appends facts without waiting for the server's acknowledgement: the hot path's
// way to record key-health facts, which are never guarded. Facts are still deduplicated
// by id if a publish is retried. The JetStream context bounds the publishes in flight
// (jetstream.WithPublishAsyncMaxPending) and reports failed ones to its error handler;
// Flush waits for them.
func (s *Store) Publish(actor string, facts ...domain.Fact) error {
	for _, f := range facts {
		if agg := domain.AggregateOf(f); agg.Kind != domain.AggHealth {
			return fmt.Errorf("events: %T must be appended with a guard, not published", f)
		}
		id := s.newID()
		msg, err := s.codec.encode(f, id, actor, s.now())
		if err != nil {
			return err
		}
		if err := s.checkSize(msg); err != nil {
			return err
		}
		if _, err := s.js.PublishMsgAsync(msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(EventsStream)); err != nil {
			return fmt.Errorf("publish %s: %w", msg.Header.Get(hdrType), err)
		}
	}
	return nil
}

// NewID draws an event id: a fact published again under the same id within the stream's
// duplicate window (2 minutes) is stored once.
func (s *Store) NewID() string { return s.newID() }

// HealthFact is a key-health fact with the id and actor it is recorded under.
type HealthFact struct {
	ID    string // from NewID; publishing again under it within 2 minutes stores the fact once
	Actor string
	Fact  domain.Fact
}

// PublishFacts publishes key-health facts, in order, all at once and without a guard, then
// waits until ctx ends for the log to acknowledge each: errs[i] is nil once facts[i] is in
// the log. A fact that can never be taken (not a health fact, too large) fails with a
// domain.EINVALID error; any other error (NATS away, no acknowledgement in time) is worth
// publishing again under the same id, which the log then deduplicates.
func (s *Store) PublishFacts(ctx context.Context, facts []HealthFact) []error {
	errs := make([]error, len(facts))
	futs := make([]jetstream.PubAckFuture, len(facts))
	for i, hf := range facts {
		if agg := domain.AggregateOf(hf.Fact); agg.Kind != domain.AggHealth {
			errs[i] = domain.Errorf(domain.EINVALID, "events: %T must be appended with a guard, not published", hf.Fact)
			continue
		}
		msg, err := s.codec.encode(hf.Fact, hf.ID, hf.Actor, s.now())
		if err == nil {
			err = s.checkSize(msg)
		}
		if err != nil {
			errs[i] = domain.Errorf(domain.EINVALID, "publish %T: %v", hf.Fact, err)
			continue
		}
		futs[i], err = s.js.PublishMsgAsync(msg, jetstream.WithMsgID(hf.ID), jetstream.WithExpectStream(EventsStream))
		if err != nil {
			errs[i] = fmt.Errorf("publish %s: %w", msg.Header.Get(hdrType), err)
		}
	}
	for i, fut := range futs {
		if fut == nil {
			continue
		}
		select {
		case <-fut.Ok():
		case err := <-fut.Err():
			errs[i] = fmt.Errorf("publish %T: %w", facts[i].Fact, err)
		case <-ctx.Done():
			errs[i] = fmt.Errorf("publish %T: no acknowledgement: %w", facts[i].Fact, ctx.Err())
		}
	}
	return errs
}

// Flush waits until every fact published so far is acknowledged, or ctx ends.
func (s *Store) Flush(ctx context.Context) error {
	select {
	case <-s.js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("flush events: %d still pending: %w", s.js.PublishAsyncPending(), ctx.Err())
	}
}

// isWrongLastSeq recognises an optimistic-concurrency refusal: 10071 from a single-replica
// stream, 10164 from a replicated one.
func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// jsInsufficientStorage is the JetStream error code of a stream or message the server's
// storage cannot hold (nats-server JSInsufficientResourcesErr, JSStorageResourcesExceededErr).
const jsInsufficientStorage = 10047

func isInsufficientStorage(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jsInsufficientStorage
}

// LastSeq is the sequence of the aggregate's last event in the log, 0 when it has none.
func (s *Store) LastSeq(ctx context.Context, agg domain.Aggregate) (uint64, error) {
	m, err := s.stream.GetLastMsgForSubject(ctx, guard(agg))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("last event of %s: %w", guard(agg), err)
	}
	return m.Sequence, nil
}

// Position describes the log as a whole.
type Position struct {
	LastSeq  uint64
	FirstSeq uint64
	Created  time.Time // when the stream was created: a snapshot of another stream is useless
}

// Position reads the current end of the log.
func (s *Store) Position(ctx context.Context) (Position, error) {
	info, err := s.stream.Info(ctx)
	if err != nil {
		return Position{}, fmt.Errorf("stream %s info: %w", EventsStream, err)
	}
	return Position{LastSeq: info.State.LastSeq, FirstSeq: info.State.FirstSeq, Created: info.Created}, nil
}

// Follow delivers every event after sequence after, in order, then keeps delivering new ones
// until ctx ends or handle fails. pending is how many more events the log held when this one
// was delivered: 0 means the reader has caught up. An event that cannot be decoded stops it.
func (s *Store) Follow(ctx context.Context, after uint64, handle func(ev Event, pending uint64) error) error {
	cfg := jetstream.OrderedConsumerConfig{}
	if after > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = after + 1
	}
	var cons jetstream.Consumer
	if err := Retry(ctx, s.log, "follow "+EventsStream, func(actx context.Context) (err error) {
		cons, err = s.js.OrderedConsumer(actx, EventsStream, cfg)
		return err
	}); err != nil {
		return err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1024))
	if err != nil {
		return fmt.Errorf("follow %s: %w", EventsStream, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	var rebase rebaseReader
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("follow %s: %w", EventsStream, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("follow %s: metadata: %w", EventsStream, err)
		}
		var ev Event
		switch t := msg.Headers().Get(hdrType); {
		case !isRebase(msg.Subject()):
			if ev, err = s.codec.decode(msg.Subject(), msg.Headers(), msg.Data(), meta.Sequence.Stream); err != nil {
				return err
			}
		case t == rebaseChunkType:
			rebase.chunk(msg.Headers(), msg.Data())
			continue
		case t == rebaseCommitType:
			st, _, err := rebase.commit(s.codec.cipher, msg.Headers(), msg.Data(), meta.Sequence.Stream)
			if err != nil {
				return err
			}
			ev = rebaseEvent(msg.Subject(), msg.Headers(), meta.Sequence.Stream, st)
		default:
			return fmt.Errorf("event %d: unknown rebase message %q", meta.Sequence.Stream, t)
		}
		if err := handle(ev, meta.NumPending); err != nil {
			return err
		}
	}
}

// Read returns up to limit events from sequence from on, for
// the audit trail and tools. It reads with direct gets, so it needs no consumer.
func (s *Store) Read(ctx context.Context, from uint64, limit int) ([]Event, error) {
	var out []Event
	pos, err := s.Position(ctx)
	if err != nil {
		return nil, err
	}
	for seq := max(from, pos.FirstSeq); seq <= pos.LastSeq && len(out) < limit; seq++ {
		m, err := s.stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read event %d: %w", seq, err)
		}
		if isRebase(m.Subject) {
			continue // the state as a whole, not an event
		}
		ev, err := s.codec.decode(m.Subject, m.Header, m.Data, m.Sequence)
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}
