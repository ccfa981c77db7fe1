package domain

import (
	"encoding/hex"
	"encoding/json"
	"slices"
	"time"
)

// Group is a named pool of upstream keys (standard) or a weighted set of standard groups
// (aggregate). A *Group held by State is never modified in place: a change replaces it, so
// readers may keep the pointer they got.
type Group struct {
	ID                  uint64            `json:"id"`
	Name                string            `json:"name"`
	DisplayName         string            `json:"display_name"`
	Description         string            `json:"description"`
	Type                GroupType         `json:"group_type"`
	ChannelType         ChannelType       `json:"channel_type"`
	Upstreams           []Upstream        `json:"upstreams"`
	Sort                int               `json:"sort"`
	TestModel           string            `json:"test_model"`
	ValidationEndpoint  string            `json:"validation_endpoint"`
	ParamOverrides      json.RawMessage   `json:"param_overrides,omitempty"` // a JSON object, or nil
	ModelRedirectRules  map[string]string `json:"model_redirect_rules"`
	ModelRedirectStrict bool              `json:"model_redirect_strict"`
	Config              GroupConfig       `json:"config"`
	HeaderRules         []HeaderRule      `json:"header_rules"`
	ProxyKeys           string            `json:"proxy_keys"`
	SubGroups           []SubGroup        `json:"sub_groups,omitempty"` // aggregate members
	LastValidatedAt     time.Time         `json:"last_validated_at"`    // zero: never
	CreatedAt           time.Time         `json:"created_at"`
	UpdatedAt           time.Time         `json:"updated_at"`
}

// SubGroup links an aggregate to one of its members.
type SubGroup struct {
	GroupID uint64 `json:"group_id"`
	Weight  int    `json:"weight"`
}

// EffectiveValidationEndpoint is the endpoint key validation uses: the group's own, else
// its channel's default.
func (g *Group) EffectiveValidationEndpoint() string {
	if g.ValidationEndpoint != "" {
		return g.ValidationEndpoint
	}
	return g.ChannelType.DefaultValidationEndpoint()
}

func (g *Group) clone() *Group {
	c := *g
	// slices.Clone keeps an empty list empty rather than nil: an aggregate's upstreams and
	// the default header rules are [] in the API, not null.
	c.Upstreams = slices.Clone(g.Upstreams)
	c.HeaderRules = slices.Clone(g.HeaderRules)
	c.SubGroups = slices.Clone(g.SubGroups)
	if g.ModelRedirectRules != nil {
		c.ModelRedirectRules = make(map[string]string, len(g.ModelRedirectRules))
		for k, v := range g.ModelRedirectRules {
			c.ModelRedirectRules[k] = v
		}
	}
	return &c
}

// KeyStatus is the administrative state of an upstream key.
type KeyStatus uint8

const (
	KeyActive  KeyStatus = 1 // in rotation (unless cooling down)
	KeyInvalid KeyStatus = 2 // blacklisted: out of rotation until validated or restored
	keyRemoved KeyStatus = 0 // tombstone inside a KeySet, never visible outside
)

func (s KeyStatus) String() string {
	switch s {
	case KeyActive:
		return "active"
	case KeyInvalid:
		return "invalid"
	}
	return "removed"
}

// ParseKeyStatus accepts "active" and "invalid".
func ParseKeyStatus(s string) (KeyStatus, error) {
	switch s {
	case "active":
		return KeyActive, nil
	case "invalid":
		return KeyInvalid, nil
	}
	return 0, Invalid(FieldError{Field: "status", Message: "must be active or invalid"})
}

// KeyHash identifies an upstream key without revealing it: SHA-256 of the key, or
// HMAC-SHA-256 under the encryption key when encryption is on.
type KeyHash [32]byte

func (h KeyHash) String() string { return hex.EncodeToString(h[:]) }

// ParseKeyHash reads the hex form.
func ParseKeyHash(s string) (KeyHash, error) {
	var h KeyHash
	if len(s) != 64 {
		return h, Errorf(EINVALID, "key hash must be 64 hex digits")
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, Errorf(EINVALID, "key hash: %v", err)
	}
	return h, nil
}

func (h KeyHash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

func (h *KeyHash) UnmarshalText(b []byte) error {
	v, err := ParseKeyHash(string(b))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// Key is one upstream key of a group as the projection holds it. Times are Unix
// nanoseconds (0: never) to keep a million keys small.
type Key struct {
	ID            uint64
	GroupID       uint64
	Value         string // the key in clear, in memory only
	Hash          KeyHash
	Status        KeyStatus
	Disabled      bool   // taken out of rotation by an admin: never selected, never revalidated
	FailureCount  uint32 // consecutive counted failures; reset by a success
	CreatedAt     int64
	UpdatedAt     int64
	CooldownUntil int64 // rate-limited until then; 0 when not resting
	Notes         string
	LastError     string // masked reason of the last counted failure
}

// Usable reports whether the key may be selected at time now (Unix nanoseconds).
func (k *Key) Usable(now int64) bool {
	return k.Selectable() && k.CooldownUntil <= now
}

// Selectable reports whether the key is in rotation (cooldowns aside): active and not
// disabled.
func (k *Key) Selectable() bool { return k.Status == KeyActive && !k.Disabled }

// MaskKey shows the first and last four characters of keys longer than 8 characters.
func MaskKey(v string) string {
	if len(v) <= 8 {
		return "****"
	}
	return v[:4] + "****" + v[len(v)-4:]
}
