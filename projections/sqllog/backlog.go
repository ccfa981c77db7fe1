package sqllog

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"gpt-load/events"
)

// Backlog is what waits in GL_REQLOG to be written to SQL, against the stream's limits:
// past MaxAge or MaxBytes JetStream drops the oldest messages, written or not.
type Backlog struct {
	Messages uint64 // not yet acknowledged by a projector (delivered or not)
	// Bytes is the share of the stream's bytes those messages hold, estimated from the
	// stream's mean message size.
	Bytes     int64
	OldestAge time.Duration // age of the oldest message not written yet; 0 when none
	MaxAge    time.Duration // the stream's limits
	MaxBytes  int64
	// ParkedMsgs and ParkedRecords count what this node gave up on (Stats).
	ParkedMsgs    uint64
	ParkedRecords uint64
	SQLDown       bool
	MeasuredAt    time.Time // zero until the first measure
	Err           string    // the last measure failed
}

// Backlog returns the latest measure (taken every BacklogEvery).
func (p *Projector) Backlog() Backlog {
	var b Backlog
	if last := p.backlog.Load(); last != nil {
		b = *last
	}
	s := p.Stats()
	b.ParkedMsgs, b.ParkedRecords, b.SQLDown = s.ParkedMsgs, s.ParkedRecords, s.SQLDown
	return b
}

func (p *Projector) watchBacklog(ctx context.Context, cons jetstream.Consumer) {
	for {
		b := p.measure(ctx, cons)
		p.backlog.Store(&b)
		p.warn(b)
		if sleep(ctx, p.cfg.BacklogEvery) != nil {
			return
		}
	}
}

// measure reads the consumer's and the stream's state.
func (p *Projector) measure(ctx context.Context, cons jetstream.Consumer) Backlog {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	b := Backlog{MeasuredAt: time.Now()}
	ci, err := cons.Info(ctx)
	if err != nil {
		b.Err = err.Error()
		return b
	}
	st, err := p.js.Stream(ctx, events.ReqLogStream)
	if err != nil {
		b.Err = err.Error()
		return b
	}
	si, err := st.Info(ctx)
	if err != nil {
		b.Err = err.Error()
		return b
	}
	b.MaxAge, b.MaxBytes = si.Config.MaxAge, si.Config.MaxBytes
	b.Messages = ci.NumPending + uint64(ci.NumAckPending)
	if b.Messages == 0 || si.State.Msgs == 0 {
		return b
	}
	b.Bytes = int64(float64(si.State.Bytes) * float64(min(b.Messages, si.State.Msgs)) / float64(si.State.Msgs))
	oldest := max(ci.AckFloor.Stream+1, si.State.FirstSeq)
	if m, err := st.GetMsg(ctx, oldest); err == nil {
		b.OldestAge = max(time.Since(m.Time), 0)
	}
	return b
}

// warn logs when the backlog has passed half of a limit of the stream, at most once per
// WarnEvery.
func (p *Projector) warn(b Backlog) {
	half := (b.MaxBytes > 0 && b.Bytes > b.MaxBytes/2) || (b.MaxAge > 0 && b.OldestAge > b.MaxAge/2)
	if !half {
		return
	}
	p.mu.Lock()
	due := time.Since(p.lastWarn) >= p.cfg.WarnEvery
	if due {
		p.lastWarn = time.Now()
	}
	p.mu.Unlock()
	if !due {
		return
	}
	p.log.Warn().Uint64("messages", b.Messages).Int64("bytes", b.Bytes).Int64("max_bytes", b.MaxBytes).
		Dur("oldest_age", b.OldestAge).Dur("max_age", b.MaxAge).Bool("sql_down", b.SQLDown).
		Msg("request-log backlog past half of the stream's limits: logs older or beyond them are dropped unwritten")
}
