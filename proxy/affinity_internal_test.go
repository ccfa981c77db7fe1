package proxy

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// The table stays within its size under 100,000 conversations, keeps the recent ones, and
// forgets one unused for longer than the TTL.
func TestAffinityTableBounded(t *testing.T) {
	t.Parallel()
	const entries, convs = 4096, 100_000
	a := newAffinity(entries, time.Hour)
	if len(a.slots) != entries {
		t.Fatalf("%d slots for %d entries", len(a.slots), entries)
	}
	now := int64(time.Hour)
	ids := make([]uint64, convs)
	for i := range convs {
		ids[i], _ = a.conversation(1, fmt.Appendf(nil, `{"messages":[{"role":"user","content":"conversation %d"}]}`, i))
		a.put(ids[i], uint64(i%100+1), now+int64(i))
	}
	if n := a.len(now + convs); n > entries {
		t.Fatalf("%d entries remembered, bound %d", n, entries)
	}
	kept := 0
	for i := convs - 100; i < convs; i++ {
		if k, ok := a.get(ids[i], now+convs); ok {
			if k != uint64(i%100+1) {
				t.Fatalf("conversation %d: key %d, want %d", i, k, i%100+1)
			}
			kept++
		}
	}
	if kept < 95 {
		t.Fatalf("only %d of the 100 latest conversations are remembered", kept)
	}
	if _, ok := a.get(ids[convs-1], now+convs+int64(time.Hour)+1); ok {
		t.Fatal("a conversation outlived the TTL")
	}
	// A conversation that moves keeps one entry.
	a.put(ids[0], 7, now+convs)
	a.put(ids[0], 8, now+convs+1)
	n := 0
	set := a.set(ids[0])
	for i := range set {
		if e := set[i].Load(); e != nil && e.conv == ids[0] {
			n++
		}
	}
	if k, _ := a.get(ids[0], now+convs+2); n != 1 || k != 8 {
		t.Fatalf("%d entries for a moved conversation, key %d", n, k)
	}
}

// Readers and writers share the table without a lock (-race).
func TestAffinityTableConcurrent(t *testing.T) {
	t.Parallel()
	a := newAffinity(256, time.Hour)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 20_000 {
				conv := uint64(i%1000)<<1 | 1
				if k, ok := a.get(conv, int64(i)); ok && k == 0 {
					t.Error("key 0")
					return
				}
				a.put(conv, uint64(w+1), int64(i))
			}
		})
	}
	wg.Wait()
	if n := a.len(20_000); n > 256 {
		t.Fatalf("%d entries", n)
	}
}

// BenchmarkAffinityLookup is the hot-path cost of the affinity for a known conversation:
// hashing the body's conversation and finding its key.
func BenchmarkAffinityLookup(b *testing.B) {
	a := newAffinity(1<<16, time.Hour)
	body := []byte(`{"model":"gpt-4o","messages":[{"role":"system","content":"You are helpful."},{"role":"user","content":"What is the capital of France?"},{"role":"assistant","content":"Paris."},{"role":"user","content":"And of Italy?"}]}`)
	conv, _ := a.conversation(1, body)
	a.put(conv, 42, 1)
	b.Run("table", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if k, ok := a.get(conv, 2); !ok || k != 42 {
					b.Fatal("miss")
				}
			}
		})
	})
	b.Run("hash+table", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c, _ := a.conversation(1, body)
				if k, ok := a.get(c, 2); !ok || k != 42 {
					b.Fatal("miss")
				}
			}
		})
	})
}

// A full set gives the slot of its least recently used conversation to a new one.
func TestAffinityEvictsLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	a := newAffinity(64, time.Hour)
	inSet0 := func(i uint64) uint64 { return (i*a.sets)<<1 | 1 }
	sec := int64(time.Second)
	for i := range uint64(affinityWays) {
		a.put(inSet0(i), i+1, int64(i)*sec)
	}
	if _, ok := a.get(inSet0(0), 10*sec); !ok { // conversation 0 is used again
		t.Fatal("conversation 0 forgotten")
	}
	a.put(inSet0(affinityWays), 99, 11*sec)
	if _, ok := a.get(inSet0(1), 12*sec); ok {
		t.Fatal("conversation 1, the least recently used, is still remembered")
	}
	for _, i := range []uint64{0, 2, 3, affinityWays} {
		if _, ok := a.get(inSet0(i), 12*sec); !ok {
			t.Fatalf("conversation %d forgotten", i)
		}
	}
}
