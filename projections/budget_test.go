package projections

import (
	"sync"
	"testing"
	"time"
)

// A burst over a pool with a request budget spreads over every key, and no key is picked
// more than the budget in one minute, however many pickers race; the next minute opens a
// new budget.
func TestBudgetRequestsSpreadAndCap(t *testing.T) {
	const keys, rpm = 7, 5
	_, ks := testKeySet(t, keys)
	h := newPoolHolder(ks)
	b := Budget{Requests: rpm}
	minute := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC).UnixNano()
	for _, m := range []int64{minute, minute + minuteNS} {
		now := m + int64(30*time.Second)
		var mu sync.Mutex
		got := map[uint64]int{}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range keys * rpm {
					if k, ok := h.pickWithin(b, now); ok {
						mu.Lock()
						got[k.ID]++
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		if len(got) != keys {
			t.Fatalf("minute %d: picks %v, want all %d keys", m/minuteNS, got, keys)
		}
		for id, n := range got {
			if n != rpm {
				t.Errorf("minute %d: key %d picked %d times, want %d", m/minuteNS, id, n, rpm)
			}
		}
		if k, ok := h.pickWithin(b, now); ok {
			t.Fatalf("key %d picked over its budget", k.ID)
		}
		if _, ok := h.pickID(1, b, now); ok {
			t.Fatal("pickID gave a key over its budget")
		}
		if spent, next := (&GroupView{Budget: b, pool: h}).BudgetSpent(now); !spent || next.UnixNano() != m+minuteNS {
			t.Fatalf("BudgetSpent = %v, %v; want true and the next minute", spent, next)
		}
	}
	// A budget spent over whole blocks (which then rest by their hints) is seen too.
	_, big := testKeySet(t, 3*blockSize)
	hb := newPoolHolder(big)
	for range 3 * blockSize {
		hb.pickWithin(Budget{Requests: 1}, minute)
	}
	if _, ok := hb.pickWithin(Budget{Requests: 1}, minute); ok {
		t.Fatal("picked over the budget")
	}
	if spent, _ := (&GroupView{Budget: Budget{Requests: 1}, pool: hb}).BudgetSpent(minute); !spent {
		t.Fatal("a spent budget over full blocks not seen")
	}
	// Keys that rest for another reason are not a spent budget.
	for id := uint64(1); id <= keys; id++ {
		k, _ := ks.ByID(id)
		k.CooldownUntil = minute + 10*minuteNS
		h.sync(id, k)
	}
	if spent, _ := (&GroupView{Budget: b, pool: h}).BudgetSpent(minute + 5*minuteNS); spent {
		t.Fatal("cooling keys taken for a spent budget")
	}
}

// Tokens spent with a key count against its token budget: once it is used up the key
// rests until the next minute, and the others serve.
func TestBudgetTokens(t *testing.T) {
	_, ks := testKeySet(t, 3)
	h := newPoolHolder(ks)
	b := Budget{Tokens: 1000}
	now := 10*minuteNS + 1
	k, ok := h.pickID(2, b, now)
	if !ok {
		t.Fatal("key 2 not usable")
	}
	k.Spend(999, now)
	if _, ok := h.pickID(2, b, now); !ok {
		t.Fatal("key 2 rests with budget left")
	}
	k.Spend(1, now)
	for range 30 {
		if k, _ := h.pickWithin(b, now); k.ID == 2 || k.ID == 0 {
			t.Fatalf("picked %d: key 2 spent its tokens, 1 and 3 did not", k.ID)
		}
	}
	if _, ok := h.pickID(2, b, 11*minuteNS); !ok {
		t.Fatal("key 2 still rests in the next minute")
	}
}

// A budget raised while keys rest by their hints lets them serve at once.
func TestBudgetChangeResetsHints(t *testing.T) {
	_, ks := testKeySet(t, blockSize*2)
	h := newPoolHolder(ks)
	now := 3*minuteNS + 5
	small := Budget{Requests: 1}
	for range blockSize * 2 {
		if _, ok := h.pickWithin(small, now); !ok {
			t.Fatal("budget spent too early")
		}
	}
	if _, ok := h.pickWithin(small, now); ok {
		t.Fatal("picked over the budget")
	}
	h.resetHints()
	// The first block cools down: picks must find the second, whose hint said "spent".
	for id := uint64(1); id <= blockSize; id++ {
		k, _ := ks.ByID(id)
		k.CooldownUntil = now + minuteNS
		h.sync(id, k)
	}
	for range blockSize { // one more request each for the second block's keys
		if k, ok := h.pickWithin(Budget{Requests: 2}, now); !ok || k.ID <= blockSize {
			t.Fatalf("picked %d, %v: a raised budget left the second block resting", k.ID, ok)
		}
	}
}

func BenchmarkPickBudget(b *testing.B) {
	_, ks := testKeySet(b, 1000)
	h := newPoolHolder(ks)
	bud := Budget{Requests: 1 << 30, Tokens: 1 << 30}
	now := time.Now().UnixNano()
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := h.pickWithin(bud, now); !ok {
			b.Fatal("no key")
		}
	}
}
