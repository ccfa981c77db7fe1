// Package limits enforces the limits of named proxy keys: requests and tokens per minute
// (token buckets whose share of the limit is rebalanced across the nodes every second from
// the demand each node reports over NATS) and token quotas per UTC day and month (counters
// in a JetStream key-value bucket, to which each node adds what it counted once a second).
// The check on the hot path takes no lock and allocates nothing.
package limits

import (
	"math"
	"sync/atomic"
)

// window is the period of a per-minute limit, in nanoseconds.
const window = int64(60e9)

// bucket is a token bucket kept as a generic cell rate algorithm: one atomic "theoretical
// arrival time" (tat, Unix ns). The bucket holds (window - (tat - now)) / per units, at most
// a minute's worth of its rate; spending n units moves tat n*per later. A bucket with
// rate r per minute therefore admits a burst of r and then r per minute, evenly.
type bucket struct {
	tat atomic.Int64
	per atomic.Uint64 // float64 bits: nanoseconds per unit at this node's share; 0: no limit
}

// perUnit is the spacing of units for a limit per minute at a share of it.
func perUnit(limit int64, share float64) float64 {
	if limit <= 0 {
		return 0
	}
	if share <= 0 {
		return math.Inf(1)
	}
	return float64(window) / (float64(limit) * share)
}

// setRate changes the rate, keeping the units the bucket holds (capped by the new size).
func (b *bucket) setRate(per float64, now int64) {
	old := math.Float64frombits(b.per.Load())
	if old == per {
		return
	}
	b.per.Store(math.Float64bits(per))
	if old == 0 || per == 0 || math.IsInf(old, 1) || math.IsInf(per, 1) {
		return
	}
	for {
		tat := b.tat.Load()
		level := float64(window-max(tat-now, 0)) / old // units held; negative: in debt
		next := now + window - int64(level*per)
		if next < now {
			next = now
		}
		if b.tat.CompareAndSwap(tat, next) {
			return
		}
	}
}

// wait is how long until the bucket holds a unit again (0: it does now).
func (b *bucket) wait(now int64) int64 {
	per := math.Float64frombits(b.per.Load())
	if per == 0 {
		return 0
	}
	if math.IsInf(per, 1) {
		return window
	}
	if d := max(b.tat.Load(), now) + int64(per) - now - window; d > 0 {
		return d
	}
	return 0
}

// take admits one unit while the bucket holds any, and answers 0; else how long to wait.
func (b *bucket) take(now int64) int64 {
	per := math.Float64frombits(b.per.Load())
	if per == 0 {
		return 0
	}
	if math.IsInf(per, 1) {
		return window
	}
	for {
		tat := b.tat.Load()
		next := max(tat, now) + int64(per)
		if d := next - now - window; d > 0 {
			return d
		}
		if b.tat.CompareAndSwap(tat, next) {
			return 0
		}
	}
}

// spend takes n units after the fact; the bucket may go into debt.
func (b *bucket) spend(n int64, now int64) {
	per := math.Float64frombits(b.per.Load())
	if per == 0 || n <= 0 || math.IsInf(per, 1) {
		return
	}
	cost := int64(min(float64(n)*per, math.MaxInt64/4))
	for {
		tat := b.tat.Load()
		if b.tat.CompareAndSwap(tat, max(tat, now)+cost) {
			return
		}
	}
}
