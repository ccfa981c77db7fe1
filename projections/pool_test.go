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

// TestPoolConcurrentReadersAndWriter runs pickers while the writer appends, flips keys out
// (each fails as often as the blacklist threshold asks) and rebuilds once a quarter of the
// pool is out; with -race it proves the read path needs no lock. It checks that the flips
// and rebuilds happened, and that the pool then offers exactly the state's active keys.
func TestPoolConcurrentReadersAndWriter(t *testing.T) {
	s, ks := testKeySet(t, 3000)
	threshold := s.Settings.BlacklistThreshold
	if threshold < 2 {
		t.Fatalf("blacklist threshold %d: the test wants failures that do not flip at once", threshold)
	}
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
	flips, rebuilds := 0, 0
	for i := 0; i < 1000; i++ {
		id := uint64(1 + i*7%3000)
		for range threshold {
			seq++
			s.Apply(domain.KeyFailed{GroupID: 1, KeyID: id, Kind: domain.FailureAuth}, domain.Meta{Seq: seq, Time: time.Unix(0, 0)})
			k, _ := ks.ByID(id)
			before := h.dead
			h.sync(id, k)
			if h.dead > before {
				flips++
			}
		}
		if i%50 == 0 {
			var h2 domain.KeyHash
			copy(h2[:], fmt.Sprintf("new-%028d", i))
			seq++
			ch := s.Apply(domain.KeysAdded{GroupID: 1, Keys: []domain.NewKey{{Value: "sk-new", Hash: h2}}}, domain.Meta{Seq: seq, Time: time.Unix(0, 0)})
			h.added(ks, ch.AddedFrom, ch.AddedTo)
		}
		if h.needsRebuild() {
			h.build(ks)
			rebuilds++
		}
	}
	close(stop)
	wg.Wait()
	if flips != 1000 || rebuilds == 0 {
		t.Fatalf("%d flips and %d rebuilds: want 1000 flips and at least one rebuild", flips, rebuilds)
	}
	var want []uint64
	ks.Each(func(k *domain.Key) bool {
		if k.Selectable() {
			want = append(want, k.ID)
		}
		return true
	})
	if got := h.p.Load().SelectableIDs(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pool offers %d keys, the state has %d active", len(got), len(want))
	}
	now := time.Now().UnixNano()
	for range 3 * len(want) {
		k, ok := h.pick(now)
		if !ok {
			t.Fatal("nothing picked")
		}
		if sk, _ := ks.ByID(k.ID); !sk.Selectable() {
			t.Fatalf("picked key %d, which the state has out of rotation", k.ID)
		}
	}
}

// TestPoolHoldEndsWithNewerState: a hold keeps a key out of rotation until it expires or
// the projection syncs the key, whichever is first; a hold made on an older state of the
// key is void.
func TestPoolHoldEndsWithNewerState(t *testing.T) {
	_, ks := testKeySet(t, 3)
	h := newPoolHolder(ks)
	now := time.Now().UnixNano()
	picks := func() map[uint64]int {
		seen := map[uint64]int{}
		for range 30 {
			k, ok := h.pick(now)
			if !ok {
				t.Fatal("nothing picked")
			}
			seen[k.ID]++
		}
		return seen
	}
	var k2 PoolKey
	for k2.ID != 2 {
		k2, _ = h.pick(now)
	}
	k2.Hold(now + int64(time.Hour))
	if seen := picks(); seen[2] != 0 {
		t.Fatalf("held key picked: %v", seen)
	}
	// The log brings a newer state of the key (a restore, an enable, a validation...).
	k, _ := ks.ByID(2)
	h.sync(2, k)
	if seen := picks(); seen[2] == 0 {
		t.Fatalf("key still held after the projection synced it: %v", seen)
	}
	// A hold made under a state the projection has moved past is void.
	for k2 = (PoolKey{}); k2.ID != 2; {
		k2, _ = h.pick(now)
	}
	h.sync(2, k)
	k2.Hold(now + int64(time.Hour))
	if seen := picks(); seen[2] == 0 {
		t.Fatalf("a hold on an older state kept the key out: %v", seen)
	}
	// A hold ends when it expires.
	for k2 = (PoolKey{}); k2.ID != 2; {
		k2, _ = h.pick(now)
	}
	k2.Hold(now + 10)
	if pickedWithin(h, now, 2, 3) {
		t.Fatal("a hold did not keep its key out")
	}
	if !pickedWithin(h, now+10, 2, 3) {
		t.Fatal("an expired hold kept its key out")
	}
	// A rebuild carries the holds of the keys it keeps.
	now += 10
	for k2 = (PoolKey{}); k2.ID != 2; {
		k2, _ = h.pick(now)
	}
	k2.Hold(now + int64(time.Hour))
	k1, _ := ks.ByID(1)
	k1.Status = domain.KeyInvalid
	h.sync(1, k1)
	h.build(ks)
	if seen := picks(); seen[2] != 0 || seen[1] != 0 {
		t.Fatalf("after a rebuild: %v, want key 3 only", seen)
	}
	// A key picked before it went out and came back with a rebuild (a restore of every
	// invalid key) cannot be held by that old pick.
	var k3 PoolKey
	for k3.ID != 3 {
		k3, _ = h.pick(now)
	}
	k3s, _ := ks.ByID(3)
	k3s.Status = domain.KeyInvalid
	h.sync(3, k3s)
	h.build(ks)
	k3s.Status = domain.KeyActive
	h.build(ks)
	k3.Hold(now + int64(time.Hour))
	if !pickedWithin(h, now, 3, 3) {
		t.Fatal("a pick made before a restore held the restored key")
	}
}

// TestPoolRestingRunsWake: the hints that let picks step over resting runs never hide a
// key that can be picked: not when its cooldown ends, not when the projection restores or
// wakes it, not when a key is appended after a resting run.
func TestPoolRestingRunsWake(t *testing.T) {
	const n = 5000
	s, ks := testKeySet(t, n)
	h := newPoolHolder(ks)
	now := time.Now().UnixNano()
	cool := now + int64(time.Minute)
	for id := uint64(1); id < n; id++ { // all but the last rest
		k, _ := ks.ByID(id)
		if id%2 == 0 {
			k.CooldownUntil = cool
		} else {
			k.Status = domain.KeyInvalid
		}
		h.sync(id, k)
	}
	for range 2 * n {
		if k, ok := h.pick(now); !ok || k.ID != n {
			t.Fatalf("picked %d, %v: want only key %d", k.ID, ok, n)
		}
	}
	// The projection wakes a key inside a hinted run.
	k, _ := ks.ByID(1500)
	k.CooldownUntil = 0
	h.sync(1500, k)
	if !pickedWithin(h, now, 1500, 3) {
		t.Fatal("a key woken by the projection stayed hidden behind a hint")
	}
	// A restored key inside a run hinted as out for good.
	k, _ = ks.ByID(777)
	k.Status = domain.KeyActive
	h.sync(777, k)
	if !pickedWithin(h, now, 777, 4) {
		t.Fatal("a restored key stayed hidden behind a hint")
	}
	// The cooldowns end.
	if !pickedWithin(h, cool, 2, n) || !pickedWithin(h, cool, 4000, n) {
		t.Fatal("keys stayed hidden after their cooldown")
	}
	// Keys appended after a resting run.
	var hash domain.KeyHash
	copy(hash[:], "appended-after-a-resting-run-000")
	ch := s.Apply(domain.KeysAdded{GroupID: 1, Keys: []domain.NewKey{{Value: "sk-late", Hash: hash}}}, domain.Meta{Seq: 1 << 20, Time: time.Unix(0, 0)})
	h.added(ks, ch.AddedFrom, ch.AddedTo)
	if !pickedWithin(h, now, ch.AddedFrom, n+1) {
		t.Fatal("an appended key was not picked")
	}
}

// pickedWithin reports whether key id is picked among a few rounds of picks at now.
func pickedWithin(h *poolHolder, now int64, id uint64, usable int) bool {
	for range 4 * usable {
		if k, ok := h.pick(now); ok && k.ID == id {
			return true
		}
	}
	return false
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

// BenchmarkPickDegraded is a pick while 99% of a 100,000-key pool rests (a 429 storm):
// "spread" leaves every 100th key usable, "clustered" leaves the last 1% usable, as a
// storm that rested keys in rotation order does.
func BenchmarkPickDegraded(b *testing.B) {
	const n = 100_000
	now := time.Now().UnixNano()
	for _, layout := range []string{"spread", "clustered"} {
		b.Run(layout, func(b *testing.B) {
			_, ks := testKeySet(b, n)
			h := newPoolHolder(ks)
			for id := uint64(1); id <= n; id++ {
				usable := id%100 == 0
				if layout == "clustered" {
					usable = id > n-n/100
				}
				if !usable {
					k, _ := ks.ByID(id)
					k.CooldownUntil = now + int64(time.Hour)
					h.sync(id, k)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, ok := h.pick(now); !ok {
					b.Fatal("no key")
				}
			}
		})
	}
}
