package domain

import "sort"

// AggregateKind names a unit of optimistic concurrency: a command decided on the state of
// an aggregate is appended only if no other event of that aggregate came in between.
type AggregateKind uint8

const (
	AggSettings  AggregateKind = iota + 1 // the system settings
	AggGroups                             // the configuration of all groups (names are unique across them)
	AggKeys                               // the keys of one group (admin changes)
	AggHealth                             // health facts of one group's keys: never guarded
	AggProxyKeys                          // the named proxy keys (names are unique across them)
)

// Aggregate is the aggregate an event belongs to.
type Aggregate struct {
	Kind    AggregateKind
	GroupID uint64 // for AggKeys and AggHealth
}

// AggregateOf tells which aggregate a fact belongs to.
func AggregateOf(f Fact) Aggregate {
	switch f := f.(type) {
	case SettingsChanged:
		return Aggregate{Kind: AggSettings}
	case GroupCreated, GroupUpdated, GroupDeleted, GroupsReordered, SubGroupsChanged, GroupImported:
		return Aggregate{Kind: AggGroups}
	case GroupValidated:
		// A system job's record that needs no guard: putting it under the groups guard
		// would make every validation round collide with admin edits.
		return Aggregate{Kind: AggHealth, GroupID: f.GroupID}
	case KeysAdded:
		return Aggregate{Kind: AggKeys, GroupID: f.GroupID}
	case KeysImported:
		return Aggregate{Kind: AggKeys, GroupID: f.GroupID}
	case KeysRemoved:
		return Aggregate{Kind: AggKeys, GroupID: f.GroupID}
	case KeysCleared:
		return Aggregate{Kind: AggKeys, GroupID: f.GroupID}
	case KeysRestored:
		return Aggregate{Kind: AggKeys, GroupID: f.GroupID}
	case KeyNoteChanged:
		return Aggregate{Kind: AggKeys, GroupID: f.GroupID}
	case KeysDisabled:
		return Aggregate{Kind: AggKeys, GroupID: f.GroupID}
	case KeysEnabled:
		return Aggregate{Kind: AggKeys, GroupID: f.GroupID}
	case KeyFailed:
		return Aggregate{Kind: AggHealth, GroupID: f.GroupID}
	case KeySucceeded:
		return Aggregate{Kind: AggHealth, GroupID: f.GroupID}
	case KeyValidated:
		return Aggregate{Kind: AggHealth, GroupID: f.GroupID}
	case ProxyKeyCreated, ProxyKeyUpdated, ProxyKeyRotated, ProxyKeyDeleted:
		return Aggregate{Kind: AggProxyKeys}
	case KeysExported:
		// A record, not a decision: unguarded like the health facts, so an export never
		// collides with admin changes to the group's keys.
		return Aggregate{Kind: AggHealth, GroupID: f.GroupID}
	}
	panic("domain: fact without aggregate")
}

// idRange remembers which group got a run of key ids, so a key can be found by id alone.
type idRange struct {
	First   uint64
	N       uint32
	GroupID uint64
}

// State is the fold of the whole log: settings, groups and keys. It is deterministic: the
// same facts in the same order give the same state on every node. It is not safe for
// concurrent use; the projection guards it.
type State struct {
	Seq            uint64 // the last applied event
	Settings       Settings
	SettingsSeeded bool // a settings event is in the log

	groups      map[uint64]*Group
	names       map[string]uint64
	keys        map[uint64]*KeySet
	ranges      []idRange
	nextGroupID uint64
	nextKeyID   uint64

	proxyKeys      map[uint64]*ProxyKey
	nextProxyKeyID uint64

	settingsVer  uint64
	proxyKeysVer uint64
	groupsVer    uint64
	keysVer      map[uint64]uint64
}

// NewState is the state of an empty log with the given settings in force (the defaults,
// seeded from the environment).
func NewState(settings Settings) *State {
	return &State{
		Settings:    settings,
		groups:      map[uint64]*Group{},
		names:       map[string]uint64{},
		keys:        map[uint64]*KeySet{},
		nextGroupID: 1,
		nextKeyID:   1,
		keysVer:     map[uint64]uint64{},

		proxyKeys:      map[uint64]*ProxyKey{},
		nextProxyKeyID: 1,
	}
}

// Version is the sequence of the last event of the aggregate, 0 when it has none.
func (s *State) Version(a Aggregate) uint64 {
	switch a.Kind {
	case AggSettings:
		return s.settingsVer
	case AggGroups:
		return s.groupsVer
	case AggKeys:
		return s.keysVer[a.GroupID]
	case AggProxyKeys:
		return s.proxyKeysVer
	}
	return 0
}

// Group returns the group with id.
func (s *State) Group(id uint64) (*Group, bool) {
	g, ok := s.groups[id]
	return g, ok
}

// GroupByName returns the group called name.
func (s *State) GroupByName(name string) (*Group, bool) {
	id, ok := s.names[name]
	if !ok {
		return nil, false
	}
	return s.groups[id], true
}

// Groups lists every group in display order: sort ascending, then id descending.
func (s *State) Groups() []*Group {
	out := make([]*Group, 0, len(s.groups))
	for _, g := range s.groups {
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Sort != out[j].Sort {
			return out[i].Sort < out[j].Sort
		}
		return out[i].ID > out[j].ID
	})
	return out
}

// NumGroups is the number of groups.
func (s *State) NumGroups() int { return len(s.groups) }

// Keys returns the key set of a group (nil when the group has none).
func (s *State) Keys(groupID uint64) *KeySet { return s.keys[groupID] }

// Key finds a key by id alone.
func (s *State) Key(id uint64) (*Key, bool) {
	i := sort.Search(len(s.ranges), func(i int) bool { return s.ranges[i].First > id }) - 1
	if i < 0 || id >= s.ranges[i].First+uint64(s.ranges[i].N) {
		return nil, false
	}
	ks := s.keys[s.ranges[i].GroupID]
	if ks == nil {
		return nil, false
	}
	return ks.ByID(id)
}

// Effective is the configuration in force for a group: its overrides over the system
// settings.
func (s *State) Effective(g *Group) Settings { return s.Settings.Effective(g.Config) }

// Changes tells a projection what an applied event touched.
type Changes struct {
	Settings bool   // system settings (and so every group's effective config)
	Groups   bool   // group configuration
	Keys     uint64 // the group whose keys changed, 0 for none
	// ProxyKeys tells that the named proxy keys changed.
	ProxyKeys bool
	// AddedFrom and AddedTo are the key ids a KeysAdded handed out, [from, to); the keys
	// of the group with ids in that range are the new ones.
	AddedFrom, AddedTo uint64
}

// Apply folds one event into the state. Facts in the log are never rejected: a fact about
// something that is gone by now (a failure of a deleted key) changes nothing.
func (s *State) Apply(f Fact, m Meta) Changes {
	s.Seq = m.Seq
	switch a := AggregateOf(f); a.Kind {
	case AggSettings:
		s.settingsVer = m.Seq
	case AggGroups:
		s.groupsVer = m.Seq
	case AggKeys:
		s.keysVer[a.GroupID] = m.Seq
	case AggProxyKeys:
		s.proxyKeysVer = m.Seq
	}
	at := m.Time.UnixNano()
	var ch Changes
	switch f := f.(type) {
	case ProxyKeyCreated, ProxyKeyUpdated, ProxyKeyRotated, ProxyKeyDeleted:
		ch.ProxyKeys = s.applyProxyKey(f, m)
	case SettingsChanged:
		s.Settings = f.Settings
		s.SettingsSeeded = true
		ch.Settings = true
	case GroupCreated:
		g := f.Group
		g.CreatedAt, g.UpdatedAt = m.Time, m.Time
		s.putGroup(&g)
		if g.ID >= s.nextGroupID {
			s.nextGroupID = g.ID + 1
		}
		ch.Groups = true
	case GroupUpdated:
		old, ok := s.groups[f.Group.ID]
		if ok {
			g := f.Group
			g.CreatedAt, g.UpdatedAt = old.CreatedAt, m.Time
			g.LastValidatedAt = old.LastValidatedAt
			g.SubGroups = old.SubGroups
			delete(s.names, old.Name)
			s.putGroup(&g)
			ch.Groups = true
		}
	case GroupDeleted:
		if _, ok := s.groups[f.GroupID]; ok {
			s.dropGroup(f.GroupID)
			ch.Groups, ch.Keys = true, f.GroupID
		}
	case GroupImported:
		ch = s.applyGroupImported(f, m)
	case KeysImported:
		ch = s.applyKeysImported(f, at)
	case GroupsReordered:
		for _, it := range f.Items {
			if g, ok := s.groups[it.GroupID]; ok && g.Sort != it.Sort {
				c := g.clone()
				c.Sort, c.UpdatedAt = it.Sort, m.Time
				s.groups[it.GroupID] = c
			}
		}
		ch.Groups = true
	case SubGroupsChanged:
		if g, ok := s.groups[f.GroupID]; ok {
			c := g.clone()
			c.SubGroups = append([]SubGroup(nil), f.SubGroups...)
			c.UpdatedAt = m.Time
			s.groups[f.GroupID] = c
			ch.Groups = true
		}
	case GroupValidated:
		if g, ok := s.groups[f.GroupID]; ok {
			c := g.clone()
			c.LastValidatedAt = m.Time
			s.groups[f.GroupID] = c
			ch.Groups = true
		}
	case KeysAdded:
		first := s.nextKeyID
		s.nextKeyID += uint64(len(f.Keys))
		ks := s.keys[f.GroupID]
		if _, ok := s.groups[f.GroupID]; !ok || len(f.Keys) == 0 {
			break
		}
		s.ranges = append(s.ranges, idRange{First: first, N: uint32(len(f.Keys)), GroupID: f.GroupID})
		for i, nk := range f.Keys {
			if ks.pos(nk.Hash) >= 0 {
				continue
			}
			ks.add(Key{ID: first + uint64(i), GroupID: f.GroupID, Value: nk.Value, Hash: nk.Hash,
				Status: KeyActive, CreatedAt: at, UpdatedAt: at})
		}
		ch.Keys, ch.AddedFrom, ch.AddedTo = f.GroupID, first, s.nextKeyID
	case KeysRemoved:
		if ks := s.keys[f.GroupID]; ks != nil {
			for _, id := range f.KeyIDs {
				if i := ks.posByID(id); i >= 0 {
					ks.remove(i)
				}
			}
			ks.compact()
			ch.Keys = f.GroupID
		}
	case KeysCleared:
		if ks := s.keys[f.GroupID]; ks != nil {
			for i := range ks.keys {
				if f.Scope == ScopeAll || ks.keys[i].Status == KeyInvalid {
					ks.remove(i)
				}
			}
			ks.compact()
			ch.Keys = f.GroupID
		}
	case KeysRestored:
		if ks := s.keys[f.GroupID]; ks != nil {
			restore := func(k *Key) {
				if k.Status == KeyInvalid {
					ks.setStatus(k, KeyActive)
					k.FailureCount, k.CooldownUntil, k.LastError, k.UpdatedAt = 0, 0, "", at
				}
			}
			if f.AllInvalid {
				ks.Each(func(k *Key) bool { restore(k); return true })
			}
			for _, id := range f.KeyIDs {
				if k, ok := ks.ByID(id); ok {
					restore(k)
				}
			}
			ch.Keys = f.GroupID
		}
	case KeyNoteChanged:
		if k, ok := s.groupKey(f.GroupID, f.KeyID); ok {
			k.Notes, k.UpdatedAt = f.Notes, at
			ch.Keys = f.GroupID
		}
	case KeysDisabled:
		if s.setDisabled(f.GroupID, f.KeyIDs, true, at) {
			ch.Keys = f.GroupID
		}
	case KeysEnabled:
		if s.setDisabled(f.GroupID, f.KeyIDs, false, at) {
			ch.Keys = f.GroupID
		}
	case KeyFailed:
		if k, ok := s.groupKey(f.GroupID, f.KeyID); ok {
			switch f.Kind {
			case FailureAuth:
				s.countFailure(f.GroupID, k, f.Message, at)
			case FailureRateLimit:
				if until := f.RetryUntil.UnixNano(); until > k.CooldownUntil {
					k.CooldownUntil = until
				}
				k.LastError, k.UpdatedAt = f.Message, at
			}
			ch.Keys = f.GroupID
		}
	case KeySucceeded:
		if k, ok := s.groupKey(f.GroupID, f.KeyID); ok {
			k.FailureCount, k.CooldownUntil, k.UpdatedAt = 0, 0, at
			ch.Keys = f.GroupID
		}
	case KeyValidated:
		if k, ok := s.groupKey(f.GroupID, f.KeyID); ok {
			if f.Valid {
				s.keys[f.GroupID].setStatus(k, KeyActive)
				k.FailureCount, k.CooldownUntil, k.LastError, k.UpdatedAt = 0, 0, "", at
			} else {
				s.countFailure(f.GroupID, k, f.Message, at)
			}
			ch.Keys = f.GroupID
		}
	}
	return ch
}

func (s *State) putGroup(g *Group) {
	s.groups[g.ID] = g
	s.names[g.Name] = g.ID
	if s.keys[g.ID] == nil {
		s.keys[g.ID] = newKeySet(0)
	}
}

func (s *State) setDisabled(groupID uint64, ids []uint64, disabled bool, at int64) bool {
	ks := s.keys[groupID]
	if ks == nil {
		return false
	}
	for _, id := range ids {
		if k, ok := ks.ByID(id); ok && k.Disabled != disabled {
			k.Disabled, k.UpdatedAt = disabled, at
		}
	}
	return true
}

func (s *State) groupKey(groupID, keyID uint64) (*Key, bool) {
	ks := s.keys[groupID]
	if ks == nil {
		return nil, false
	}
	return ks.ByID(keyID)
}

// countFailure adds one consecutive failure and blacklists the key when it reaches the
// threshold in force for its group at this point of the log (0: never).
func (s *State) countFailure(groupID uint64, k *Key, msg string, at int64) {
	k.FailureCount++
	k.LastError, k.UpdatedAt = msg, at
	g, ok := s.groups[groupID]
	if !ok || k.Status != KeyActive {
		return
	}
	if th := s.Effective(g).BlacklistThreshold; th > 0 && int(k.FailureCount) >= th {
		s.keys[groupID].setStatus(k, KeyInvalid)
	}
}

func subGroupIndex(subs []SubGroup, id uint64) int {
	for i, sg := range subs {
		if sg.GroupID == id {
			return i
		}
	}
	return -1
}
