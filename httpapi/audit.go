package httpapi

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"gpt-load/domain"
	"gpt-load/events"
)

// auditItem is one event of GET /api/audit: who (actor and node), when, what, and what
// changed, with every secret masked.
type auditItem struct {
	Seq      uint64    `json:"seq"`
	ID       string    `json:"id"`
	Time     time.Time `json:"time"`
	Type     string    `json:"type"`
	Actor    string    `json:"actor"`
	Node     string    `json:"node"`
	GroupIDs []uint64  `json:"group_ids"`
	Details  any       `json:"details"`
}

// auditTrail is GET /api/audit (ours): the event history from the log, newest first,
// filtered by group_id and type (event names, comma-separated), paginated like the keys.
func (a *admin) auditTrail(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	page, size := pagination(r)
	var query events.AuditQuery
	if s := q.Get("group_id"); s != "" {
		id, err := strconv.ParseUint(s, 10, 64)
		if err != nil || id == 0 {
			fail(w, r, errField(codeBadRequest, "group_id", "must be a positive integer"))
			return
		}
		query.GroupID = id
	}
	for t := range strings.SplitSeq(q.Get("type"), ",") {
		if t = strings.TrimSpace(t); t != "" {
			query.Types = append(query.Types, t)
		}
	}
	query.Offset, query.Limit = offset(page, size), size
	res, err := a.audit.Page(r.Context(), query)
	if err != nil {
		fail(w, r, err)
		return
	}
	items := make([]auditItem, len(res.Events))
	for i, ev := range res.Events {
		items[i] = auditOf(ev)
	}
	ok(w, r, newPage(items, page, size, res.Total))
}

// auditSample bounds the key values and ids an audit item lists.
const auditSample = 20

func auditOf(ev events.Event) auditItem {
	groups := events.GroupsOf(ev.Fact)
	if groups == nil {
		groups = []uint64{}
	}
	return auditItem{
		Seq: ev.Meta.Seq, ID: ev.ID, Time: ev.Meta.Time.Local(), Type: ev.Type,
		Actor: ev.Meta.Actor, Node: ev.Meta.Node, GroupIDs: groups, Details: auditDetails(ev.Fact),
	}
}

// auditDetails says what an event changed, masking upstream keys, proxy keys, header
// values and credentials in URLs.
func auditDetails(f domain.Fact) any {
	switch f := f.(type) {
	case domain.SettingsChanged:
		values := f.Settings.Values()
		values["proxy_keys"] = maskList(f.Settings.ProxyKeys)
		values["proxy_url"] = redactURL(f.Settings.ProxyURL)
		if len(f.Changed) == 0 { // the settings recorded at first start
			return map[string]any{"changed": []string{}, "values": values}
		}
		picked := make(map[string]any, len(f.Changed))
		for _, k := range f.Changed {
			picked[k] = values[k]
		}
		return map[string]any{"changed": f.Changed, "values": picked}
	case domain.GroupCreated:
		return map[string]any{"group": maskedGroup(f.Group)}
	case domain.GroupUpdated:
		all := maskedGroup(f.Group)
		picked := make(map[string]any, len(f.Changed))
		for _, k := range f.Changed {
			picked[k] = all[k]
		}
		return map[string]any{"id": f.Group.ID, "name": f.Group.Name, "changed": f.Changed, "values": picked}
	case domain.KeysAdded:
		sample := make([]string, 0, min(len(f.Keys), auditSample))
		for _, k := range f.Keys[:min(len(f.Keys), auditSample)] {
			sample = append(sample, domain.MaskKey(k.Value))
		}
		return map[string]any{"count": len(f.Keys), "keys": sample}
	case domain.GroupImported:
		return map[string]any{"group": maskedGroup(f.Group), "source": f.Source}
	case domain.KeysImported:
		sample := make([]string, 0, min(len(f.Keys), auditSample))
		for _, k := range f.Keys[:min(len(f.Keys), auditSample)] {
			sample = append(sample, domain.MaskKey(k.Value))
		}
		return map[string]any{"count": len(f.Keys), "keys": sample, "source": f.Source}
	case domain.KeysRemoved:
		return idList(f.KeyIDs)
	case domain.KeysDisabled:
		return idList(f.KeyIDs)
	case domain.KeysEnabled:
		return idList(f.KeyIDs)
	case domain.KeysRestored:
		if f.AllInvalid {
			return map[string]any{"all_invalid": true}
		}
		return idList(f.KeyIDs)
	}
	// The other facts hold no secret (key-health messages are masked where they are made).
	return f
}

func idList(ids []uint64) map[string]any {
	return map[string]any{"count": len(ids), "key_ids": ids[:min(len(ids), auditSample)]}
}

// maskedGroup is the group as the API shows it, without the fields the log does not
// hold (times, endpoint), with its proxy keys, header values and URL credentials masked.
func maskedGroup(g domain.Group) map[string]any {
	g.ProxyKeys = maskList(g.ProxyKeys)
	rules := make([]domain.HeaderRule, len(g.HeaderRules))
	for i, h := range g.HeaderRules {
		if h.Value != "" {
			h.Value = domain.MaskKey(h.Value)
		}
		rules[i] = h
	}
	g.HeaderRules = rules
	ups := make([]domain.Upstream, len(g.Upstreams))
	for i, u := range g.Upstreams {
		ups[i] = domain.Upstream{URL: redactURL(u.URL), Weight: u.Weight}
	}
	g.Upstreams = ups
	if g.Config.ProxyURL != nil {
		g.Config.ProxyURL = new(redactURL(*g.Config.ProxyURL))
	}
	var out map[string]any
	b, err := json.Marshal(groupOut(&g, ""))
	if err != nil {
		panic("httpapi: a group does not encode: " + err.Error())
	}
	json.Unmarshal(b, &out)
	for _, k := range []string{"endpoint", "created_at", "updated_at", "last_validated_at"} {
		delete(out, k)
	}
	return out
}

// maskList masks each entry of a comma-separated list of secrets.
func maskList(csv string) string {
	keys := domain.SplitProxyKeys(csv)
	for i, k := range keys {
		keys[i] = domain.MaskKey(k)
	}
	return strings.Join(keys, ",")
}

// redactURL hides the user information of a URL.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	u.User = nil
	out := u.String()
	if i := strings.Index(out, "://"); i >= 0 {
		return out[:i+3] + "****@" + out[i+3:]
	}
	return out
}
