package proxy

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"gpt-load/domain"
)

// FactPublisher records key-health facts without waiting for the log; *events.Store
// implements it.
type FactPublisher interface {
	Publish(actor string, facts ...domain.Fact) error
}

// actorProxy is the actor of the facts the proxy records (events.ActorProxy).
const actorProxy = "proxy"

// health hands key-health facts to the log from a goroutine of its own, so a client never
// waits for a publish, and holds a failing key out of this node's rotation at once, before
// its fact has come back through the log. A hold lives in the key's pool entry and ends
// when it expires or when the projection next changes the key (projections.PoolKey.Hold):
// whatever the log says later wins over this node's guess.
type health struct {
	pub  FactPublisher
	log  zerolog.Logger
	q    chan domain.Fact
	done chan struct{}

	closeMu sync.RWMutex // held shared while sending on q, exclusively to close it
	closed  bool

	dropped  atomic.Uint64
	lastWarn atomic.Int64

	backoff sync.Map // key id → rateState
}

type rateState struct {
	cooldown time.Duration
	until    int64
}

// localExclusion bounds how long a key stays out of this node's rotation on its own word:
// long enough for its fact to come back through the log, which then decides (and ends the
// hold sooner).
const localExclusion = 5 * time.Second

func newHealth(pub FactPublisher, queue int, log zerolog.Logger) *health {
	h := &health{pub: pub, log: log, q: make(chan domain.Fact, queue), done: make(chan struct{})}
	go h.run()
	return h
}

func (h *health) run() {
	defer close(h.done)
	for f := range h.q {
		if h.pub == nil {
			continue
		}
		if err := h.pub.Publish(actorProxy, f); err != nil {
			h.log.Error().Err(err).Msg("key-health fact not recorded")
		}
	}
}

// record queues a fact; if the queue is full (the log is unreachable) the fact is dropped,
// counted and logged: a client never waits for it.
func (h *health) record(f domain.Fact) {
	h.closeMu.RLock()
	defer h.closeMu.RUnlock()
	if h.closed {
		h.log.Error().Msg("key-health fact recorded after the proxy was closed: dropped")
		return
	}
	select {
	case h.q <- f:
	default:
		n := h.dropped.Add(1)
		now := time.Now().UnixNano()
		if last := h.lastWarn.Load(); now-last >= int64(time.Second) && h.lastWarn.CompareAndSwap(last, now) {
			h.log.Error().Uint64("dropped_total", n).Msg("key-health facts dropped: the event log is not keeping up")
		}
	}
}

// flush waits until the queue is empty (the facts are then with the publisher).
func (h *health) flush(ctx context.Context) error {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for len(h.q) > 0 {
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (h *health) close() {
	h.closeMu.Lock()
	if !h.closed {
		h.closed = true
		close(h.q)
	}
	h.closeMu.Unlock()
	<-h.done
}

// authFailed records a counted failure of a key and, when it reaches the threshold, keeps
// the key out of this node's rotation until the log has blacklisted it.
func (h *health) authFailed(groupID uint64, key poolKey, threshold, status int, msg string, now time.Time) {
	h.record(domain.KeyFailed{GroupID: groupID, KeyID: key.ID, Kind: domain.FailureAuth, Status: status, Message: msg})
	if threshold > 0 && int(key.Failures)+1 >= threshold {
		key.Hold(now.Add(localExclusion).UnixNano())
	}
}

// rateLimited rests a key until the upstream's Retry-After (seconds or an HTTP date),
// Gemini's retryDelay, or else a backoff that doubles while the key keeps being limited.
func (h *health) rateLimited(groupID uint64, key poolKey, status int, msg string, hdr http.Header, body []byte, now time.Time, base, maxCool time.Duration) time.Time {
	until, ok := retryAfter(hdr, body, now)
	if !ok {
		d := base
		if v, ok := h.backoff.Load(key.ID); ok {
			rs := v.(rateState)
			// Limited again soon after its last rest ended: rest longer.
			if now.UnixNano() < rs.until+int64(2*rs.cooldown) {
				d = min(rs.cooldown*2, maxCool)
			}
		}
		until = now.Add(d)
		h.backoff.Store(key.ID, rateState{cooldown: d, until: until.UnixNano()})
	}
	if until.Sub(now) > maxCool {
		until = now.Add(maxCool)
	}
	h.record(domain.KeyFailed{GroupID: groupID, KeyID: key.ID, Kind: domain.FailureRateLimit, Status: status, Message: msg, RetryUntil: until})
	key.Hold(min(until.UnixNano(), now.Add(localExclusion).UnixNano()))
	return until
}

func (h *health) succeeded(groupID uint64, key poolKey) {
	if key.Failures > 0 {
		h.record(domain.KeySucceeded{GroupID: groupID, KeyID: key.ID})
	}
	h.backoff.Delete(key.ID)
}

// retryAfter reads when an upstream allows the next request: the Retry-After header in
// seconds or as an HTTP date, else a Gemini RetryInfo "retryDelay" like "30s".
func retryAfter(hdr http.Header, body []byte, now time.Time) (time.Time, bool) {
	if v := hdr.Get("Retry-After"); v != "" {
		if s, err := strconv.ParseInt(v, 10, 64); err == nil && s >= 0 {
			return now.Add(time.Duration(min(s, 1<<31)) * time.Second), true
		}
		if t, err := http.ParseTime(v); err == nil {
			if t.Before(now) {
				return now, true
			}
			return t, true
		}
	}
	if len(body) > 0 {
		if d, ok := geminiRetryDelay(body); ok {
			return now.Add(d), true
		}
	}
	return time.Time{}, false
}

func geminiRetryDelay(body []byte) (time.Duration, bool) {
	const key = `"retryDelay"`
	i := bytes.Index(body, []byte(key))
	if i < 0 {
		return 0, false
	}
	rest := body[i+len(key):]
	j := 0
	for j < len(rest) && (rest[j] == ' ' || rest[j] == ':' || rest[j] == '\n' || rest[j] == '\t' || rest[j] == '\r') {
		j++
	}
	if j >= len(rest) || rest[j] != '"' {
		return 0, false
	}
	end := j + 1
	for end < len(rest) && rest[end] != '"' {
		end++
	}
	if end >= len(rest) {
		return 0, false
	}
	d, err := time.ParseDuration(string(rest[j+1 : end]))
	if err != nil || d < 0 {
		return 0, false
	}
	return d, true
}
