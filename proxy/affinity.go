package proxy

import (
	"encoding/binary"
	"hash/maphash"
	"math"
	"math/bits"
	"sync/atomic"
	"time"

	"gpt-load/proxy/channel"
)

// affinity remembers, for the conversations of groups with prompt_cache_affinity, the key
// that last served them, so that the next turn goes to the same key and the provider's
// prompt cache keeps paying off.
//
// The table is a fixed array of slots in sets of affinityWays: a conversation's hash
// chooses its set, and a new conversation takes a free or expired slot of the set, else
// the one used least recently. It never grows, so memory stays bounded whatever the number
// of conversations. Readers take no lock: a slot holds an immutable entry behind an atomic
// pointer (its last use aside), and a writer swaps entries by compare-and-swap; a lost
// swap just leaves the other writer's entry, as a cache may.
type affinity struct {
	seed  maphash.Seed
	ttl   int64
	sets  uint64 // a power of two
	slots []atomic.Pointer[affinityEntry]

	hits, moved, misses atomic.Uint64
}

// affinityWays is the number of slots a conversation may take.
const affinityWays = 4

type affinityEntry struct {
	conv uint64 // the conversation's hash, group included; 0 never names one
	key  uint64
	used atomic.Int64 // Unix ns of the entry's last use
}

// affinityTouch is how stale an entry's last use may get before a hit writes it again:
// hits of a busy conversation mostly only read the entry.
const affinityTouch = int64(time.Second)

func newAffinity(entries int, ttl time.Duration) *affinity {
	sets := uint64(1) << bits.Len64(uint64(max(entries/affinityWays, 1))-1)
	return &affinity{
		seed:  maphash.MakeSeed(),
		ttl:   int64(ttl),
		sets:  sets,
		slots: make([]atomic.Pointer[affinityEntry], sets*affinityWays),
	}
}

// conversation hashes the conversation a request body names within group; false when it
// names none.
func (a *affinity) conversation(group uint64, body []byte) (uint64, bool) {
	var h maphash.Hash
	h.SetSeed(a.seed)
	var g [8]byte
	binary.LittleEndian.PutUint64(g[:], group)
	h.Write(g[:])
	if !channel.Conversation(&h, body) {
		return 0, false
	}
	return h.Sum64() | 1, true // never 0
}

func (a *affinity) set(conv uint64) []atomic.Pointer[affinityEntry] {
	i := (conv >> 1 & (a.sets - 1)) * affinityWays
	return a.slots[i : i+affinityWays]
}

// get returns the key that last served conv, unless it is older than the TTL.
func (a *affinity) get(conv uint64, now int64) (uint64, bool) {
	set := a.set(conv)
	for i := range set {
		e := set[i].Load()
		if e == nil || e.conv != conv {
			continue
		}
		used := e.used.Load()
		if now-used > a.ttl {
			return 0, false
		}
		if now-used > affinityTouch {
			e.used.CompareAndSwap(used, now)
		}
		return e.key, true
	}
	return 0, false
}

// put records that key served conv at now. conv takes its own slot if it has one, else a
// free one of its set, else the least recently used (an expired entry is the least
// recently used of all).
func (a *affinity) put(conv, key uint64, now int64) {
	set := a.set(conv)
	victim, oldest := 0, int64(math.MaxInt64)
	for i := range set {
		e := set[i].Load()
		if e == nil {
			victim, oldest = i, math.MinInt64
			continue
		}
		if e.conv == conv {
			if e.key == key {
				if used := e.used.Load(); now-used > affinityTouch {
					e.used.CompareAndSwap(used, now)
				}
				return
			}
			victim = i
			break
		}
		if used := e.used.Load(); used < oldest {
			victim, oldest = i, used
		}
	}
	n := &affinityEntry{conv: conv, key: key}
	n.used.Store(now)
	old := set[victim].Load()
	set[victim].CompareAndSwap(old, n)
}

// len counts the entries younger than the TTL at now (O(size): tests and diagnostics).
func (a *affinity) len(now int64) int {
	n := 0
	for i := range a.slots {
		if e := a.slots[i].Load(); e != nil && now-e.used.Load() <= a.ttl {
			n++
		}
	}
	return n
}

// AffinityStats counts the prompt-cache affinity lookups of this node: Hits went to the
// key that served the conversation before, Moved found that key resting, out of rotation
// or over its budget (the request took the next key in rotation, and the conversation
// sticks to it from then on), Misses were new conversations (or forgotten ones).
type AffinityStats struct {
	Hits, Moved, Misses uint64
}

// AffinityStats reads the counters of the prompt-cache affinity.
func (h *Handler) AffinityStats() AffinityStats {
	a := h.affinity
	return AffinityStats{Hits: a.hits.Load(), Moved: a.moved.Load(), Misses: a.misses.Load()}
}

// affinityPick is the first pick of a request that names a conversation: the key that
// served it before, when that key is usable.
func (p *request) affinityPick(now int64) (poolKey, bool) {
	a := p.h.affinity
	id, ok := a.get(p.conv, now)
	if !ok {
		a.misses.Add(1)
		return poolKey{}, false
	}
	k, ok := p.serving.PickID(id, now)
	if !ok {
		a.moved.Add(1)
		return poolKey{}, false
	}
	a.hits.Add(1)
	return k, true
}
