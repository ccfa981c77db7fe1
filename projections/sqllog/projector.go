package sqllog

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/projections/sqlstore"
)

// Durable is the name of the consumer every node's projector shares, so that each
// message of GL_REQLOG goes to one of them. It is part of the data: a new name would
// read the whole stream again (harmless, every insert is idempotent, but slow).
const Durable = "sql-reqlog"

// Config tunes the projector. Zero values take the defaults.
type Config struct {
	// MaxMessages is the most messages written in one transaction (default 64; a message
	// holds up to 256 records); MaxWait the longest a fetch waits for them (default
	// 100 ms), which bounds the delay a quiet stream adds to a log.
	MaxMessages int
	MaxWait     time.Duration
	// MaxDeliver is how many times a message is tried before it is parked (default 5).
	MaxDeliver int
	// AckWait is how long a fetched message may stay unacknowledged before JetStream
	// hands it out again (default 10 s): the wait before another node takes over the
	// batch of a node that died. The projector keeps it alive while it waits for
	// the database.
	AckWait time.Duration
	// WriteTimeout bounds one transaction (default 20 s).
	WriteTimeout time.Duration
	// BacklogEvery is how often the backlog is measured (default 5 s); WarnEvery the least
	// time between two warnings about it (default 1 min).
	BacklogEvery time.Duration
	WarnEvery    time.Duration
}

func (c *Config) setDefaults() {
	if c.MaxMessages <= 0 {
		c.MaxMessages = 64
	}
	if c.MaxWait <= 0 {
		c.MaxWait = 100 * time.Millisecond
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 5
	}
	if c.AckWait <= 0 {
		c.AckWait = 10 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 20 * time.Second
	}
	if c.BacklogEvery <= 0 {
		c.BacklogEvery = 5 * time.Second
	}
	if c.WarnEvery <= 0 {
		c.WarnEvery = time.Minute
	}
}

// Pinger is how the projector tells a database that is down from a batch it refuses.
type Pinger interface {
	PingContext(ctx context.Context) error
}

// Projector reads GL_REQLOG through the durable consumer Durable and writes every record
// into SQL with a Writer: one transaction per fetched batch, acknowledged only after the
// commit. A message that cannot be decoded or written is tried MaxDeliver times, then
// parked: terminated (JetStream keeps it until the stream's limits drop it), counted and
// logged once; the messages behind it go on. While the database is down nothing is
// acknowledged and nothing is parked: the batch waits, kept alive, and the rest waits in
// the stream, until the database answers again.
type Projector struct {
	js  jetstream.JetStream
	w   *Writer
	db  Pinger
	cfg Config
	log zerolog.Logger

	written       atomic.Uint64 // records inserted
	parkedMsgs    atomic.Uint64
	parkedRecords atomic.Uint64
	sqlDown       atomic.Bool
	backlog       atomic.Pointer[Backlog]

	mu       sync.Mutex
	lastWarn time.Time

	// afterWrite, when set (tests), runs between a batch's commit and its
	// acknowledgement; false stops there, as a process killed at that point would.
	afterWrite func() bool
}

// New returns a projector writing through w; db is w's database, pinged in doubt.
func New(js jetstream.JetStream, w *Writer, db Pinger, cfg Config, log zerolog.Logger) *Projector {
	if js == nil || w == nil || db == nil {
		panic("sqllog: nil dependency")
	}
	cfg.setDefaults()
	return &Projector{js: js, w: w, db: db, cfg: cfg, log: log}
}

// Stats counts what the projector did since it started.
type Stats struct {
	Written       uint64 // records inserted into request_logs
	ParkedMsgs    uint64 // messages given up on
	ParkedRecords uint64 // records in them that were not written
	SQLDown       bool   // the last write found the database out of reach
}

// Stats reads the counters.
func (p *Projector) Stats() Stats {
	return Stats{Written: p.written.Load(), ParkedMsgs: p.parkedMsgs.Load(),
		ParkedRecords: p.parkedRecords.Load(), SQLDown: p.sqlDown.Load()}
}

// Run consumes until ctx ends. A batch being written when ctx ends is finished (within
// WriteTimeout) and acknowledged, so that a graceful stop leaves nothing to redeliver.
func (p *Projector) Run(ctx context.Context) error {
	cons, err := p.consumer(ctx)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { p.watchBacklog(ctx, cons) })
	for ctx.Err() == nil {
		batch, err := cons.Fetch(p.cfg.MaxMessages, jetstream.FetchMaxWait(p.cfg.MaxWait))
		if err != nil {
			p.log.Warn().Err(err).Msg("request-log fetch failed")
			if sleep(ctx, time.Second) != nil {
				break
			}
			continue
		}
		var msgs []jetstream.Msg
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			p.log.Debug().Err(err).Int("messages", len(msgs)).Msg("request-log fetch ended early")
		}
		if len(msgs) > 0 {
			p.handle(ctx, msgs)
		}
	}
	return nil
}

// consumer creates or updates the durable consumer, trying again until ctx ends.
func (p *Projector) consumer(ctx context.Context) (jetstream.Consumer, error) {
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		cons, err := p.js.CreateOrUpdateConsumer(cctx, events.ReqLogStream, jetstream.ConsumerConfig{
			Durable:       Durable,
			Description:   "gpt-load: request logs into SQL, shared by every node",
			FilterSubject: events.ReqLogSubject,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       p.cfg.AckWait,
			MaxAckPending: 4 * p.cfg.MaxMessages,
			DeliverPolicy: jetstream.DeliverAllPolicy,
		})
		cancel()
		if err == nil {
			return cons, nil
		}
		if attempt%10 == 0 {
			p.log.Warn().Err(err).Msg("request-log consumer not created yet; trying again")
		}
		if err := sleep(ctx, time.Second); err != nil {
			return nil, fmt.Errorf("request-log consumer: %w", err)
		}
	}
}

type fetched struct {
	msg  jetstream.Msg
	recs []domain.RequestLog
	err  error // decoding
}

// handle writes one fetched batch and acknowledges it, or leaves it to be delivered again.
func (p *Projector) handle(ctx context.Context, msgs []jetstream.Msg) {
	var good []fetched
	var recs []domain.RequestLog
	for _, m := range msgs {
		rs, _, err := events.DecodeRequestLogs(m.Headers(), m.Data())
		if err != nil {
			p.giveUp(ctx, fetched{msg: m, err: err}, err)
			continue
		}
		good = append(good, fetched{msg: m, recs: rs})
		recs = append(recs, rs...)
	}
	if len(good) == 0 {
		return
	}
	err := p.writeWaiting(ctx, good, recs)
	if err == nil {
		if p.afterWrite != nil && !p.afterWrite() {
			return
		}
		for _, f := range good {
			_ = f.msg.Ack()
		}
		return
	}
	if ctx.Err() != nil {
		return // stopping: JetStream delivers the batch again later
	}
	// The database answers but refused the batch: write each message alone, so that one
	// bad message does not hold back the others.
	p.log.Warn().Err(err).Int("messages", len(good)).Msg("request-log batch refused; writing its messages one by one")
	for _, f := range good {
		if err := p.writeWaiting(ctx, []fetched{f}, f.recs); err != nil {
			if ctx.Err() != nil {
				return
			}
			p.giveUp(ctx, f, err)
			continue
		}
		_ = f.msg.Ack()
	}
}

// writeWaiting writes recs, waiting as long as the database is out of reach: meanwhile
// it keeps the messages of the batch from being handed out again. It returns nil once
// written, ctx's error when stopping, or the error of a database that answers.
func (p *Projector) writeWaiting(ctx context.Context, batch []fetched, recs []domain.RequestLog) error {
	delay := 100 * time.Millisecond
	lastTouch := time.Now()
	for {
		// A graceful stop lets the write in flight finish.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.WriteTimeout)
		n, err := p.w.Write(wctx, recs)
		cancel()
		if err == nil {
			p.written.Add(uint64(n))
			if p.sqlDown.Swap(false) {
				p.log.Info().Msg("request-log database back; writing the backlog")
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		perr := p.db.PingContext(pctx)
		cancel()
		full := sqlstore.IsOutOfSpace(err)
		if perr == nil && !full {
			return err
		}
		// Out of reach, or answering but out of space: no record is at fault, so none is
		// parked; the batch waits until the database takes writes again.
		if !p.sqlDown.Swap(true) {
			if full {
				p.log.Error().Err(err).Msg("request-log database out of space; logs wait in JetStream until there is room")
			} else {
				p.log.Error().Err(err).Msg("request-log database out of reach; logs wait in JetStream")
			}
		}
		if err := sleep(ctx, delay); err != nil {
			return err
		}
		delay = min(2*delay, 5*time.Second)
		if time.Since(lastTouch) > p.cfg.AckWait/3 {
			for _, f := range batch {
				_ = f.msg.InProgress()
			}
			lastTouch = time.Now()
		}
	}
}

// giveUp lets a message that failed be delivered again, after a pause, until it has
// been tried MaxDeliver times; then it parks it: the records of it that can be written
// alone are, the message is terminated and the rest counted and logged.
func (p *Projector) giveUp(ctx context.Context, f fetched, cause error) {
	meta, merr := f.msg.Metadata()
	if merr == nil && meta.NumDelivered < uint64(p.cfg.MaxDeliver) {
		_ = f.msg.NakWithDelay(time.Duration(meta.NumDelivered) * time.Second)
		return
	}
	lost := len(f.recs)
	if f.err == nil {
		lost = 0
		for i := range f.recs {
			if err := p.writeWaiting(ctx, nil, f.recs[i:i+1]); err != nil {
				if ctx.Err() != nil {
					return
				}
				lost++
			}
		}
	}
	var seq uint64
	ev := p.log.Error().Err(cause)
	if meta != nil {
		seq = meta.Sequence.Stream
		ev = ev.Uint64("stream_seq", seq).Uint64("deliveries", meta.NumDelivered)
	}
	if n := f.msg.Headers().Get("Gl-Count"); n != "" {
		if c, err := strconv.Atoi(n); err == nil && f.err != nil {
			lost = c
		}
	}
	p.parkedMsgs.Add(1)
	p.parkedRecords.Add(uint64(lost))
	ev.Int("records_lost", lost).Str("stream", events.ReqLogStream).
		Msg("request-log message parked: it stays in the stream until its limits drop it")
	_ = f.msg.TermWithReason("parked: " + cause.Error())
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
