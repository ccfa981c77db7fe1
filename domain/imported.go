package domain

import (
	"math"
	"slices"
	"time"
)

// Importing from another store (gpt-load 1.x). Ids are born in the log (DESIGN.md), and
// an import brings ids that were born elsewhere: users' scripts, bookmarks and notes name
// them. The import facts carry those ids, and the fold keeps handing out fresh ids above
// every id it has seen, so nothing born here later collides with an imported one.

// GroupImported brings a group whole: its id, every field, its aggregate members (by our
// ids) and its timestamps. It replaces the group here with the same id (dropping its keys,
// which the import brings next) and a group of the same name under another id (dropped
// with its keys and links).
type GroupImported struct {
	Group  Group  `json:"group"`
	Source string `json:"source,omitempty"` // where it came from, e.g. "gpt-load 1.x"
}

// ImportedKey is one key brought with its history.
type ImportedKey struct {
	// ID is the id the key had; 0, or an id a live key here holds when the fact is
	// applied, gives it a fresh id from the log's counter.
	ID           uint64  `json:"id"`
	Value        string  `json:"value"` // encrypted on the wire when encryption is on
	Hash         KeyHash `json:"hash"`
	Status       string  `json:"status"` // "active" or "invalid"
	Notes        string  `json:"notes,omitempty"`
	FailureCount uint32  `json:"failure_count,omitempty"`
	// Times are Unix nanoseconds, as Key keeps them (0: the event's time): a number reads
	// and writes several times faster than a formatted time, and an import of a million
	// keys carries two million of them.
	CreatedAt int64 `json:"created_at,omitempty"`
	UpdatedAt int64 `json:"updated_at,omitempty"`
}

// KeysImported adds keys to a standard group with their ids, statuses, notes, failure
// counts and timestamps. A key whose hash the group already holds is skipped, as with
// KeysAdded.
type KeysImported struct {
	GroupID uint64        `json:"group_id"`
	Keys    []ImportedKey `json:"keys"`
	Source  string        `json:"source,omitempty"`
}

func (GroupImported) fact() {}
func (KeysImported) fact()  {}

// ImportedGroupOutcome says what an import did with one group.
type ImportedGroupOutcome string

const (
	ImportCreated  ImportedGroupOutcome = "created"  // new here
	ImportExists   ImportedGroupOutcome = "exists"   // a group of that name is here: left alone
	ImportReplaced ImportedGroupOutcome = "replaced" // a group of that name was here: replaced (overwrite)
)

// GroupImport is what an import knows of a group beyond its fields: the id it had, its
// members (by our ids) and its timestamps.
type GroupImport struct {
	ID              uint64
	SubGroups       []SubGroup
	CreatedAt       time.Time
	UpdatedAt       time.Time
	LastValidatedAt time.Time
}

// ImportedGroupReport tells what DecideImportGroup decided.
type ImportedGroupReport struct {
	Name       string               `json:"name"`
	SourceID   uint64               `json:"source_id"`
	ID         uint64               `json:"id"` // the id here
	Outcome    ImportedGroupOutcome `json:"outcome"`
	Renumbered bool                 `json:"renumbered,omitempty"` // its id was taken here by another group
}

// DecideImportGroup validates an imported group like a new one (API.md 2.7) and decides its
// id: the one it had, unless another group here holds it. A group whose name is taken here
// is left alone (a nil fact, outcome ImportExists) unless overwrite is set.
func DecideImportGroup(s *State, in GroupInput, imp GroupImport, overwrite bool) (*GroupImported, ImportedGroupReport, error) {
	g, err := validateNewGroup(in)
	rep := ImportedGroupReport{Name: g.Name, SourceID: imp.ID}
	if err != nil {
		return nil, rep, err
	}
	if id, taken := s.names[g.Name]; taken {
		rep.ID = id
		if !overwrite {
			rep.Outcome = ImportExists
			return nil, rep, nil
		}
		rep.Outcome = ImportReplaced
	} else {
		rep.Outcome = ImportCreated
	}
	id := imp.ID
	if other, taken := s.groups[id]; id == 0 || (taken && other.Name != g.Name) {
		id = s.nextGroupID
		rep.Renumbered = imp.ID != 0
	}
	rep.ID = id
	if len(imp.SubGroups) > 0 {
		if g.Type != GroupAggregate {
			return nil, rep, Errorf(EINVALID, "group %q is not an aggregate and cannot have sub-groups", g.Name)
		}
		for _, sg := range imp.SubGroups {
			m, ok := s.groups[sg.GroupID]
			if !ok || m.Type != GroupStandard || m.ID == id {
				return nil, rep, Errorf(EINVALID, "sub-group %d of %q is not a standard group here", sg.GroupID, g.Name)
			}
			if sg.Weight < 0 {
				return nil, rep, Errorf(EINVALID, "sub-group %d of %q has a negative weight", sg.GroupID, g.Name)
			}
		}
	}
	g.ID = id
	g.SubGroups = slices.Clone(imp.SubGroups)
	g.CreatedAt, g.UpdatedAt, g.LastValidatedAt = imp.CreatedAt.UTC(), imp.UpdatedAt.UTC(), imp.LastValidatedAt.UTC()
	return &GroupImported{Group: g, Source: ImportSource}, rep, nil
}

// ImportSource names where imported facts come from.
const ImportSource = "gpt-load 1.x"

// ImportedKeysReport counts what DecideImportKeys decided.
type ImportedKeysReport struct {
	Imported   int `json:"imported"`
	Active     int `json:"active"`     // of the imported
	Invalid    int `json:"invalid"`    // of the imported
	Existing   int `json:"existing"`   // the group holds the key already (or the batch had it twice)
	Renumbered int `json:"renumbered"` // the id was taken here: the key gets a fresh one
}

// DecideImportKeys keeps the keys new to the group and to the batch, in input order, and
// clears the ids a live key here holds (or an earlier key of the batch), so that they get
// fresh ones. The caller bounds the batch (MaxKeysPerEvent and the log's message size).
func DecideImportKeys(s *State, groupID uint64, keys []ImportedKey) (*KeysImported, ImportedKeysReport, error) {
	var rep ImportedKeysReport
	_, ks, err := s.standardGroup(groupID)
	if err != nil {
		return nil, rep, err
	}
	out := &KeysImported{GroupID: groupID, Keys: make([]ImportedKey, 0, len(keys)), Source: ImportSource}
	seen := make(map[KeyHash]struct{}, len(keys))
	ids := make(map[uint64]struct{}, len(keys))
	for _, k := range keys {
		if k.Value == "" {
			return nil, rep, Errorf(EINVALID, "key %d has no value", k.ID)
		}
		if k.Status != "active" && k.Status != "invalid" {
			return nil, rep, Errorf(EINVALID, "key %d has status %q; want active or invalid", k.ID, k.Status)
		}
		if _, dup := seen[k.Hash]; dup || ks.pos(k.Hash) >= 0 {
			rep.Existing++
			continue
		}
		seen[k.Hash] = struct{}{}
		if k.ID != 0 {
			_, dup := ids[k.ID]
			if _, held := s.Key(k.ID); held || dup {
				k.ID = 0
				rep.Renumbered++
			} else {
				ids[k.ID] = struct{}{}
			}
		}
		out.Keys = append(out.Keys, k)
		if k.Status == "active" {
			rep.Active++
		} else {
			rep.Invalid++
		}
	}
	rep.Imported = len(out.Keys)
	return out, rep, nil
}

// applyGroupImported folds a GroupImported.
func (s *State) applyGroupImported(f GroupImported, m Meta) Changes {
	g := f.Group
	if id, ok := s.names[g.Name]; ok && id != g.ID {
		s.dropGroup(id)
	}
	if old, ok := s.groups[g.ID]; ok {
		// Replaced whole: its keys go (the import brings them next); aggregates that
		// hold it keep it.
		delete(s.names, old.Name)
		s.keys[g.ID] = newKeySet(0)
	}
	if g.CreatedAt.IsZero() {
		g.CreatedAt = m.Time
	}
	if g.UpdatedAt.IsZero() {
		g.UpdatedAt = m.Time
	}
	s.putGroup(&g)
	if g.ID >= s.nextGroupID {
		s.nextGroupID = g.ID + 1
	}
	return Changes{Groups: true, Keys: g.ID}
}

// applyKeysImported folds a KeysImported: keys keep their ids unless a live key holds
// one (or the fact names it twice), and the counter moves above every id kept.
func (s *State) applyKeysImported(f KeysImported, at int64) Changes {
	ks := s.keys[f.GroupID]
	if _, ok := s.groups[f.GroupID]; !ok || ks == nil || len(f.Keys) == 0 {
		return Changes{}
	}
	// First the ids the keys keep, then fresh ones above them all: a fresh id never
	// meets a kept one of the same fact. ids[i] is 0 for a key that gets a fresh id, and
	// skipID for one the group holds already (or the fact holds twice).
	const skipID = ^uint64(0)
	ids := make([]uint64, len(f.Keys))
	seen := make(map[KeyHash]struct{}, len(f.Keys))
	var kept map[uint64]struct{} // only for a fact that names an id twice
	var last uint64
	for i, k := range f.Keys {
		if _, dup := seen[k.Hash]; dup || ks.pos(k.Hash) >= 0 {
			ids[i] = skipID
			continue
		}
		seen[k.Hash] = struct{}{}
		if k.ID == 0 {
			continue
		}
		if k.ID <= last { // out of order: ids may repeat
			if kept == nil {
				kept = make(map[uint64]struct{}, len(f.Keys))
				for _, id := range ids[:i] {
					if id != 0 && id != skipID {
						kept[id] = struct{}{}
					}
				}
			}
		}
		if kept != nil {
			if _, dup := kept[k.ID]; dup {
				continue
			}
		}
		if _, held := s.Key(k.ID); held {
			continue
		}
		if kept != nil {
			kept[k.ID] = struct{}{}
		}
		ids[i], last = k.ID, max(last, k.ID)
		if k.ID >= s.nextKeyID {
			s.nextKeyID = k.ID + 1
		}
	}
	var top uint64
	if n := len(ks.keys); n > 0 {
		top = ks.keys[n-1].ID
	}
	sorted := true
	added := make([]uint64, 0, len(f.Keys))
	for i, k := range f.Keys {
		id := ids[i]
		if id == skipID {
			continue
		}
		if id == 0 {
			id = s.nextKeyID
			s.nextKeyID++
		}
		st := KeyActive
		if k.Status == "invalid" {
			st = KeyInvalid
		}
		created, updated := at, at
		if k.CreatedAt != 0 {
			created = k.CreatedAt
		}
		if k.UpdatedAt != 0 {
			updated = k.UpdatedAt
		}
		if id <= top {
			sorted = false
		}
		top = max(top, id)
		ks.add(Key{ID: id, GroupID: f.GroupID, Value: k.Value, Hash: k.Hash, Status: st,
			FailureCount: k.FailureCount, Notes: k.Notes, CreatedAt: created, UpdatedAt: updated})
		added = append(added, id)
	}
	if !sorted {
		ks.sortByID()
	}
	s.claimIDs(f.GroupID, added)
	return Changes{Keys: f.GroupID}
}

// claimIDs records that the listed ids now belong to group: they are cut out of the runs
// of other groups (whose keys with those ids are gone, or the ids were never handed out)
// and the ranges stay sorted and disjoint, so Key finds every key by id.
func (s *State) claimIDs(groupID uint64, ids []uint64) {
	if len(ids) == 0 {
		return
	}
	ids = slices.Clone(ids)
	slices.Sort(ids)
	var runs []idRange
	for _, id := range ids {
		if n := len(runs); n > 0 && runs[n-1].First+uint64(runs[n-1].N) == id && runs[n-1].N < math.MaxUint32 {
			runs[n-1].N++
			continue
		}
		runs = append(runs, idRange{First: id, N: 1, GroupID: groupID})
	}
	out := make([]idRange, 0, len(s.ranges)+len(runs))
	j := 0
	for _, r := range s.ranges {
		lo, hi := r.First, r.First+uint64(r.N)
		for j < len(runs) && runs[j].First+uint64(runs[j].N) <= lo {
			j++
		}
		for k := j; lo < hi; k++ {
			if k >= len(runs) || runs[k].First >= hi {
				out = append(out, idRange{First: lo, N: uint32(hi - lo), GroupID: r.GroupID})
				break
			}
			if runs[k].First > lo {
				out = append(out, idRange{First: lo, N: uint32(runs[k].First - lo), GroupID: r.GroupID})
			}
			lo = max(lo, runs[k].First+uint64(runs[k].N))
		}
	}
	out = append(out, runs...)
	slices.SortFunc(out, func(a, b idRange) int {
		switch {
		case a.First < b.First:
			return -1
		case a.First > b.First:
			return 1
		}
		return 0
	})
	merged := out[:0]
	for _, r := range out {
		if n := len(merged); n > 0 {
			p := &merged[n-1]
			if p.GroupID == r.GroupID && p.First+uint64(p.N) == r.First && uint64(p.N)+uint64(r.N) <= math.MaxUint32 {
				p.N += r.N
				continue
			}
		}
		merged = append(merged, r)
	}
	s.ranges = merged
}

// dropGroup removes a group, its keys and every aggregate link to it.
func (s *State) dropGroup(id uint64) {
	g, ok := s.groups[id]
	if !ok {
		return
	}
	delete(s.names, g.Name)
	delete(s.groups, id)
	delete(s.keys, id)
	for aid, agg := range s.groups {
		if i := subGroupIndex(agg.SubGroups, id); i >= 0 {
			c := agg.clone()
			c.SubGroups = append(c.SubGroups[:i], c.SubGroups[i+1:]...)
			s.groups[aid] = c
		}
	}
}

// sortByID puts the keys back in id order after keys came in below the top id, and
// rebuilds the hash index over the new positions.
func (s *KeySet) sortByID() {
	slices.SortFunc(s.keys, func(a, b Key) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	s.index = make(map[uint64]int32, len(s.keys))
	s.overflow = nil
	for i := range s.keys {
		if s.keys[i].Status != keyRemoved {
			s.indexAt(i)
		}
	}
}
