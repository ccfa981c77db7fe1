package domain

import "encoding/json"

// MaxKeysPerEvent and MaxKeyBytesPerEvent bound one KeysAdded fact, so that an event stays
// well under the message size limit of the log (1 MiB) even with encrypted values: a
// sealed value is hex of nonce, value and tag, 2*(n+28) bytes, beside a 64-digit hash.
const (
	MaxKeysPerEvent     = 1000
	MaxKeyBytesPerEvent = 192 << 10
)

// NextKeyChunk is the length of the first chunk of values that fits one KeysAdded fact:
// at most MaxKeysPerEvent values of at most MaxKeyBytesPerEvent bytes together, and at
// least one value.
func NextKeyChunk(values []string) int {
	size := 0
	for i, v := range values {
		if i == MaxKeysPerEvent || (i > 0 && size+len(v) > MaxKeyBytesPerEvent) {
			return i
		}
		size += len(v)
	}
	return len(values)
}

// AddReport counts the outcome of adding keys.
type AddReport struct {
	Added   int `json:"added_count"`
	Ignored int `json:"ignored_count"`
}

func (s *State) standardGroup(id uint64) (*Group, *KeySet, error) {
	g, ok := s.groups[id]
	if !ok {
		return nil, nil, Errorf(ENOTFOUND, "group %d not found", id)
	}
	if g.Type == GroupAggregate {
		return nil, nil, Errorf(EINVALID, "group %q is an aggregate group and holds no keys", g.Name)
	}
	return g, s.keys[id], nil
}

// DecideAddKeys keeps the keys that are new to the group and to the batch, in input order.
// The caller splits its input so that one fact holds at most MaxKeysPerEvent keys.
func DecideAddKeys(s *State, groupID uint64, keys []NewKey) (KeysAdded, AddReport, error) {
	_, ks, err := s.standardGroup(groupID)
	if err != nil {
		return KeysAdded{}, AddReport{}, err
	}
	seen := make(map[KeyHash]struct{}, len(keys))
	out := KeysAdded{GroupID: groupID, Keys: make([]NewKey, 0, len(keys))}
	for _, k := range keys {
		if _, dup := seen[k.Hash]; dup || k.Value == "" {
			continue
		}
		seen[k.Hash] = struct{}{}
		if ks.pos(k.Hash) >= 0 {
			continue
		}
		out.Keys = append(out.Keys, k)
	}
	return out, AddReport{Added: len(out.Keys), Ignored: len(keys) - len(out.Keys)}, nil
}

// matchKeys returns the ids of the group's keys with the given hashes (each once) that
// pass the filter.
func matchKeys(ks *KeySet, hashes []KeyHash, keep func(*Key) bool) []uint64 {
	ids := make([]uint64, 0, len(hashes))
	seen := make(map[uint64]struct{}, len(hashes))
	for _, h := range hashes {
		k, ok := ks.ByHash(h)
		if !ok || !keep(k) {
			continue
		}
		if _, dup := seen[k.ID]; !dup {
			seen[k.ID] = struct{}{}
			ids = append(ids, k.ID)
		}
	}
	return ids
}

// DecideRemoveKeys removes the group's keys with the given hashes. ok is false when none
// of them is in the group: there is nothing to record.
func DecideRemoveKeys(s *State, groupID uint64, hashes []KeyHash) (f KeysRemoved, ok bool, err error) {
	_, ks, err := s.standardGroup(groupID)
	if err != nil {
		return KeysRemoved{}, false, err
	}
	ids := matchKeys(ks, hashes, func(*Key) bool { return true })
	return KeysRemoved{GroupID: groupID, KeyIDs: ids}, len(ids) > 0, nil
}

// DecideRestoreKeys restores the group's invalid keys with the given hashes.
func DecideRestoreKeys(s *State, groupID uint64, hashes []KeyHash) (f KeysRestored, ok bool, err error) {
	_, ks, err := s.standardGroup(groupID)
	if err != nil {
		return KeysRestored{}, false, err
	}
	ids := matchKeys(ks, hashes, func(k *Key) bool { return k.Status == KeyInvalid })
	return KeysRestored{GroupID: groupID, KeyIDs: ids}, len(ids) > 0, nil
}

// DecideRestoreAllInvalid restores every invalid key of a group; n is how many there are.
func DecideRestoreAllInvalid(s *State, groupID uint64) (f KeysRestored, n int, err error) {
	_, ks, err := s.standardGroup(groupID)
	if err != nil {
		return KeysRestored{}, 0, err
	}
	return KeysRestored{GroupID: groupID, AllInvalid: true}, ks.Invalid(), nil
}

// DecideClearKeys deletes every key of a group in scope; n is how many there are.
func DecideClearKeys(s *State, groupID uint64, scope KeyScope) (f KeysCleared, n int, err error) {
	_, ks, err := s.standardGroup(groupID)
	if err != nil {
		return KeysCleared{}, 0, err
	}
	switch scope {
	case ScopeAll:
		n = ks.Len()
	case ScopeInvalid:
		n = ks.Invalid()
	default:
		return KeysCleared{}, 0, Invalid(FieldError{Field: "scope", Message: "must be all or invalid"})
	}
	return KeysCleared{GroupID: groupID, Scope: scope}, n, nil
}

// DecideDisableKeys disables (or, with enable, re-enables) the listed keys of a group;
// ok is false when none of them changes.
func DecideDisableKeys(s *State, groupID uint64, ids []uint64, enable bool) (f Fact, n int, err error) {
	_, ks, err := s.standardGroup(groupID)
	if err != nil {
		return nil, 0, err
	}
	var change []uint64
	seen := make(map[uint64]struct{}, len(ids))
	for _, id := range ids {
		k, ok := ks.ByID(id)
		if !ok {
			return nil, 0, Errorf(ENOTFOUND, "key %d not found in group %d", id, groupID)
		}
		if _, dup := seen[id]; dup || k.Disabled == !enable {
			continue
		}
		seen[id] = struct{}{}
		change = append(change, id)
	}
	if len(change) == 0 {
		return nil, 0, nil
	}
	if enable {
		return KeysEnabled{GroupID: groupID, KeyIDs: change}, len(change), nil
	}
	return KeysDisabled{GroupID: groupID, KeyIDs: change}, len(change), nil
}

// DecideKeyNotes sets the notes of a key (trimmed, at most MaxNotesLen characters).
func DecideKeyNotes(s *State, keyID uint64, notes string) (KeyNoteChanged, error) {
	k, ok := s.Key(keyID)
	if !ok {
		return KeyNoteChanged{}, Errorf(ENOTFOUND, "key %d not found", keyID)
	}
	notes, err := ValidateText("notes", notes, MaxNotesLen)
	if err != nil {
		return KeyNoteChanged{}, err
	}
	return KeyNoteChanged{GroupID: k.GroupID, KeyID: keyID, Notes: notes}, nil
}

// DecideSettings validates a settings change (all or nothing). ok is false when nothing
// changes.
func DecideSettings(s *State, changes map[string]json.RawMessage) (f SettingsChanged, ok bool, err error) {
	next, err := s.Settings.Apply(changes)
	if err != nil {
		return SettingsChanged{}, false, err
	}
	before, after := s.Settings.Values(), next.Values()
	changed := []string{}
	for _, def := range SettingDefs() {
		if before[def.Key] != after[def.Key] {
			changed = append(changed, def.Key)
		}
	}
	if len(changed) == 0 && s.SettingsSeeded {
		return SettingsChanged{}, false, nil
	}
	return SettingsChanged{Settings: next, Changed: changed}, true, nil
}

// DecideSeedSettings records the settings in force on a log that has none yet, so that
// values seeded from the environment (app_url, proxy_keys) stay put when it changes.
func DecideSeedSettings(s *State) (SettingsChanged, bool) {
	if s.SettingsSeeded {
		return SettingsChanged{}, false
	}
	return SettingsChanged{Settings: s.Settings, Changed: []string{}}, true
}
