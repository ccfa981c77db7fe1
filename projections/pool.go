package projections

import (
	"sort"
	"sync/atomic"

	"gpt-load/domain"
)

// PoolKey is a key as the proxy uses it. Failures is its failure streak when picked: the
// proxy records a success only for a key that had one.
type PoolKey struct {
	ID       uint64
	Value    string
	Failures uint32
}

// chunkSize is the number of entries of one chunk. Chunks are allocated once and never
// moved, so pool versions can share them and entries can carry atomics.
const chunkSize = 1024

type entry struct {
	id       uint64
	value    string
	until    atomic.Int64  // end of a rate-limit cooldown, Unix nanoseconds
	failures atomic.Uint32 // the key's current failure streak
	out      atomic.Bool   // not selectable: blacklisted, disabled or removed
}

type chunk [chunkSize]entry

// Pool is one version of a group's selectable keys, in id order. Readers never lock:
// a health change flips an entry's atomics in place; new keys are appended past the end
// every older version knows (so they never see them); anything else publishes a rebuilt
// Pool.
type Pool struct {
	chunks []*chunk
	n      int
}

func (p *Pool) at(i int) *entry { return &p.chunks[i/chunkSize][i%chunkSize] }

func (p *Pool) find(id uint64) *entry {
	i := sort.Search(p.n, func(i int) bool { return p.at(i).id >= id })
	if i < p.n && p.at(i).id == id {
		return p.at(i)
	}
	return nil
}

// poolHolder is a group's current pool and round-robin counter. The fields after rr are
// the writer's, touched only by the runner goroutine.
type poolHolder struct {
	p  atomic.Pointer[Pool]
	rr atomic.Uint64

	dead    int  // entries marked out
	rebuild bool // the pool lacks a key that became selectable
}

func newPoolHolder(ks *domain.KeySet) *poolHolder {
	h := &poolHolder{}
	h.build(ks)
	return h
}

// pick selects the next usable key by round robin: no lock, no allocation.
func (h *poolHolder) pick(now int64) (PoolKey, bool) {
	p := h.p.Load()
	n := uint64(p.n)
	if n == 0 {
		return PoolKey{}, false
	}
	start := h.rr.Add(1)
	for i := uint64(0); i < n; i++ {
		j := (start + i) % n
		e := &p.chunks[j/chunkSize][j%chunkSize]
		if !e.out.Load() && e.until.Load() <= now {
			return PoolKey{ID: e.id, Value: e.value, Failures: e.failures.Load()}, true
		}
	}
	return PoolKey{}, false
}

// build publishes a new pool of the set's active keys.
func (h *poolHolder) build(ks *domain.KeySet) {
	p := &Pool{}
	if ks != nil {
		ks.Each(func(k *domain.Key) bool {
			if k.Selectable() {
				p.appendKey(k)
			}
			return true
		})
	}
	h.dead, h.rebuild = 0, false
	h.p.Store(p)
}

// appendKey writes an entry past the end of the pool (invisible to readers until a
// Pool with the new length is published).
func (p *Pool) appendKey(k *domain.Key) {
	if p.n == len(p.chunks)*chunkSize {
		p.chunks = append(p.chunks, new(chunk))
	}
	e := p.at(p.n)
	e.id, e.value = k.ID, k.Value
	e.until.Store(k.CooldownUntil)
	e.failures.Store(k.FailureCount)
	e.out.Store(false)
	p.n++
}

// added appends the active keys with ids in [from, to), which are the newest of the set.
func (h *poolHolder) added(ks *domain.KeySet, from, to uint64) {
	var fresh []*domain.Key
	ks.EachDesc(func(k *domain.Key) bool {
		if k.ID < from {
			return false
		}
		if k.ID < to && k.Selectable() {
			fresh = append(fresh, k)
		}
		return true
	})
	if len(fresh) == 0 {
		return
	}
	old := h.p.Load()
	p := &Pool{chunks: append([]*chunk(nil), old.chunks...), n: old.n}
	for i := len(fresh) - 1; i >= 0; i-- {
		p.appendKey(fresh[i])
	}
	h.p.Store(p)
}

// sync brings one key's entry in line with the key's state; k is nil for a removed key.
func (h *poolHolder) sync(id uint64, k *domain.Key) {
	e := h.p.Load().find(id)
	selectable := k != nil && k.Selectable()
	if e == nil {
		if selectable {
			h.rebuild = true
		}
		return
	}
	if k != nil {
		e.until.Store(k.CooldownUntil)
		e.failures.Store(k.FailureCount)
	}
	if was := !e.out.Load(); was != selectable {
		e.out.Store(!selectable)
		if selectable {
			h.dead--
		} else {
			h.dead++
		}
	}
}

// needsRebuild says whether the pool should be rebuilt: it lacks a selectable key, or a
// quarter of it is dead weight that every pick may have to step over.
func (h *poolHolder) needsRebuild() bool {
	return h.rebuild || (h.dead > 0 && h.dead*4 >= h.p.Load().n)
}

// SelectableIDs lists the ids of the keys that are in rotation, resting ones included
// (O(n): for tests and diagnostics).
func (p *Pool) SelectableIDs() []uint64 {
	var ids []uint64
	for i := 0; i < p.n; i++ {
		if e := p.at(i); !e.out.Load() {
			ids = append(ids, e.id)
		}
	}
	return ids
}
