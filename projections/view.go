package projections

import (
	"time"

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
	named           *namedKeys
}

// namedKeys indexes the named proxy keys by the SHA-256 of their secret. It is rebuilt only
// when they change; the keys are never modified in place (the state replaces a changed one).
type namedKeys struct {
	ver    uint64
	byHash map[domain.KeyHash]*domain.ProxyKey
	list   []*domain.ProxyKey // by id
}

// NamedKey finds the named proxy key whose secret has the SHA-256 digest d.
func (v *View) NamedKey(d *domain.KeyHash) (*domain.ProxyKey, bool) {
	k, ok := v.named.byHash[*d]
	return k, ok
}

// NamedKeysVersion is the log position of the last change to the named proxy keys.
func (v *View) NamedKeysVersion() uint64 { return v.named.ver }

// NamedKeys lists the named proxy keys by id; the slice is shared and must not be changed.
func (v *View) NamedKeys() []*domain.ProxyKey { return v.named.list }

// GroupView is a group with what the proxy derives from it, computed once per change.
type GroupView struct {
	*domain.Group
	Effective     domain.Settings     // group config over system settings
	FailoverCodes domain.StatusCodes  // parsed Effective.FailoverStatusCodes
	ProxyKeys     map[string]struct{} // the group's own proxy keys
	Budget        Budget              // Effective.UpstreamKeyRPM and UpstreamKeyTPM
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

// Pick selects the next usable key of the group by round robin, within the group's
// per-key budget.
func (g *GroupView) Pick(now int64) (PoolKey, bool) { return g.pool.pickWithin(g.Budget, now) }

// BudgetSpent tells, after a pick found no key, whether the group's per-key budget is the
// reason (keys in rotation and not resting would serve without it), and when the next
// minute opens new budgets. It probes at most a block of keys from the round robin's
// position, so a pool where most keys rest for other reasons may answer false.
func (g *GroupView) BudgetSpent(now int64) (bool, time.Time) {
	if !g.Budget.on() || !g.pool.p.Load().anyAwake(int(g.pool.rr.Load()), blockSize, now) {
		return false, time.Time{}
	}
	return true, time.Unix(0, (now/minuteNS+1)*minuteNS)
}

// PickID returns the group's key id when it is usable at now (in rotation, not resting,
// within its budget), counted like Pick.
func (g *GroupView) PickID(id uint64, now int64) (PoolKey, bool) {
	return g.pool.pickID(id, g.Budget, now)
}

func buildView(s *domain.State, prev *View) *View {
	v := &View{
		Seq:             s.Seq,
		Settings:        s.Settings,
		byID:            make(map[uint64]*GroupView, s.NumGroups()),
		byName:          make(map[string]*GroupView, s.NumGroups()),
		GlobalProxyKeys: keySet(s.Settings.ProxyKeys),
	}
	if prev != nil && prev.named.ver == s.ProxyKeysVersion() {
		v.named = prev.named
	} else {
		v.named = buildNamedKeys(s)
	}
	for _, g := range s.Groups() {
		eff := s.Effective(g)
		codes, err := domain.ParseStatusCodes(eff.FailoverStatusCodes)
		if err != nil {
			// Validated before it entered the log; a failure here is a bug. Keep the
			// system setting rather than retry nothing.
			codes, _ = domain.ParseStatusCodes(domain.DefaultFailoverStatusCodes)
		}
		gv := &GroupView{Group: g, Effective: eff, FailoverCodes: codes, ProxyKeys: keySet(g.ProxyKeys),
			Budget: Budget{Requests: uint32(max(eff.UpstreamKeyRPM, 0)), Tokens: uint32(max(eff.UpstreamKeyTPM, 0))}}
		if prev != nil {
			if old, ok := prev.byID[g.ID]; ok {
				gv.pool = old.pool
				if old.Budget != gv.Budget {
					// Resting hints written under the old budget may rest too long now.
					gv.pool.resetHints()
				}
			}
		}
		if gv.pool == nil {
			gv.pool = newPoolHolder(s.Keys(g.ID))
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

func buildNamedKeys(s *domain.State) *namedKeys {
	list := s.ProxyKeys()
	n := &namedKeys{ver: s.ProxyKeysVersion(), byHash: make(map[domain.KeyHash]*domain.ProxyKey, len(list)), list: list}
	for _, k := range list {
		n.byHash[k.Hash] = k
	}
	return n
}
