package proxy

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"gpt-load/domain"
	"gpt-load/events"
)

// FactPublisher hands key-health facts to the log and tells which ones it acknowledged;
// *events.Store implements it.
type FactPublisher interface {
	NewID() string
	PublishFacts(ctx context.Context, facts []events.HealthFact) []error
}

// actorProxy is the actor of the facts the proxy records (events.ActorProxy).
const actorProxy = "proxy"

// The retry buffer of key-health facts.
const (
	// maxAuthPending bounds the counted failures kept for one key: blacklist_threshold is
	// at most 100, so 100 consecutive failures blacklist a key whatever the log held
	// before; older ones add nothing.
	maxAuthPending = 100
	// factBatch is how many facts one publish round sends before waiting for their
	// acknowledgements; factAckWait bounds that wait.
	factBatch   = 512
	factAckWait = 5 * time.Second
	// factRetryMin and factRetryMax bound the pause before facts the log did not take are
	// sent again; it doubles while the log stays away.
	factRetryMin = 50 * time.Millisecond
	factRetryMax = 2 * time.Second
	// factCloseWait is how long Close keeps trying to hand the remaining facts to the log.
	factCloseWait = 5 * time.Second
)

// health hands key-health facts to the log from a goroutine of its own, so a client never
// waits for a publish, and holds a failing key out of this node's rotation at once, before
// its fact has come back through the log. A hold lives in the key's pool entry and ends
// when it expires or when the projection next changes the key (projections.PoolKey.Hold):
// whatever the log says later wins over this node's guess.
//
// A fact the log did not acknowledge (NATS away, queue full, publish error) is kept and
// sent again under the same id (the log stores it once) until it lands, so a cooldown or a
// blacklisting one node saw reaches every node's projection. The facts waiting are
// coalesced per key to what changes the key's state: a success or a valid validation
// replaces everything before it, a rate limit replaces the previous one of the key (the
// later cooldown end wins), counted failures are kept up to maxAuthPending. At most max
// facts wait; past that a fact that would add to them is dropped, counted (dropped) and
// logged.
type health struct {
	pub FactPublisher
	log zerolog.Logger
	max int

	mu      sync.Mutex
	pending map[keyRef][]events.HealthFact
	n       int       // facts in pending
	sending int       // facts being published
	closed  bool      // no more facts are taken
	giveUp  time.Time // when closed: the end of the last attempts
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}

	dropped  atomic.Uint64
	lastWarn atomic.Int64

	backoff sync.Map // key id → rateState
}

type keyRef struct{ group, key uint64 }

type rateState struct {
	cooldown time.Duration
	until    int64
}

// localExclusion bounds how long a key stays out of this node's rotation on its own word:
// long enough for its fact to come back through the log, which then decides (and ends the
// hold sooner).
const localExclusion = 5 * time.Second

func newHealth(pub FactPublisher, max int, log zerolog.Logger) *health {
	h := &health{pub: pub, log: log, max: max, pending: map[keyRef][]events.HealthFact{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go h.run()
	return h
}

// record queues a fact of actor; it never waits for the log.
func (h *health) record(actor string, f domain.Fact) {
	ref, ok := healthRef(f)
	if !ok {
		h.log.Error().Str("fact", fmt.Sprintf("%T", f)).Msg("not a key-health fact: dropped")
		return
	}
	hf := events.HealthFact{ID: h.pub.NewID(), Actor: actor, Fact: f}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.drop(1, "key-health fact recorded after the proxy was closed: dropped")
		return
	}
	old := h.pending[ref]
	list := coalesce(slices.Clone(old), hf)
	if len(list) > len(old) && h.n+h.sending >= h.max {
		h.mu.Unlock()
		h.drop(1, "key-health facts dropped: too many are waiting for the event log")
		return
	}
	h.pending[ref] = list
	h.n += len(list) - len(old)
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

func (h *health) drop(n int, msg string) {
	total := h.dropped.Add(uint64(n))
	now := time.Now().UnixNano()
	if last := h.lastWarn.Load(); now-last >= int64(time.Second) && h.lastWarn.CompareAndSwap(last, now) {
		h.log.Error().Uint64("dropped_total", total).Msg(msg)
	}
}

func healthRef(f domain.Fact) (keyRef, bool) {
	switch f := f.(type) {
	case domain.KeyFailed:
		return keyRef{f.GroupID, f.KeyID}, true
	case domain.KeySucceeded:
		return keyRef{f.GroupID, f.KeyID}, true
	case domain.KeyValidated:
		return keyRef{f.GroupID, f.KeyID}, true
	}
	return keyRef{}, false
}

// resets tells whether a fact sets the key's health whatever came before it.
func resets(f domain.Fact) bool {
	switch f := f.(type) {
	case domain.KeySucceeded:
		return true
	case domain.KeyValidated:
		return f.Valid
	}
	return false
}

// counted tells whether a fact counts toward the blacklist threshold.
func counted(f domain.Fact) bool {
	switch f := f.(type) {
	case domain.KeyFailed:
		return f.Kind == domain.FailureAuth
	case domain.KeyValidated:
		return !f.Valid
	}
	return false
}

// coalesce appends hf to the facts waiting for its key, keeping what the projection would
// make of them all (domain.State.Apply): a reset replaces them, an uncounted failure
// replaces the previous one of its kind (the later cooldown end wins), counted failures
// are kept up to maxAuthPending.
func coalesce(list []events.HealthFact, hf events.HealthFact) []events.HealthFact {
	if resets(hf.Fact) {
		return append(list[:0], hf)
	}
	if counted(hf.Fact) {
		n := 0
		for _, p := range list {
			if counted(p.Fact) {
				n++
			}
		}
		if n >= maxAuthPending {
			i := slices.IndexFunc(list, func(p events.HealthFact) bool { return counted(p.Fact) })
			list = slices.Delete(list, i, i+1)
		}
		return append(list, hf)
	}
	if nf, ok := hf.Fact.(domain.KeyFailed); ok {
		for i, p := range list {
			if pf, ok := p.Fact.(domain.KeyFailed); ok && pf.Kind == nf.Kind {
				if pf.RetryUntil.After(nf.RetryUntil) {
					nf.RetryUntil = pf.RetryUntil
					hf.Fact = nf
				}
				list = slices.Delete(list, i, i+1)
				break
			}
		}
	}
	return append(list, hf)
}

func (h *health) run() {
	defer close(h.done)
	var delay time.Duration
	var giveUp time.Time
	stop := h.stop
	for {
		if stop != nil {
			select {
			case <-stop:
				stop, giveUp = nil, h.closeBy()
			default:
			}
		}
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-stop:
				t.Stop()
				stop, giveUp = nil, h.closeBy()
			}
		}
		batch := h.take()
		if len(batch) == 0 {
			if stop == nil {
				return
			}
			select {
			case <-h.wake:
			case <-stop:
				stop, giveUp = nil, h.closeBy()
			}
			continue
		}
		wait := factAckWait
		if stop == nil {
			// Closing: no round outlasts factCloseWait.
			wait = min(wait, max(time.Until(giveUp), time.Millisecond))
		}
		if h.send(batch, wait) {
			delay = 0
			continue
		}
		delay = min(max(2*delay, factRetryMin), factRetryMax)
		if stop == nil {
			delay = min(delay, max(time.Until(giveUp), time.Millisecond))
		}
		if stop == nil && time.Now().After(giveUp) {
			h.mu.Lock()
			lost := h.n
			h.pending, h.n = map[keyRef][]events.HealthFact{}, 0
			h.mu.Unlock()
			h.dropped.Add(uint64(lost))
			h.log.Error().Int("facts", lost).Msg("key-health facts not recorded: the event log was away when the proxy closed")
			return
		}
	}
}

// take moves up to factBatch facts, whole keys at a time, from pending to the batch
// being sent.
func (h *health) take() map[keyRef][]events.HealthFact {
	h.mu.Lock()
	defer h.mu.Unlock()
	batch := map[keyRef][]events.HealthFact{}
	n := 0
	for ref, list := range h.pending {
		if n >= factBatch {
			break
		}
		batch[ref] = list
		n += len(list)
		delete(h.pending, ref)
	}
	h.n -= n
	h.sending = n
	return batch
}

// send publishes a batch, waiting up to wait for the acknowledgements, and puts back
// what the log did not take, ahead of the facts recorded since; it tells whether
// everything landed.
func (h *health) send(batch map[keyRef][]events.HealthFact, wait time.Duration) bool {
	var flat []events.HealthFact
	for _, list := range batch {
		flat = append(flat, list...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	errs := h.pub.PublishFacts(ctx, flat)
	cancel()
	var again map[keyRef][]events.HealthFact
	var firstErr error
	i := 0
	for ref, list := range batch {
		errs := errs[i : i+len(list)]
		i += len(list)
		var back []events.HealthFact
		for j, hf := range list {
			err := errs[j]
			if err == nil {
				continue
			}
			if domain.ErrorCode(err) == domain.EINVALID {
				h.log.Error().Err(err).Msg("key-health fact refused by the event log: dropped")
				h.dropped.Add(1)
				continue
			}
			firstErr = cmp.Or(firstErr, err)
			if resets(hf.Fact) && j+1 < len(list) {
				// A reset that did not land before facts that did: send it again and,
				// after it, what followed it (those that landed under new ids), so the
				// key ends as it would have.
				back = []events.HealthFact{hf}
				for k, later := range list[j+1:] {
					if errs[j+1+k] == nil {
						later.ID = h.pub.NewID()
					}
					back = append(back, later)
				}
				break
			}
			back = append(back, hf)
		}
		if len(back) > 0 {
			if again == nil {
				again = map[keyRef][]events.HealthFact{}
			}
			again[ref] = back
		}
	}
	h.mu.Lock()
	h.sending = 0
	for ref, back := range again {
		newer := h.pending[ref]
		for _, hf := range newer {
			back = coalesce(back, hf)
		}
		h.pending[ref] = back
		h.n += len(back) - len(newer)
	}
	h.mu.Unlock()
	if firstErr != nil {
		h.log.Warn().Err(firstErr).Int("keys", len(again)).Msg("key-health facts not acknowledged by the event log: sending them again")
		return false
	}
	return true
}

// waiting is how many facts wait for the log (pending or being sent).
func (h *health) waiting() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n + h.sending
}

// flush waits until every fact recorded so far is in the log, or ctx ends.
func (h *health) flush(ctx context.Context) error {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for h.waiting() > 0 {
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("key-health facts: %d not in the log yet: %w", h.waiting(), ctx.Err())
		}
	}
	return nil
}

func (h *health) closeBy() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.giveUp
}

// close stops taking facts and keeps handing the remaining ones to the log for up to
// factCloseWait.
func (h *health) close() {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		h.giveUp = time.Now().Add(factCloseWait)
		close(h.stop)
	}
	h.mu.Unlock()
	<-h.done
}

// authFailed records a counted failure of a key and, when it reaches the threshold, keeps
// the key out of this node's rotation until the log has blacklisted it.
func (h *health) authFailed(groupID uint64, key poolKey, threshold, status int, msg string, now time.Time) {
	h.record(actorProxy, domain.KeyFailed{GroupID: groupID, KeyID: key.ID, Kind: domain.FailureAuth, Status: status, Message: msg})
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
	h.record(actorProxy, domain.KeyFailed{GroupID: groupID, KeyID: key.ID, Kind: domain.FailureRateLimit, Status: status, Message: msg, RetryUntil: until})
	key.Hold(min(until.UnixNano(), now.Add(localExclusion).UnixNano()))
	return until
}

func (h *health) succeeded(groupID uint64, key poolKey) {
	if key.Failures > 0 {
		h.record(actorProxy, domain.KeySucceeded{GroupID: groupID, KeyID: key.ID})
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
