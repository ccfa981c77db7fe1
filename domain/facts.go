package domain

import "time"

// A Fact is the payload of an event: something that happened, in the past tense. Facts are
// JSON; their stable names and schema versions live in the events registry.
type Fact interface{ fact() }

// Meta is what the log knows about an event besides its payload.
type Meta struct {
	Seq   uint64    // stream sequence: the position in the log
	Time  time.Time // when it happened
	Node  string    // the node that recorded it
	Actor string    // who caused it: "admin", "system:<job>", "proxy"
}

// SettingsChanged carries the whole new system settings and the keys that changed.
type SettingsChanged struct {
	Settings Settings `json:"settings"`
	Changed  []string `json:"changed"`
}

// GroupCreated carries the new group, id included.
type GroupCreated struct {
	Group Group `json:"group"`
}

// GroupUpdated carries the whole new group and the JSON fields that changed.
type GroupUpdated struct {
	Group   Group    `json:"group"`
	Changed []string `json:"changed"`
}

// GroupDeleted removes a group, its keys and every aggregate link it takes part in.
type GroupDeleted struct {
	GroupID uint64 `json:"group_id"`
	Name    string `json:"name"`
}

// GroupOrder is one entry of GroupsReordered.
type GroupOrder struct {
	GroupID uint64 `json:"id"`
	Sort    int    `json:"sort"`
}

// GroupsReordered sets the display order of several groups at once.
type GroupsReordered struct {
	Items []GroupOrder `json:"items"`
}

// SubGroupsChanged carries the whole new member list of an aggregate.
type SubGroupsChanged struct {
	GroupID   uint64     `json:"group_id"`
	SubGroups []SubGroup `json:"sub_groups"`
}

// GroupValidated records a background validation round of a group.
type GroupValidated struct {
	GroupID uint64 `json:"group_id"`
}

// NewKey is a key entering a group.
type NewKey struct {
	Value string  `json:"value"` // encrypted on the wire when encryption is on
	Hash  KeyHash `json:"hash"`
}

// KeysAdded adds keys to a group. Ids are not in the event: the projection gives the keys
// consecutive ids from its counter, in order, so every node numbers them alike.
type KeysAdded struct {
	GroupID uint64   `json:"group_id"`
	Keys    []NewKey `json:"keys"`
}

// KeysRemoved deletes the listed keys of a group.
type KeysRemoved struct {
	GroupID uint64   `json:"group_id"`
	KeyIDs  []uint64 `json:"key_ids"`
}

// KeyScope selects keys of a group by status, for bulk facts.
type KeyScope string

const (
	ScopeAll     KeyScope = "all"
	ScopeInvalid KeyScope = "invalid"
)

// KeysCleared deletes every key of a group within the scope, as the group is at that point
// of the log.
type KeysCleared struct {
	GroupID uint64   `json:"group_id"`
	Scope   KeyScope `json:"scope"`
}

// KeysRestored puts invalid keys back in rotation with their failure count reset: the listed
// ones, or every invalid key of the group when AllInvalid is set.
type KeysRestored struct {
	GroupID    uint64   `json:"group_id"`
	KeyIDs     []uint64 `json:"key_ids,omitempty"`
	AllInvalid bool     `json:"all_invalid,omitempty"`
}

// KeysDisabled takes keys out of rotation without deleting them; KeysEnabled puts them
// back. Status and failure counts are kept.
type KeysDisabled struct {
	GroupID uint64   `json:"group_id"`
	KeyIDs  []uint64 `json:"key_ids"`
}

// KeysEnabled puts disabled keys back in rotation.
type KeysEnabled struct {
	GroupID uint64   `json:"group_id"`
	KeyIDs  []uint64 `json:"key_ids"`
}

// KeyNoteChanged sets the free-text notes of a key.
type KeyNoteChanged struct {
	GroupID uint64 `json:"group_id"`
	KeyID   uint64 `json:"key_id"`
	Notes   string `json:"notes"`
}

// KeyFailed records a failure that counts against a key (DESIGN.md, key health): an
// authentication failure counts toward the blacklist threshold in force at this point of the
// log; a rate limit rests the key until RetryUntil.
type KeyFailed struct {
	GroupID    uint64      `json:"group_id"`
	KeyID      uint64      `json:"key_id"`
	Kind       FailureKind `json:"kind"`
	Status     int         `json:"status,omitempty"`
	Message    string      `json:"message,omitempty"` // masked
	RetryUntil time.Time   `json:"retry_until,omitzero"`
}

// KeySucceeded ends a key's failure streak. It is recorded only for keys that had one.
type KeySucceeded struct {
	GroupID uint64 `json:"group_id"`
	KeyID   uint64 `json:"key_id"`
}

// KeyValidated records the outcome of a validation request: a valid key becomes active with
// its failures and cooldown cleared; an invalid one counts like an authentication failure.
type KeyValidated struct {
	GroupID uint64 `json:"group_id"`
	KeyID   uint64 `json:"key_id"`
	Valid   bool   `json:"valid"`
	Status  int    `json:"status,omitempty"`
	Message string `json:"message,omitempty"` // masked
}

// KeysExported records that an admin downloaded a group's keys in clear (GET
// /api/keys/export): which group, which status filter, and from where. The projection
// changes nothing for it; the audit trail shows it.
type KeysExported struct {
	GroupID   uint64 `json:"group_id"`
	GroupName string `json:"group_name"`
	Status    string `json:"status"`           // "all", "active" or "invalid"
	Source    string `json:"source,omitempty"` // the client's address
}

func (SettingsChanged) fact()  {}
func (GroupCreated) fact()     {}
func (GroupUpdated) fact()     {}
func (GroupDeleted) fact()     {}
func (GroupsReordered) fact()  {}
func (SubGroupsChanged) fact() {}
func (GroupValidated) fact()   {}
func (KeysAdded) fact()        {}
func (KeysRemoved) fact()      {}
func (KeysCleared) fact()      {}
func (KeysRestored) fact()     {}
func (KeyNoteChanged) fact()   {}
func (KeysDisabled) fact()     {}
func (KeysEnabled) fact()      {}
func (KeyFailed) fact()        {}
func (KeySucceeded) fact()     {}
func (KeyValidated) fact()     {}
func (KeysExported) fact()     {}

// MarshalText writes a failure kind by name: the log keeps names, not numbers.
func (k FailureKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads a failure kind name.
func (k *FailureKind) UnmarshalText(b []byte) error {
	for c := FailureNone; c <= FailureClient; c++ {
		if c.String() == string(b) {
			*k = c
			return nil
		}
	}
	return Errorf(EINVALID, "unknown failure kind %q", b)
}
