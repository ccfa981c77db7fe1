package projections

import (
	"math"
	"sync/atomic"
)

// Budget is what one key may be sent per minute of the clock on this node, from a group's
// upstream_key_rpm and upstream_key_tpm: Requests counts requests as keys are picked,
// Tokens the tokens the upstream reported (PoolKey.Spend). Zero is no limit. A key whose
// budget is spent rests until the next minute, so the pool spreads a burst over its keys
// before the provider answers 429.
type Budget struct {
	Requests, Tokens uint32
}

func (b Budget) on() bool { return b.Requests|b.Tokens != 0 }

// minuteNS is the length of a budget window.
const minuteNS = int64(60e9)

func minuteOf(now int64) uint32 { return uint32(now / minuteNS) }

// wake is when e's budget lets it be picked again: 0 when it may be now, else the start
// of the next minute.
func (b Budget) wake(e *entry, now int64) int64 {
	m := minuteOf(now)
	if (b.Requests != 0 && e.reqs.in(m) >= b.Requests) || (b.Tokens != 0 && e.toks.in(m) >= b.Tokens) {
		return (now/minuteNS + 1) * minuteNS
	}
	return 0
}

// take counts one request against e's budget; false when the budget is spent.
func (b Budget) take(e *entry, now int64) bool {
	m := minuteOf(now)
	if b.Tokens != 0 && e.toks.in(m) >= b.Tokens {
		return false
	}
	if b.Requests == 0 {
		e.reqs.add(m, 1)
		return true
	}
	return e.reqs.addBelow(m, 1, b.Requests)
}

// meter counts within one minute of the clock: the minute in the high 32 bits, the count
// in the low 32 (saturating), so a new minute starts from zero in the same atomic swap
// that counts into it.
type meter struct{ v atomic.Uint64 }

// in is the count of minute m.
func (c *meter) in(m uint32) uint32 {
	v := c.v.Load()
	if uint32(v>>32) != m {
		return 0
	}
	return uint32(v)
}

// add counts n into minute m.
func (c *meter) add(m uint32, n uint64) { c.addBelow(m, n, math.MaxUint32) }

// addBelow counts n into minute m if the count is below limit; false when it is not.
func (c *meter) addBelow(m uint32, n uint64, limit uint32) bool {
	for {
		v := c.v.Load()
		cur := uint64(0)
		if w := uint32(v >> 32); w == m {
			cur = uint64(uint32(v))
		} else if w > m && w-m < 1<<31 {
			return true // a later minute is counting already: this count is history
		}
		if cur >= uint64(limit) {
			return false
		}
		next := min(cur+n, math.MaxUint32)
		if c.v.CompareAndSwap(v, uint64(m)<<32|next) {
			return true
		}
	}
}

// Spend counts tokens the upstream reported for a request made with the key at now
// against the key's budget for that minute.
func (k PoolKey) Spend(tokens int64, now int64) {
	if k.h == nil || tokens <= 0 {
		return
	}
	p := k.h.p.Load()
	if i := p.index(k.ID); i >= 0 {
		p.at(i).toks.add(minuteOf(now), uint64(min(tokens, math.MaxUint32)))
	}
}
