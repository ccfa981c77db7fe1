package proxy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"gpt-load/domain"
	"gpt-load/events"
)

// flakyLog is a fact publisher whose log is away while down is set: every publish fails
// then. It stores what it acknowledges, deduplicated by id like the stream.
type flakyLog struct {
	down   atomic.Bool
	hang   atomic.Bool // publishes get no answer at all: they fail when ctx ends
	calls  atomic.Int64
	refuse func(hf events.HealthFact) bool // refuses a fact the log is up for, when set
	ids    atomic.Uint64
	mu     sync.Mutex
	seen   map[string]bool
	stored []events.HealthFact
	rounds int
}

func (l *flakyLog) NewID() string { return fmt.Sprint(l.ids.Add(1)) }

func (l *flakyLog) PublishFacts(ctx context.Context, facts []events.HealthFact) []error {
	l.calls.Add(1)
	if l.hang.Load() {
		<-ctx.Done()
		errs := make([]error, len(facts))
		for i := range errs {
			errs[i] = ctx.Err()
		}
		return errs
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rounds++
	errs := make([]error, len(facts))
	for i, hf := range facts {
		if l.down.Load() || (l.refuse != nil && l.refuse(hf)) {
			errs[i] = errors.New("nats: connection closed")
			continue
		}
		if l.seen == nil {
			l.seen = map[string]bool{}
		}
		if !l.seen[hf.ID] {
			l.seen[hf.ID] = true
			l.stored = append(l.stored, hf)
		}
	}
	return errs
}

func (l *flakyLog) facts() []domain.Fact {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []domain.Fact
	for _, hf := range l.stored {
		out = append(out, hf.Fact)
	}
	return out
}

// keyState folds facts into one key's state as the projection does.
func keyState(facts []domain.Fact) domain.Key {
	s := domain.NewState(domain.DefaultSettings()) // blacklist_threshold 3
	s.Apply(domain.GroupCreated{Group: domain.Group{ID: 1, Name: "g", ChannelType: "openai"}}, domain.Meta{Seq: 1})
	s.Apply(domain.KeysAdded{GroupID: 1, Keys: []domain.NewKey{{Value: "k", Hash: domain.KeyHash{1}}}}, domain.Meta{Seq: 2})
	for i, f := range facts {
		s.Apply(f, domain.Meta{Seq: uint64(3 + i)})
	}
	k, ok := s.Key(1)
	if !ok {
		panic("key 1 not added")
	}
	return *k
}

// TestHealthFactsLandAfterTheLogComesBack: facts recorded while the log is away are kept,
// coalesced per key, and land once it is back, leaving every key as the facts recorded
// one by one would have.
func TestHealthFactsLandAfterTheLogComesBack(t *testing.T) {
	t.Parallel()
	until := time.Now().Add(time.Hour).Truncate(time.Second)
	for _, tc := range []struct {
		name  string
		facts []domain.Fact
		// stored is how many facts the log gets: the coalesced rest.
		stored int
	}{
		{"cooldowns: the latest end", []domain.Fact{
			domain.KeyFailed{GroupID: 1, KeyID: 1, Kind: domain.FailureRateLimit, RetryUntil: until},
			domain.KeyFailed{GroupID: 1, KeyID: 1, Kind: domain.FailureRateLimit, RetryUntil: until.Add(-time.Minute)},
		}, 1},
		{"counted failures: all kept", []domain.Fact{
			domain.KeyFailed{GroupID: 1, KeyID: 1, Kind: domain.FailureAuth, Status: 401},
			domain.KeyFailed{GroupID: 1, KeyID: 1, Kind: domain.FailureAuth, Status: 401},
			domain.KeyValidated{GroupID: 1, KeyID: 1, Status: 401},
		}, 3},
		{"a success resets", []domain.Fact{
			domain.KeyFailed{GroupID: 1, KeyID: 1, Kind: domain.FailureAuth, Status: 401},
			domain.KeyFailed{GroupID: 1, KeyID: 1, Kind: domain.FailureRateLimit, RetryUntil: until},
			domain.KeySucceeded{GroupID: 1, KeyID: 1},
			domain.KeyFailed{GroupID: 1, KeyID: 1, Kind: domain.FailureAuth, Status: 401},
		}, 2},
		{"a valid validation resets", []domain.Fact{
			domain.KeyFailed{GroupID: 1, KeyID: 1, Kind: domain.FailureAuth, Status: 401},
			domain.KeyFailed{GroupID: 1, KeyID: 1, Kind: domain.FailureAuth, Status: 401},
			domain.KeyValidated{GroupID: 1, KeyID: 1, Valid: true, Status: 200},
			domain.KeyFailed{GroupID: 1, KeyID: 1, Kind: domain.FailureRateLimit, RetryUntil: until},
		}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := &flakyLog{}
			l.down.Store(true)
			h := newHealth(l, 64, zerolog.Nop())
			defer h.close()
			for _, f := range tc.facts {
				h.record(actorProxy, f)
			}
			waitFor(t, func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.rounds >= 2 })
			if got := len(l.facts()); got != 0 {
				t.Fatalf("%d facts stored while the log was away", got)
			}
			l.down.Store(false)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := h.flush(ctx); err != nil {
				t.Fatal(err)
			}
			got := l.facts()
			if len(got) != tc.stored {
				t.Fatalf("%d facts stored, want %d: %+v", len(got), tc.stored, got)
			}
			want, have := keyState(tc.facts), keyState(got)
			if want.Status != have.Status || want.FailureCount != have.FailureCount || want.CooldownUntil != have.CooldownUntil {
				t.Fatalf("key after the stored facts %+v, after all of them %+v", have, want)
			}
			if h.dropped.Load() != 0 {
				t.Fatalf("%d dropped", h.dropped.Load())
			}
		})
	}
}

// TestHealthFactsBounded: past the bound, facts that would add to those waiting are
// dropped and counted; facts that replace waiting ones still fit.
func TestHealthFactsBounded(t *testing.T) {
	t.Parallel()
	l := &flakyLog{}
	l.down.Store(true)
	h := newHealth(l, 4, zerolog.Nop())
	defer h.close()
	for key := range uint64(6) {
		h.record(actorProxy, domain.KeyFailed{GroupID: 1, KeyID: key, Kind: domain.FailureAuth, Status: 401})
	}
	if got := h.dropped.Load(); got != 2 {
		t.Fatalf("%d dropped past a bound of 4 with 6 facts, want 2", got)
	}
	// A success of a waiting key replaces its failure: nothing more to hold.
	h.record(actorProxy, domain.KeySucceeded{GroupID: 1, KeyID: 0})
	if got := h.dropped.Load(); got != 2 {
		t.Fatalf("a replacing fact was dropped (%d)", got)
	}
	if got := h.waiting(); got != 4 {
		t.Fatalf("%d waiting, want 4", got)
	}
	l.down.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := l.facts()
	if len(got) != 4 || !slices.ContainsFunc(got, func(f domain.Fact) bool { return f == domain.KeySucceeded{GroupID: 1, KeyID: 0} }) {
		t.Fatalf("stored %+v", got)
	}
}

// TestHealthCloseGivesUp: a log that stays away, refusing at once or never answering,
// does not hold the proxy's close much longer than factCloseWait, and what could not be
// recorded is counted.
func TestHealthCloseGivesUp(t *testing.T) {
	t.Parallel()
	for _, hang := range []bool{false, true} {
		t.Run(fmt.Sprintf("hang=%v", hang), func(t *testing.T) {
			t.Parallel()
			l := &flakyLog{}
			l.down.Store(true)
			l.hang.Store(hang)
			h := newHealth(l, 64, zerolog.Nop())
			h.record(actorProxy, domain.KeyFailed{GroupID: 1, KeyID: 1, Kind: domain.FailureAuth, Status: 401})
			// Close while a publish round is under way.
			waitFor(t, func() bool { return l.calls.Load() > 0 })
			start := time.Now()
			h.close()
			if d := time.Since(start); d > factCloseWait+time.Second {
				t.Fatalf("close took %v", d)
			}
			if h.dropped.Load() != 1 {
				t.Fatalf("%d counted lost, want 1", h.dropped.Load())
			}
		})
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestHealthResetLostBeforeLaterFacts: when a success does not land but a failure recorded
// after it does, the success is sent again followed by that failure again, so the key
// ends as the facts in their order leave it, not cleared.
func TestHealthResetLostBeforeLaterFacts(t *testing.T) {
	t.Parallel()
	l := &flakyLog{}
	l.down.Store(true)
	h := newHealth(l, 64, zerolog.Nop())
	defer h.close()
	all := []domain.Fact{
		domain.KeyFailed{GroupID: 1, KeyID: 1, Kind: domain.FailureAuth, Status: 401},
		domain.KeyFailed{GroupID: 1, KeyID: 1, Kind: domain.FailureAuth, Status: 401},
		domain.KeySucceeded{GroupID: 1, KeyID: 1},
		domain.KeyFailed{GroupID: 1, KeyID: 1, Kind: domain.FailureAuth, Status: 401},
	}
	for _, f := range all {
		h.record(actorProxy, f)
	}
	var refused atomic.Bool
	l.mu.Lock()
	l.refuse = func(hf events.HealthFact) bool {
		_, ok := hf.Fact.(domain.KeySucceeded)
		return ok && refused.CompareAndSwap(false, true)
	}
	l.mu.Unlock()
	l.down.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.flush(ctx); err != nil {
		t.Fatal(err)
	}
	if !refused.Load() {
		t.Fatal("the success was never refused")
	}
	want, have := keyState(all), keyState(l.facts())
	if want.FailureCount != have.FailureCount || want.Status != have.Status {
		t.Fatalf("key after the stored facts %+v (%d facts), after all of them %+v", have, len(l.facts()), want)
	}
}
