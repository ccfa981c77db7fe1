package projections

import (
	"sync/atomic"

	"gpt-load/domain"
)

// View is an immutable picture of settings and groups at one log position, for readers
// that must never wait for a writer (the proxy). A new View replaces the old one whenever
// settings or groups change.
type View struct {
	Seq      uint64
	Settings domain.Settings
	byID     map[uint64]*GroupView
	byName   map[string]*GroupView
	// GlobalProxyKeys is the set of the global proxy keys.
	GlobalProxyKeys map[string]struct{}
}

// GroupView is a group with what the proxy derives from it, computed once per change.
type GroupView struct {
	*domain.Group
	Effective     domain.Settings     // group config over system settings
	FailoverCodes domain.StatusCodes  // parsed Effective.FailoverStatusCodes
	ProxyKeys     map[string]struct{} // the group's own proxy keys
	pool          *poolHolder
}

// Group returns the group with id.
func (v *View) Group(id uint64) (*GroupView, bool) {
	g, ok := v.byID[id]
	return g, ok
}

// GroupByName returns the group called name.
func (v *View) GroupByName(name string) (*GroupView, bool) {
	g, ok := v.byName[name]
	return g, ok
}

// Pool returns the group's current key pool.
func (g *GroupView) Pool() *Pool { return g.pool.p.Load() }

// Pick selects the next usable key of the group by round robin.
func (g *GroupView) Pick(now int64) (PoolKey, bool) { return g.pool.pick(now) }

// PoolKey is a key as the proxy uses it.
type PoolKey struct {
	ID    uint64
	Value string
}

// Pool is the immutable list of a group's active keys. Keys resting after a rate limit
// stay in it and are skipped until their cooldown ends, so a cooldown needs no rebuild.
type Pool struct {
	ids      []uint64
	values   []string
	cooldown []int64 // Unix nanoseconds; 0 when not resting
}

// Len is the number of active keys.
func (p *Pool) Len() int { return len(p.ids) }

type poolHolder struct {
	p  atomic.Pointer[Pool]
	rr atomic.Uint64
}

func (h *poolHolder) pick(now int64) (PoolKey, bool) {
	p := h.p.Load()
	n := uint64(len(p.ids))
	if n == 0 {
		return PoolKey{}, false
	}
	start := h.rr.Add(1)
	for i := uint64(0); i < n; i++ {
		j := (start + i) % n
		if p.cooldown[j] <= now {
			return PoolKey{ID: p.ids[j], Value: p.values[j]}, true
		}
	}
	return PoolKey{}, false
}

func buildPool(ks *domain.KeySet) *Pool {
	if ks == nil {
		return &Pool{}
	}
	p := &Pool{
		ids:      make([]uint64, 0, ks.Active()),
		values:   make([]string, 0, ks.Active()),
		cooldown: make([]int64, 0, ks.Active()),
	}
	ks.Each(func(k *domain.Key) bool {
		if k.Status == domain.KeyActive {
			p.ids = append(p.ids, k.ID)
			p.values = append(p.values, k.Value)
			p.cooldown = append(p.cooldown, k.CooldownUntil)
		}
		return true
	})
	return p
}

func buildView(s *domain.State, prev *View) *View {
	v := &View{
		Seq:             s.Seq,
		Settings:        s.Settings,
		byID:            make(map[uint64]*GroupView, s.NumGroups()),
		byName:          make(map[string]*GroupView, s.NumGroups()),
		GlobalProxyKeys: keySet(s.Settings.ProxyKeys),
	}
	for _, g := range s.Groups() {
		eff := s.Effective(g)
		codes, err := domain.ParseStatusCodes(eff.FailoverStatusCodes)
		if err != nil {
			// Validated before it entered the log; a failure here is a bug. Keep the
			// system setting rather than retry nothing.
			codes, _ = domain.ParseStatusCodes(domain.DefaultFailoverStatusCodes)
		}
		gv := &GroupView{Group: g, Effective: eff, FailoverCodes: codes, ProxyKeys: keySet(g.ProxyKeys)}
		if prev != nil {
			if old, ok := prev.byID[g.ID]; ok {
				gv.pool = old.pool
			}
		}
		if gv.pool == nil {
			gv.pool = &poolHolder{}
			gv.pool.p.Store(buildPool(s.Keys(g.ID)))
		}
		v.byID[g.ID] = gv
		v.byName[g.Name] = gv
	}
	return v
}

func keySet(csv string) map[string]struct{} {
	out := map[string]struct{}{}
	for _, k := range domain.SplitProxyKeys(csv) {
		out[k] = struct{}{}
	}
	return out
}
