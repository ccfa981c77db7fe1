package domain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Limits of the fields of a named proxy key.
const (
	MaxProxyKeyNameLen  = 100
	MaxProxyKeyNotesLen = 1000
	// MaxProxyKeyLimit bounds every rate and quota, so sums of a month stay far from
	// overflowing.
	MaxProxyKeyLimit = 1 << 50
)

// ProxyKey is a named proxy key: a credential of our own for /proxy, with the groups it may
// use (none listed: all), an expiry, and limits per minute and quotas per UTC day and month
// (0: no limit). The secret itself is never kept: only its SHA-256 (a generated secret has
// 256 bits of entropy, so its digest reveals nothing) and a masked form for display.
type ProxyKey struct {
	ID            uint64    `json:"id"`
	Name          string    `json:"name"`
	GroupIDs      []uint64  `json:"group_ids,omitempty"`
	Enabled       bool      `json:"enabled"`
	ExpiresAt     time.Time `json:"expires_at,omitzero"`
	Notes         string    `json:"notes,omitempty"`
	RPM           int64     `json:"rpm,omitempty"`
	TPM           int64     `json:"tpm,omitempty"`
	DailyTokens   int64     `json:"daily_tokens,omitempty"`
	MonthlyTokens int64     `json:"monthly_tokens,omitempty"`
	Hash          KeyHash   `json:"hash"`   // SHA-256 of the secret
	Masked        string    `json:"masked"` // the secret with its middle hidden
	CreatedAt     time.Time `json:"created_at,omitzero"`
	UpdatedAt     time.Time `json:"updated_at,omitzero"`
	RotatedAt     time.Time `json:"rotated_at,omitzero"`
}

// Expired tells whether the key's expiry has passed at t.
func (k *ProxyKey) Expired(t time.Time) bool { return !k.ExpiresAt.IsZero() && !t.Before(k.ExpiresAt) }

// MayUse tells whether the key may be used on group id.
func (k *ProxyKey) MayUse(id uint64) bool {
	return len(k.GroupIDs) == 0 || slices.Contains(k.GroupIDs, id)
}

func (k *ProxyKey) clone() *ProxyKey {
	c := *k
	c.GroupIDs = slices.Clone(k.GroupIDs)
	return &c
}

// ProxyKeySecret is a freshly generated secret with what the log keeps of it.
type ProxyKeySecret struct {
	Hash   KeyHash
	Masked string
}

// ProxyKeyInput is the body of a named proxy key's create or update. A nil pointer or nil
// RawMessage means the field was absent; a RawMessage holding `null` means null.
type ProxyKeyInput struct {
	Name          *string         `json:"name"`
	Groups        json.RawMessage `json:"groups"`
	Enabled       *bool           `json:"enabled"`
	ExpiresAt     json.RawMessage `json:"expires_at"`
	Notes         *string         `json:"notes"`
	RPM           *int64          `json:"rpm"`
	TPM           *int64          `json:"tpm"`
	DailyTokens   *int64          `json:"daily_tokens"`
	MonthlyTokens *int64          `json:"monthly_tokens"`
}

// ProxyKeyCreated records a new named proxy key, id included.
type ProxyKeyCreated struct {
	Key ProxyKey `json:"key"`
}

// ProxyKeyUpdated carries the whole new key (its secret unchanged) and the JSON fields that
// changed.
type ProxyKeyUpdated struct {
	Key     ProxyKey `json:"key"`
	Changed []string `json:"changed"`
}

// ProxyKeyRotated replaces a key's secret: the old one stops working at this point of the log.
type ProxyKeyRotated struct {
	ID     uint64  `json:"id"`
	Hash   KeyHash `json:"hash"`
	Masked string  `json:"masked"`
}

// ProxyKeyDeleted removes a named proxy key.
type ProxyKeyDeleted struct {
	ID   uint64 `json:"id"`
	Name string `json:"name"`
}

func (ProxyKeyCreated) fact() {}
func (ProxyKeyUpdated) fact() {}
func (ProxyKeyRotated) fact() {}
func (ProxyKeyDeleted) fact() {}

// ProxyKey returns the named proxy key with id.
func (s *State) ProxyKey(id uint64) (*ProxyKey, bool) {
	k, ok := s.proxyKeys[id]
	return k, ok
}

// ProxyKeys lists the named proxy keys by id.
func (s *State) ProxyKeys() []*ProxyKey {
	out := make([]*ProxyKey, 0, len(s.proxyKeys))
	for _, k := range s.proxyKeys {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ProxyKeysVersion is the sequence of the last proxy-key event, 0 when there is none: views
// rebuild what they derive from the keys only when it moved.
func (s *State) ProxyKeysVersion() uint64 { return s.proxyKeysVer }

func (s *State) applyProxyKey(f Fact, m Meta) bool {
	switch f := f.(type) {
	case ProxyKeyCreated:
		k := f.Key.clone()
		k.CreatedAt, k.UpdatedAt = m.Time, m.Time
		s.proxyKeys[k.ID] = k
		if k.ID >= s.nextProxyKeyID {
			s.nextProxyKeyID = k.ID + 1
		}
	case ProxyKeyUpdated:
		old, ok := s.proxyKeys[f.Key.ID]
		if !ok {
			return false
		}
		k := f.Key.clone()
		k.Hash, k.Masked, k.RotatedAt = old.Hash, old.Masked, old.RotatedAt
		k.CreatedAt, k.UpdatedAt = old.CreatedAt, m.Time
		s.proxyKeys[k.ID] = k
	case ProxyKeyRotated:
		old, ok := s.proxyKeys[f.ID]
		if !ok {
			return false
		}
		k := old.clone()
		k.Hash, k.Masked, k.RotatedAt, k.UpdatedAt = f.Hash, f.Masked, m.Time, m.Time
		s.proxyKeys[k.ID] = k
	case ProxyKeyDeleted:
		if _, ok := s.proxyKeys[f.ID]; !ok {
			return false
		}
		delete(s.proxyKeys, f.ID)
	default:
		return false
	}
	return true
}

// DecideCreateProxyKey validates a new named proxy key; sec is its generated secret.
func DecideCreateProxyKey(s *State, in ProxyKeyInput, sec ProxyKeySecret) (ProxyKeyCreated, error) {
	k := ProxyKey{Enabled: true, Hash: sec.Hash, Masked: sec.Masked}
	if in.Name == nil {
		// Reported with the other problems of the input.
		in.Name = new(string)
	}
	if err := s.applyProxyKeyInput(&k, in); err != nil {
		return ProxyKeyCreated{}, err
	}
	if err := s.proxyKeyNameFree(k.Name, 0); err != nil {
		return ProxyKeyCreated{}, err
	}
	k.ID = s.nextProxyKeyID
	return ProxyKeyCreated{Key: k}, nil
}

// DecideUpdateProxyKey applies a partial update; the fact lists the fields that changed
// (none: nothing to record).
func DecideUpdateProxyKey(s *State, id uint64, in ProxyKeyInput) (ProxyKeyUpdated, error) {
	old, ok := s.proxyKeys[id]
	if !ok {
		return ProxyKeyUpdated{}, Errorf(ENOTFOUND, "proxy key %d not found", id)
	}
	k := old.clone()
	if err := s.applyProxyKeyInput(k, in); err != nil {
		return ProxyKeyUpdated{}, err
	}
	if k.Name != old.Name {
		if err := s.proxyKeyNameFree(k.Name, id); err != nil {
			return ProxyKeyUpdated{}, err
		}
	}
	var changed []string
	diff := func(field string, same bool) {
		if !same {
			changed = append(changed, field)
		}
	}
	diff("name", k.Name == old.Name)
	diff("groups", slices.Equal(k.GroupIDs, old.GroupIDs))
	diff("enabled", k.Enabled == old.Enabled)
	diff("expires_at", k.ExpiresAt.Equal(old.ExpiresAt))
	diff("notes", k.Notes == old.Notes)
	diff("rpm", k.RPM == old.RPM)
	diff("tpm", k.TPM == old.TPM)
	diff("daily_tokens", k.DailyTokens == old.DailyTokens)
	diff("monthly_tokens", k.MonthlyTokens == old.MonthlyTokens)
	return ProxyKeyUpdated{Key: *k, Changed: changed}, nil
}

// DecideRotateProxyKey gives a key a new secret.
func DecideRotateProxyKey(s *State, id uint64, sec ProxyKeySecret) (ProxyKeyRotated, error) {
	if _, ok := s.proxyKeys[id]; !ok {
		return ProxyKeyRotated{}, Errorf(ENOTFOUND, "proxy key %d not found", id)
	}
	return ProxyKeyRotated{ID: id, Hash: sec.Hash, Masked: sec.Masked}, nil
}

// DecideDeleteProxyKey deletes a key.
func DecideDeleteProxyKey(s *State, id uint64) (ProxyKeyDeleted, error) {
	k, ok := s.proxyKeys[id]
	if !ok {
		return ProxyKeyDeleted{}, Errorf(ENOTFOUND, "proxy key %d not found", id)
	}
	return ProxyKeyDeleted{ID: id, Name: k.Name}, nil
}

func (s *State) proxyKeyNameFree(name string, self uint64) error {
	for _, o := range s.proxyKeys {
		if o.ID != self && o.Name == name {
			return Errorf(EDUPLICATE, "proxy key name %q is already taken", name)
		}
	}
	return nil
}

// applyProxyKeyInput sets the fields present in `in` on k, collecting every problem.
func (s *State) applyProxyKeyInput(k *ProxyKey, in ProxyKeyInput) error {
	var errs fieldErrs
	if in.Name != nil {
		name, err := ValidateText("name", *in.Name, MaxProxyKeyNameLen)
		switch {
		case err != nil:
			errs.add(err)
		case name == "":
			errs.addf("name", "is required")
		default:
			k.Name = name
		}
	}
	if in.Groups != nil {
		ids, err := s.groupIDsOf(in.Groups)
		if err != nil {
			errs.add(err)
		} else {
			k.GroupIDs = ids
		}
	}
	if in.Enabled != nil {
		k.Enabled = *in.Enabled
	}
	if in.ExpiresAt != nil {
		if isNull(in.ExpiresAt) {
			k.ExpiresAt = time.Time{}
		} else {
			var str string
			var t time.Time
			err := json.Unmarshal(in.ExpiresAt, &str)
			if err == nil {
				t, err = time.Parse(time.RFC3339, str)
			}
			if err != nil {
				errs.addf("expires_at", "must be an RFC 3339 time or null")
			} else {
				k.ExpiresAt = t.UTC()
			}
		}
	}
	if in.Notes != nil {
		notes, err := ValidateText("notes", *in.Notes, MaxProxyKeyNotesLen)
		errs.add(err)
		k.Notes = notes
	}
	limit := func(field string, v *int64, dst *int64) {
		if v == nil {
			return
		}
		if *v < 0 || *v > MaxProxyKeyLimit {
			errs.addf(field, "must be between 0 (no limit) and %d", int64(MaxProxyKeyLimit))
			return
		}
		*dst = *v
	}
	limit("rpm", in.RPM, &k.RPM)
	limit("tpm", in.TPM, &k.TPM)
	limit("daily_tokens", in.DailyTokens, &k.DailyTokens)
	limit("monthly_tokens", in.MonthlyTokens, &k.MonthlyTokens)
	return Invalid(errs...)
}

// groupIDsOf reads a list of group names (null or empty: all groups) into sorted ids.
func (s *State) groupIDsOf(raw json.RawMessage) ([]uint64, error) {
	if isNull(raw) {
		return nil, nil
	}
	var names []string
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&names); err != nil {
		return nil, Invalid(FieldError{Field: "groups", Message: "must be an array of group names"})
	}
	var ids []uint64
	var missing []string
	for _, n := range names {
		id, ok := s.names[strings.TrimSpace(n)]
		if !ok {
			missing = append(missing, fmt.Sprintf("%q", n))
			continue
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	if len(missing) > 0 {
		return nil, Invalid(FieldError{Field: "groups", Message: "no such group: " + strings.Join(missing, ", ")})
	}
	slices.Sort(ids)
	return ids, nil
}
