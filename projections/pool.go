package projections

import (
	"math"
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

	h   *poolHolder // the pool it was picked from, for Hold
	gen uint64      // the entry's state generation when picked
}

// Hold keeps the key out of this node's rotation until until (Unix ns), or until the
// projection next changes the key's state, whichever comes first: a hold is this node's
// guess while a fact is on its way through the log, and any newer state the log brings
// (the fact itself, a restore, an enable, a validation) wins over it.
func (k PoolKey) Hold(until int64) {
	if k.h == nil {
		return
	}
	hd := &hold{gen: k.gen, until: until}
	for {
		// Set on the current pool; if a rebuild published another meanwhile, set it there
		// too (build carries the holds it finds only once it has published).
		p := k.h.p.Load()
		if i := p.index(k.ID); i >= 0 {
			p.at(i).hold.Store(hd)
		}
		if k.h.p.Load() == p {
			return
		}
	}
}

// chunkSize is the number of entries of one chunk. Chunks are allocated once and never
// moved, so pool versions can share them and entries can carry atomics.
const chunkSize = 1024

// blockSize is the number of entries one resting hint covers.
const blockSize = 64

type entry struct {
	id       uint64
	value    string
	until    atomic.Int64  // end of a rate-limit cooldown, Unix nanoseconds
	failures atomic.Uint32 // the key's current failure streak
	out      atomic.Bool   // not selectable: blacklisted, disabled or removed
	gen      atomic.Uint64 // the key's state generation: new whenever the projection syncs it
	hold     atomic.Pointer[hold]
	reqs     meter // requests sent with the key in the current minute (this node's)
	toks     meter // tokens the key used in the current minute (this node's)
}

// hold is this node's own exclusion of a key, valid while the entry's generation is gen.
type hold struct {
	gen   uint64
	until int64
}

// wake is when the entry can next be picked under budget b (math.MaxInt64: not before
// the projection changes it); at or before now it can be picked now.
func (e *entry) wake(b Budget, now int64) int64 {
	if e.out.Load() {
		return math.MaxInt64
	}
	w := e.until.Load()
	if h := e.hold.Load(); h != nil && h.until > w && h.gen == e.gen.Load() {
		w = h.until
	}
	if b.on() && w <= now {
		w = max(w, b.wake(e, now))
	}
	return w
}

func (e *entry) key(h *poolHolder) PoolKey {
	return PoolKey{ID: e.id, Value: e.value, Failures: e.failures.Load(), h: h, gen: e.gen.Load()}
}

type chunk [chunkSize]entry

// hints are a chunk's resting hints: one per block of blockSize entries and one for the
// whole chunk. A hint says "nothing here can be picked before" a time; pickers write it
// when they find a full block (or chunk) resting, so later picks step over it in one load
// until it wakes, and the projection clears it whenever it changes an entry. They live
// apart from the entries, close to each other, so stepping over a long resting run touches
// a few cache lines rather than a page per chunk.
type hints struct {
	block [chunkSize / blockSize]hint
	all   hint
}

// hint packs a version (high bits, bumped by every reset) and a wake time in milliseconds
// (low hintBits; 0: none, hintNever: not before a reset). A picker sets it by
// compare-and-swap against the value it read before scanning, so a reset made meanwhile
// always wins.
type hint struct{ v atomic.Uint64 }

const (
	hintBits  = 44 // milliseconds since 1970 fit until the year 2527
	hintNever = 1<<hintBits - 1
)

func hintWake(v uint64) int64 {
	ms := v & hintNever
	if ms == hintNever {
		return math.MaxInt64
	}
	return int64(ms) * 1e6
}

// set records wake (rounded up to the millisecond) if the hint still holds v.
func (h *hint) set(v uint64, wake int64) {
	var ms uint64
	switch {
	case wake <= 0:
		return
	case wake == math.MaxInt64 || (wake-1)/1e6+1 >= hintNever:
		ms = hintNever
	default:
		ms = uint64((wake-1)/1e6 + 1)
	}
	h.v.CompareAndSwap(v, v&^hintNever|ms)
}

// reset drops the wake time and bumps the version.
func (h *hint) reset() {
	for {
		v := h.v.Load()
		if h.v.CompareAndSwap(v, (v>>hintBits+1)<<hintBits) {
			return
		}
	}
}

// scanBlock returns the first entry of block b that can be picked at now, else the
// earliest time one can (and records it in the block's hint).
func scanBlock(c *chunk, hs *hints, b int, bud Budget, now int64) (*entry, int64) {
	h := &hs.block[b]
	v := h.v.Load()
	if w := hintWake(v); w > now {
		return nil, w
	}
	wake := int64(math.MaxInt64)
	for j := b * blockSize; j < (b+1)*blockSize; j++ {
		e := &c[j]
		w := e.wake(bud, now)
		if w <= now {
			return e, 0
		}
		wake = min(wake, w)
	}
	h.set(v, wake)
	return nil, wake
}

// scanAll is scanBlock for the whole chunk.
func scanAll(c *chunk, hs *hints, bud Budget, now int64) *entry {
	v := hs.all.v.Load()
	if hintWake(v) > now {
		return nil
	}
	wake := int64(math.MaxInt64)
	for b := range len(hs.block) {
		e, w := scanBlock(c, hs, b, bud, now)
		if e != nil {
			return e
		}
		wake = min(wake, w)
	}
	hs.all.set(v, wake)
	return nil
}

// Pool is one version of a group's selectable keys, in id order. Readers never lock:
// a health change flips an entry's atomics in place; new keys are appended past the end
// every older version knows (so they never see them); anything else publishes a rebuilt
// Pool.
type Pool struct {
	chunks []*chunk
	hints  []*hints // one per chunk
	n      int
}

func (p *Pool) at(i int) *entry { return &p.chunks[i/chunkSize][i%chunkSize] }

// index returns the position of the entry of key id, or -1.
func (p *Pool) index(id uint64) int {
	i := sort.Search(p.n, func(i int) bool { return p.at(i).id >= id })
	if i < p.n && p.at(i).id == id {
		return i
	}
	return -1
}

// Len is the number of entries of the pool, those out of rotation included.
func (p *Pool) Len() int { return p.n }

// scan returns the first entry in [lo, hi) that can be picked at now. Hints are only read
// and written for blocks and chunks that lie wholly in [lo, hi), and hi never exceeds the
// pool's length, so entries appended later never hide behind an older version's hint.
func (p *Pool) scan(lo, hi int, b Budget, now int64) *entry {
	for i := lo; i < hi; {
		k, o := i/chunkSize, i%chunkSize
		c, hs := p.chunks[k], p.hints[k]
		// A hint that rests holds for any part of its run: step over it.
		if hintWake(hs.all.v.Load()) > now {
			i = (k + 1) * chunkSize
			continue
		}
		if o == 0 && i+chunkSize <= hi {
			if e := scanAll(c, hs, b, now); e != nil {
				return e
			}
			i += chunkSize
			continue
		}
		bi := o / blockSize
		next := i - o%blockSize + blockSize
		if hintWake(hs.block[bi].v.Load()) > now {
			i = next
			continue
		}
		if o%blockSize == 0 && next <= hi {
			if e, _ := scanBlock(c, hs, bi, b, now); e != nil {
				return e
			}
			i = next
			continue
		}
		for end := min(hi, next); i < end; i++ {
			if e := &c[i%chunkSize]; e.wake(b, now) <= now {
				return e
			}
		}
	}
	return nil
}

// poolHolder is a group's current pool and round-robin counter. The fields after rr are
// the writer's, touched only by the runner goroutine.
type poolHolder struct {
	p  atomic.Pointer[Pool]
	rr atomic.Uint64

	dead    int    // entries marked out
	rebuild bool   // the pool lacks a key that became selectable
	gen     uint64 // the latest state generation given to an entry
}

func newPoolHolder(ks *domain.KeySet) *poolHolder {
	h := &poolHolder{}
	h.build(ks)
	return h
}

// pick selects the next usable key by round robin: no lock, no allocation. When the key
// in turn rests, the scan for the next one steps over resting blocks and chunks by their
// hints, so a pool that mostly rests costs about as much as a healthy one. Under a
// budget the pick counts a request against the key it returns; a key whose budget is
// spent rests until the next minute.
func (h *poolHolder) pick(now int64) (PoolKey, bool) { return h.pickWithin(Budget{}, now) }

// pickWithin is pick under budget b: it counts a request against the key it returns, and
// a key whose budget is spent rests until the next minute.
func (h *poolHolder) pickWithin(b Budget, now int64) (PoolKey, bool) {
	p := h.p.Load()
	n := p.n
	if n == 0 {
		return PoolKey{}, false
	}
	i := int(h.rr.Add(1) % uint64(n))
	for range maxTakeRaces {
		e := p.at(i)
		if e.wake(b, now) > now {
			if e = p.scan(i+1, n, b, now); e == nil {
				if e = p.scan(0, i, b, now); e == nil {
					return PoolKey{}, false
				}
			}
		}
		if !b.on() || b.take(e, now) {
			return e.key(h), true
		}
		// Another request took the last of the key's budget since the scan: go on from it.
		i = p.index(e.id)
	}
	return PoolKey{}, false
}

// maxTakeRaces bounds the keys one pick may lose to other requests' budget takes.
const maxTakeRaces = 16

// pickID returns key id when it is in the pool and can be picked at now, counting it
// against budget b like pick.
func (h *poolHolder) pickID(id uint64, b Budget, now int64) (PoolKey, bool) {
	p := h.p.Load()
	i := p.index(id)
	if i < 0 {
		return PoolKey{}, false
	}
	e := p.at(i)
	if e.wake(b, now) > now || (b.on() && !b.take(e, now)) {
		return PoolKey{}, false
	}
	return e.key(h), true
}

// build publishes a new pool of the set's active keys. An entry of a key that was in
// rotation in the old pool keeps its generation and hold: a rebuild (a quarter of the pool
// out, say) says nothing new about the keys it carries over. A key that comes back into
// rotation (a restore of every invalid key) starts without a hold.
func (h *poolHolder) build(ks *domain.KeySet) {
	p := &Pool{}
	old := h.p.Load()
	h.gen++ // fresh entries: no key picked before can hold them
	if ks != nil {
		ks.Each(func(k *domain.Key) bool {
			if k.Selectable() {
				p.appendKey(k, h.gen)
			}
			return true
		})
	}
	carry := func(f func(o, e *entry)) {
		if old == nil {
			return
		}
		j := 0
		for i := 0; i < p.n; i++ {
			e := p.at(i)
			for j < old.n && old.at(j).id < e.id {
				j++
			}
			if j < old.n {
				if o := old.at(j); o.id == e.id && !o.out.Load() {
					f(o, e)
				}
			}
		}
	}
	carry(func(o, e *entry) { e.gen.Store(o.gen.Load()) })
	h.dead, h.rebuild = 0, false
	h.p.Store(p)
	// Holds last: one set on the old pool before this point is carried here, one set
	// after it sees the new pool published and sets itself there (PoolKey.Hold).
	carry(func(o, e *entry) {
		if hd := o.hold.Load(); hd != nil {
			e.hold.CompareAndSwap(nil, hd)
		}
	})
}

// appendKey writes an entry past the end of the pool (invisible to readers until a
// Pool with the new length is published).
func (p *Pool) appendKey(k *domain.Key, gen uint64) {
	if p.n == len(p.chunks)*chunkSize {
		p.chunks = append(p.chunks, new(chunk))
		p.hints = append(p.hints, new(hints))
	}
	e := p.at(p.n)
	e.id, e.value = k.ID, k.Value
	e.until.Store(k.CooldownUntil)
	e.failures.Store(k.FailureCount)
	e.out.Store(false)
	e.gen.Store(gen)
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
	p := &Pool{chunks: append([]*chunk(nil), old.chunks...), hints: append([]*hints(nil), old.hints...), n: old.n}
	h.gen++
	for i := len(fresh) - 1; i >= 0; i-- {
		p.appendKey(fresh[i], h.gen)
	}
	h.p.Store(p)
}

// sync brings one key's entry in line with the key's state; k is nil for a removed key.
// It ends any hold of the key: the state the log brings is newer than this node's guess.
func (h *poolHolder) sync(id uint64, k *domain.Key) {
	p := h.p.Load()
	i := p.index(id)
	selectable := k != nil && k.Selectable()
	if i < 0 {
		if selectable {
			h.rebuild = true
		}
		return
	}
	e := p.at(i)
	h.gen++
	e.gen.Store(h.gen)
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
	hs := p.hints[i/chunkSize]
	hs.block[i%chunkSize/blockSize].reset()
	hs.all.reset()
}

// anyAwake reports whether one of n entries from position i on (round) could be picked
// at now without a budget; it reads no hint.
func (p *Pool) anyAwake(i, n int, now int64) bool {
	for j := range min(n, p.n) {
		if p.at((i+j)%p.n).wake(Budget{}, now) <= now {
			return true
		}
	}
	return false
}

// resetHints drops every resting hint of the pool.
func (h *poolHolder) resetHints() {
	p := h.p.Load()
	for _, hs := range p.hints {
		for i := range hs.block {
			hs.block[i].reset()
		}
		hs.all.reset()
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
