package proxy

import "gpt-load/projections"

// Pick runs the proxy's key selection for one attempt on g at now (Unix ns), as a request
// does with the time it read at its start (benchmarks).
func Pick(h *Handler, g *projections.GroupView, now int64) (projections.PoolKey, bool) {
	p := request{h: h, serving: g, now: now}
	return p.pick(false)
}

// Exclude keeps key k out of this node's rotation until until (Unix ns), as a failure that
// blames the key does (benchmarks).
func Exclude(_ *Handler, k projections.PoolKey, until int64) { k.Hold(until) }
