package proxy

import (
	"time"

	"gpt-load/projections"
)

// Pick runs the proxy's key selection for one attempt on g at now (Unix ns), as a request
// does with the time it read at its start (benchmarks).
func Pick(h *Handler, g *projections.GroupView, now int64) (projections.PoolKey, bool) {
	p := request{h: h, serving: g, now: now}
	return p.pick(false)
}

// Exclude keeps key k out of this node's rotation until until (Unix ns), as a failure that
// blames the key does (benchmarks).
func Exclude(_ *Handler, k projections.PoolKey, until int64) { k.Hold(until) }

// CheckKey runs the proxy-key check of a request for group name at now, limits included,
// and answers whether the key was admitted (benchmarks).
func CheckKey(h *Handler, v *projections.View, name, key string, now time.Time) bool {
	gv, found := v.GroupByName(name)
	return h.checkKey(v, gv, found, key, now).deny == allow
}
