package projections

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"gpt-load/domain"
)

// testKeySet builds a group's key set by folding KeysAdded, as the projection does.
func testKeySet(t testing.TB, n int) (*domain.State, *domain.KeySet) {
	t.Helper()
	s := domain.NewState(domain.DefaultSettings())
	at := time.Unix(0, 0)
	s.Apply(domain.GroupCreated{Group: domain.Group{ID: 1, Name: "g", Type: domain.GroupStandard}}, domain.Meta{Seq: 1, Time: at})
	seq := uint64(1)
	for start := 0; start < n; start += domain.MaxKeysPerEvent {
		var keys []domain.NewKey
		for i := start; i < min(n, start+domain.MaxKeysPerEvent); i++ {
			var h domain.KeyHash
			copy(h[:], fmt.Sprintf("%032d", i))
			keys = append(keys, domain.NewKey{Value: fmt.Sprint("sk-", i), Hash: h})
		}
		seq++
		s.Apply(domain.KeysAdded{GroupID: 1, Keys: keys}, domain.Meta{Seq: seq, Time: at})
	}
	return s, s.Keys(1)
}

func TestPoolRoundRobinSkipsRestingAndOut(t *testing.T) {
	_, ks := testKeySet(t, 5)
	h := newPoolHolder(ks)
	k2, _ := ks.ByID(2)
	k2.Status = domain.KeyInvalid
	h.sync(2, k2)
	k3, _ := ks.ByID(3)
	k3.CooldownUntil = 1000
	h.sync(3, k3)
	seen := map[uint64]int{}
	for i := 0; i < 300; i++ {
		k, ok := h.pick(500)
		if !ok {
			t.Fatal("nothing picked")
		}
		seen[k.ID]++
	}
	if seen[2] != 0 || seen[3] != 0 || len(seen) != 3 {
		t.Fatalf("picks %v: want keys 1, 4, 5 only", seen)
	}
	if k, _ := h.pick(2000); k.ID == 0 {
		t.Fatal("no pick after the cooldown")
	}
	// A blacklisted key that comes back needs no rebuild: its entry is still there.
	k2.Status = domain.KeyActive
	h.sync(2, k2)
	if h.needsRebuild() {
		t.Fatal("restoring a key that has an entry asked for a rebuild")
	}
	if got := fmt.Sprint(h.p.Load().SelectableIDs()); got != "[1 2 3 4 5]" {
		t.Fatalf("selectable %s", got)
	}
}

// TestPoolConcurrentReadersAndWriter runs pickers while the writer appends, flips and
// rebuilds; with -race it proves the read path needs no lock.
func TestPoolConcurrentReadersAndWriter(t *testing.T) {
	s, ks := testKeySet(t, 3000)
	h := newPoolHolder(ks)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if k, ok := h.pick(time.Now().UnixNano()); ok && k.Value == "" {
					t.Error("picked an entry without a value")
					return
				}
			}
		}()
	}
	seq := uint64(100)
	for i := 0; i < 200; i++ {
		seq++
		id := uint64(1 + i*7%3000)
		s.Apply(domain.KeyFailed{GroupID: 1, KeyID: id, Kind: domain.FailureAuth}, domain.Meta{Seq: seq, Time: time.Unix(0, 0)})
		k, _ := ks.ByID(id)
		h.sync(id, k)
		if i%50 == 0 {
			var h2 domain.KeyHash
			copy(h2[:], fmt.Sprintf("new-%028d", i))
			seq++
			ch := s.Apply(domain.KeysAdded{GroupID: 1, Keys: []domain.NewKey{{Value: "sk-new", Hash: h2}}}, domain.Meta{Seq: seq, Time: time.Unix(0, 0)})
			h.added(ks, ch.AddedFrom, ch.AddedTo)
		}
		if h.needsRebuild() {
			h.build(ks)
		}
	}
	close(stop)
	wg.Wait()
}

func BenchmarkPick(b *testing.B) {
	for _, n := range []int{10, 1000, 100_000, 1_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			_, ks := testKeySet(b, n)
			h := newPoolHolder(ks)
			now := time.Now().UnixNano()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, ok := h.pick(now); !ok {
					b.Fatal("no key")
				}
			}
		})
	}
}
