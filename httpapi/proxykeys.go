package httpapi

import (
	"net/http"
	"time"

	"gpt-load/domain"
	"gpt-load/events"
)

// ProxyKeyUsage tells what a named proxy key has used across the cluster: tokens in the
// current UTC day and month, and when it was last used (zero: never seen).
type ProxyKeyUsage interface {
	ProxyKeyUsage(id uint64) (daily, monthly int64, lastUsed time.Time)
}

// proxyKeyJSON is a proxy key of GET /api/proxy-keys: a named key (source "named"), or
// one of gpt-load's comma-separated proxy_keys (source "global" or "group"), which is
// read-only here and has no id.
type proxyKeyJSON struct {
	ID       uint64   `json:"id,omitempty"`
	Name     string   `json:"name"`
	Source   string   `json:"source"`
	ReadOnly bool     `json:"read_only"`
	Masked   string   `json:"masked"`
	Groups   []string `json:"groups"`
	// AllGroups tells a key that may use every group from one whose groups were all
	// deleted (which may use none): both list no group.
	AllGroups     bool       `json:"all_groups"`
	Enabled       bool       `json:"enabled"`
	Expired       bool       `json:"expired"`
	ExpiresAt     *time.Time `json:"expires_at"`
	Notes         string     `json:"notes"`
	RPM           int64      `json:"rpm"`
	TPM           int64      `json:"tpm"`
	DailyTokens   int64      `json:"daily_tokens"`
	MonthlyTokens int64      `json:"monthly_tokens"`
	// Use in the current UTC day and month, and what is left of the quotas (null: no
	// quota).
	Usage     proxyKeyUse `json:"usage"`
	Remaining proxyKeyUse `json:"remaining"`
	// Key is the secret: only in the answers of create and rotate.
	Key        string     `json:"key,omitempty"`
	CreatedAt  *time.Time `json:"created_at"`
	UpdatedAt  *time.Time `json:"updated_at"`
	RotatedAt  *time.Time `json:"rotated_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

type proxyKeyUse struct {
	DailyTokens   *int64 `json:"daily_tokens"`
	MonthlyTokens *int64 `json:"monthly_tokens"`
}

// Sources of proxy keys.
const (
	proxyKeyNamed = "named"
)

func (a *admin) proxyKeyOut(s *domain.State, k *domain.ProxyKey) proxyKeyJSON {
	now := a.now()
	out := proxyKeyJSON{
		ID: k.ID, Name: k.Name, Source: proxyKeyNamed, Masked: k.Masked, Groups: []string{}, AllGroups: len(k.GroupIDs) == 0,
		Enabled: k.Enabled, Expired: k.Expired(now), ExpiresAt: optTime(k.ExpiresAt), Notes: k.Notes,
		RPM: k.RPM, TPM: k.TPM, DailyTokens: k.DailyTokens, MonthlyTokens: k.MonthlyTokens,
		CreatedAt: optTime(k.CreatedAt), UpdatedAt: optTime(k.UpdatedAt), RotatedAt: optTime(k.RotatedAt),
	}
	for _, id := range k.GroupIDs {
		if g, ok := s.Group(id); ok {
			out.Groups = append(out.Groups, g.Name)
		}
	}
	var daily, monthly int64
	if a.d.ProxyKeyUsage != nil {
		var last time.Time
		daily, monthly, last = a.d.ProxyKeyUsage.ProxyKeyUsage(k.ID)
		out.LastUsedAt = optTime(last)
	}
	out.Usage = proxyKeyUse{DailyTokens: &daily, MonthlyTokens: &monthly}
	left := func(quota, used int64) *int64 {
		if quota == 0 {
			return nil
		}
		return new(max(quota-used, 0))
	}
	out.Remaining = proxyKeyUse{DailyTokens: left(k.DailyTokens, daily), MonthlyTokens: left(k.MonthlyTokens, monthly)}
	return out
}

// unnamedKey is a row for one of gpt-load's comma-separated proxy keys.
func unnamedKey(source, value string, groups []string) proxyKeyJSON {
	return proxyKeyJSON{Source: source, ReadOnly: true, Masked: domain.MaskKey(value), Groups: groups, AllGroups: len(groups) == 0, Enabled: true}
}

// listProxyKeys is GET /api/proxy-keys: the named keys by id, then the global proxy_keys,
// then each group's.
func (a *admin) listProxyKeys(w http.ResponseWriter, r *http.Request) {
	var out []proxyKeyJSON
	a.state.Read(func(s *domain.State) {
		out = make([]proxyKeyJSON, 0, s.NumGroups())
		for _, k := range s.ProxyKeys() {
			out = append(out, a.proxyKeyOut(s, k))
		}
		for _, v := range domain.SplitProxyKeys(s.Settings.ProxyKeys) {
			out = append(out, unnamedKey(domain.ProxyKeyGlobal, v, []string{}))
		}
		for _, g := range s.Groups() {
			for _, v := range domain.SplitProxyKeys(g.ProxyKeys) {
				out = append(out, unnamedKey(domain.ProxyKeyGroup, v, []string{g.Name}))
			}
		}
	})
	ok(w, r, out)
}

func (a *admin) proxyKeyAnswer(w http.ResponseWriter, r *http.Request, k domain.ProxyKey, secret string) {
	var out proxyKeyJSON
	a.state.Read(func(s *domain.State) { out = a.proxyKeyOut(s, &k) })
	out.Key = secret
	ok(w, r, out)
}

func (a *admin) createProxyKey(w http.ResponseWriter, r *http.Request) {
	var in domain.ProxyKeyInput
	if err := decodeJSON(w, r, &in); err != nil {
		fail(w, r, err)
		return
	}
	k, secret, err := a.cmd.CreateProxyKey(r.Context(), events.ActorAdmin, in)
	if err != nil {
		fail(w, r, err)
		return
	}
	a.proxyKeyAnswer(w, r, k, secret)
}

func (a *admin) updateProxyKey(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id", msgInvalidProxyKeyID)
	if err != nil {
		fail(w, r, err)
		return
	}
	var in domain.ProxyKeyInput
	if err := decodeJSON(w, r, &in); err != nil {
		fail(w, r, err)
		return
	}
	k, err := a.cmd.UpdateProxyKey(r.Context(), events.ActorAdmin, id, in)
	if err != nil {
		fail(w, r, err)
		return
	}
	a.proxyKeyAnswer(w, r, k, "")
}

func (a *admin) rotateProxyKey(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id", msgInvalidProxyKeyID)
	if err != nil {
		fail(w, r, err)
		return
	}
	k, secret, err := a.cmd.RotateProxyKey(r.Context(), events.ActorAdmin, id)
	if err != nil {
		fail(w, r, err)
		return
	}
	a.proxyKeyAnswer(w, r, k, secret)
}

func (a *admin) deleteProxyKey(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id", msgInvalidProxyKeyID)
	if err != nil {
		fail(w, r, err)
		return
	}
	if err := a.cmd.DeleteProxyKey(r.Context(), events.ActorAdmin, id); err != nil {
		fail(w, r, err)
		return
	}
	ok(w, r, nil)
}
