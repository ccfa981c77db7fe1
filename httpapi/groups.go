package httpapi

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/httpapi/tasks"
)

// groupJSON is the group object of API.md 2.1.
type groupJSON struct {
	ID                  uint64              `json:"id"`
	Name                string              `json:"name"`
	Endpoint            string              `json:"endpoint"`
	DisplayName         string              `json:"display_name"`
	Description         string              `json:"description"`
	GroupType           domain.GroupType    `json:"group_type"`
	Upstreams           []domain.Upstream   `json:"upstreams"`
	ChannelType         domain.ChannelType  `json:"channel_type"`
	Sort                int                 `json:"sort"`
	TestModel           string              `json:"test_model"`
	ValidationEndpoint  string              `json:"validation_endpoint"`
	ParamOverrides      json.RawMessage     `json:"param_overrides"`
	ModelRedirectRules  map[string]string   `json:"model_redirect_rules"`
	ModelRedirectStrict bool                `json:"model_redirect_strict"`
	Config              map[string]any      `json:"config"`
	HeaderRules         []domain.HeaderRule `json:"header_rules"`
	ProxyKeys           string              `json:"proxy_keys"`
	LastValidatedAt     *time.Time          `json:"last_validated_at"`
	CreatedAt           time.Time           `json:"created_at"`
	UpdatedAt           time.Time           `json:"updated_at"`
}

// groupOut renders a group; appURL is the app_url setting in force.
func groupOut(g *domain.Group, appURL string) groupJSON {
	out := groupJSON{
		ID: g.ID, Name: g.Name, Endpoint: groupEndpoint(appURL, g.Name),
		DisplayName: g.DisplayName, Description: g.Description, GroupType: g.Type,
		Upstreams: g.Upstreams, ChannelType: g.ChannelType, Sort: g.Sort, TestModel: g.TestModel,
		ValidationEndpoint: g.ValidationEndpoint, ParamOverrides: g.ParamOverrides,
		ModelRedirectRules: g.ModelRedirectRules, ModelRedirectStrict: g.ModelRedirectStrict,
		Config: g.Config.Map(), HeaderRules: g.HeaderRules, ProxyKeys: g.ProxyKeys,
		LastValidatedAt: optTime(g.LastValidatedAt), CreatedAt: g.CreatedAt.Local(), UpdatedAt: g.UpdatedAt.Local(),
	}
	if out.Upstreams == nil {
		out.Upstreams = []domain.Upstream{}
	}
	if out.ModelRedirectRules == nil {
		out.ModelRedirectRules = map[string]string{}
	}
	if out.HeaderRules == nil {
		out.HeaderRules = []domain.HeaderRule{}
	}
	return out
}

// groupEndpoint is app_url (its path without a trailing slash) + /proxy/{name}; "" when
// app_url does not parse.
func groupEndpoint(appURL, name string) string {
	u, err := url.Parse(appURL)
	if err != nil {
		return ""
	}
	u.Path = strings.TrimRight(u.Path, "/") + "/proxy/" + name
	u.RawPath = ""
	return u.String()
}

// optTime is nil for the zero time, else the time in the local zone.
func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.Local()
	return &t
}

// optNanos is nil for 0, else the Unix-nanosecond time in the local zone.
func optNanos(n int64) *time.Time {
	if n == 0 {
		return nil
	}
	t := time.Unix(0, n)
	return &t
}

func (a *admin) appURL() string { return a.state.View().Settings.AppURL }

func (a *admin) listGroups(w http.ResponseWriter, r *http.Request) {
	groups, appURL := a.groupsInOrder()
	out := make([]groupJSON, len(groups))
	for i, g := range groups {
		out[i] = groupOut(g, appURL)
	}
	ok(w, r, out)
}

// groupsInOrder lists the groups in display order (sort ascending, id descending) with the
// app_url in force. Groups are never modified in place, so the pointers stay valid.
func (a *admin) groupsInOrder() ([]*domain.Group, string) {
	var groups []*domain.Group
	var appURL string
	a.state.Read(func(s *domain.State) { groups, appURL = s.Groups(), s.Settings.AppURL })
	return groups, appURL
}

type groupName struct {
	ID          uint64 `json:"id"`
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
}

// listGroupNames is GET /api/groups/list: id, name and display name of every group, by
// id. gpt-load returned whole rows with only these three fields filled; the others are
// left out here.
func (a *admin) listGroupNames(w http.ResponseWriter, r *http.Request) {
	groups, _ := a.groupsInOrder()
	out := make([]groupName, len(groups))
	for i, g := range groups {
		out[i] = groupName{ID: g.ID, Name: g.Name, DisplayName: g.DisplayName}
	}
	slices.SortFunc(out, func(x, y groupName) int { return cmp.Compare(x.ID, y.ID) })
	ok(w, r, out)
}

// configOptionKeys are the group-overridable settings in the order of API.md 2.4.
var configOptionKeys = []string{
	"request_timeout", "idle_conn_timeout", "connect_timeout", "max_idle_conns",
	"max_idle_conns_per_host", "response_header_timeout", "proxy_url", "max_retries",
	"blacklist_threshold", "failover_status_codes", "key_validation_interval_minutes",
	"key_validation_concurrency", "key_validation_timeout_seconds", "enable_request_body_logging",
	"retry_empty_response", "prompt_cache_affinity", "upstream_key_rpm", "upstream_key_tpm", // ours
}

type configOption struct {
	Key          string `json:"key"`
	Name         string `json:"name"`
	Description  string `json:"description"`
	DefaultValue any    `json:"default_value"`
}

// configOptions is GET /api/groups/config-options (API.md 2.8): the default of each
// override is the current system value.
func (a *admin) configOptions(w http.ResponseWriter, r *http.Request) {
	l := langOf(r)
	settings := a.state.View().Settings
	out := make([]configOption, 0, len(configOptionKeys))
	for _, key := range configOptionKeys {
		def, found := domain.LookupSetting(key)
		if !found || !def.Overridable {
			panic("httpapi: " + key + " is not an overridable setting")
		}
		v, _ := settings.Value(key)
		out = append(out, configOption{Key: key, Name: settingName(l, key, def.Name),
			Description: settingDescription(l, key, def.Description), DefaultValue: v})
	}
	ok(w, r, out)
}

// groupBody is the body of a group create or update: the input, and the read-only fields
// of a group as the API shows it (groupJSON), which a client that edits a group it read
// may send back; they are accepted and ignored. Any other unknown field is refused.
type groupBody struct {
	domain.GroupInput
	ID              json.RawMessage `json:"id"`
	Endpoint        json.RawMessage `json:"endpoint"`
	LastValidatedAt json.RawMessage `json:"last_validated_at"`
	CreatedAt       json.RawMessage `json:"created_at"`
	UpdatedAt       json.RawMessage `json:"updated_at"`
}

func (a *admin) createGroup(w http.ResponseWriter, r *http.Request) {
	var in groupBody
	if err := decodeJSON(w, r, &in); err != nil {
		fail(w, r, err)
		return
	}
	g, err := a.cmd.CreateGroup(r.Context(), events.ActorAdmin, in.GroupInput)
	if err != nil {
		fail(w, r, err)
		return
	}
	ok(w, r, groupOut(&g, a.appURL()))
}

func (a *admin) updateGroup(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id", msgInvalidGroupID)
	if err != nil {
		fail(w, r, err)
		return
	}
	var in groupBody
	if err := decodeJSON(w, r, &in); err != nil {
		fail(w, r, err)
		return
	}
	g, err := a.cmd.UpdateGroup(r.Context(), events.ActorAdmin, id, in.GroupInput)
	if err != nil {
		fail(w, r, err)
		return
	}
	ok(w, r, groupOut(&g, a.appURL()))
}

func (a *admin) deleteGroup(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id", msgInvalidGroupID)
	if err != nil {
		fail(w, r, err)
		return
	}
	if err := a.cmd.DeleteGroup(r.Context(), events.ActorAdmin, id); err != nil {
		fail(w, r, err)
		return
	}
	ok(w, r, nil)
}

func (a *admin) reorderGroups(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Items []struct {
			ID   *uint64 `json:"id"`
			Sort *int    `json:"sort"`
		} `json:"items"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		fail(w, r, err)
		return
	}
	if len(body.Items) == 0 {
		fail(w, r, errRequired("items"))
		return
	}
	items := make([]domain.GroupOrder, len(body.Items))
	for i, it := range body.Items {
		switch {
		case it.ID == nil || *it.ID == 0:
			fail(w, r, errRequired(fmt.Sprintf("items[%d].id", i)))
			return
		case it.Sort == nil:
			fail(w, r, errRequired(fmt.Sprintf("items[%d].sort", i)))
			return
		}
		items[i] = domain.GroupOrder{GroupID: *it.ID, Sort: *it.Sort}
	}
	if err := a.cmd.ReorderGroups(r.Context(), events.ActorAdmin, items); err != nil {
		fail(w, r, err)
		return
	}
	okMsg(w, r, nil, msgGroupOrderSaved)
}

type keyStats struct {
	TotalKeys   int `json:"total_keys"`
	ActiveKeys  int `json:"active_keys"`
	InvalidKeys int `json:"invalid_keys"`
}

type requestStats struct {
	TotalRequests  int64   `json:"total_requests"`
	FailedRequests int64   `json:"failed_requests"`
	FailureRate    float64 `json:"failure_rate"`
}

// groupStatsJSON is the data of GET /api/groups/{id}/stats (API.md 2.11).
type groupStatsJSON struct {
	KeyStats    keyStats     `json:"key_stats"`
	Stats24Hour requestStats `json:"stats_24_hour"`
	Stats7Day   requestStats `json:"stats_7_day"`
	Stats30Day  requestStats `json:"stats_30_day"`
}

func keyStatsOf(s *domain.State, g *domain.Group) keyStats {
	ks := s.Keys(g.ID)
	if g.Type == domain.GroupAggregate || ks == nil {
		return keyStats{}
	}
	return keyStats{TotalKeys: ks.Len(), ActiveKeys: ks.Active(), InvalidKeys: ks.Invalid()}
}

// groupStats is GET /api/groups/{id}/stats (API.md 2.11): key counts from the state,
// request figures of the last 24 hours, 7 days and 30 days from the hourly figures (the
// hours that start in [H+1h−N h, H+1h), H the start of the current hour).
func (a *admin) groupStats(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id", msgInvalidGroupID)
	if err != nil {
		fail(w, r, err)
		return
	}
	var out groupStatsJSON
	found := false
	a.state.Read(func(s *domain.State) {
		if g, ok := s.Group(id); ok {
			found, out.KeyStats = true, keyStatsOf(s, g)
		}
	})
	if !found {
		fail(w, r, errNotFound(msgGroupNotFound))
		return
	}
	if a.logs != nil {
		end := a.now().Truncate(time.Hour).Add(time.Hour)
		hours, err := a.logs.Hourly(r.Context(), []uint64{id}, end.Add(-720*time.Hour), end)
		if err != nil {
			a.failDB(w, r, err)
			return
		}
		for _, w := range []struct {
			n   time.Duration
			out *requestStats
		}{{24, &out.Stats24Hour}, {168, &out.Stats7Day}, {720, &out.Stats30Day}} {
			from := end.Add(-w.n * time.Hour)
			for _, h := range hours {
				if !h.Time.Before(from) {
					w.out.TotalRequests += h.Success + h.Failure
					w.out.FailedRequests += h.Failure
				}
			}
			if w.out.TotalRequests > 0 {
				w.out.FailureRate = round(float64(w.out.FailedRequests)/float64(w.out.TotalRequests), 4)
			}
		}
	}
	ok(w, r, out)
}

// copyThreshold is the largest group whose keys a copy adds inside the request; larger
// ones go through the import task (API.md 2.12).
const copyThreshold = domain.MaxSyncKeys

func (a *admin) copyGroup(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id", msgInvalidGroupID)
	if err != nil {
		fail(w, r, err)
		return
	}
	var body struct {
		CopyKeys string `json:"copy_keys"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		fail(w, r, err)
		return
	}
	mode := events.CopyKeys(body.CopyKeys)
	switch mode {
	case "":
		mode = events.CopyAll
	case events.CopyAll, events.CopyNone, events.CopyValidOnly:
	default:
		fail(w, r, errField(codeValidation, "copy_keys", "must be none, valid_only or all"))
		return
	}
	var n int
	found := read(a.state, func(s *domain.State) bool {
		g, ok := s.Group(id)
		if ok && s.Keys(id) != nil {
			if mode == events.CopyValidOnly {
				n = s.Keys(id).Active()
			} else {
				n = s.Keys(id).Len()
			}
		}
		return ok && g != nil
	})
	if !found {
		fail(w, r, errNotFound(msgGroupNotFound))
		return
	}
	ctx, cancel := commandContext(r)
	defer cancel()
	if mode == events.CopyNone || n <= copyThreshold {
		g, err := a.cmd.CopyGroup(ctx, events.ActorAdmin, id, mode)
		if err != nil {
			fail(w, r, err)
			return
		}
		ok(w, r, map[string]any{"group": groupOut(&g, a.appURL())})
		return
	}
	// A big copy: the group now, its keys through the import task.
	g, err := a.cmd.CopyGroup(ctx, events.ActorAdmin, id, events.CopyNone)
	if err != nil {
		fail(w, r, err)
		return
	}
	values := read(a.state, func(s *domain.State) []string {
		ks := s.Keys(id)
		if ks == nil {
			return nil
		}
		out := make([]string, 0, n)
		ks.Each(func(k *domain.Key) bool {
			if mode == events.CopyAll || k.Status == domain.KeyActive {
				out = append(out, k.Value)
			}
			return true
		})
		return out
	})
	_, err = a.startImport(r, g.ID, g.Name, len(values), func(emit func(string) error) error {
		for _, v := range values {
			if err := emit(v); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, tasks.ErrBusy) {
		// gpt-load skips the keys silently in this case; the copy stands, and the answer
		// says what happened.
		okMsg(w, r, map[string]any{"group": groupOut(&g, a.appURL())}, msgGroupCopiedNoKeys)
		return
	}
	if err != nil {
		fail(w, r, err)
		return
	}
	ok(w, r, map[string]any{"group": groupOut(&g, a.appURL())})
}

type subGroupJSON struct {
	Group       groupJSON `json:"group"`
	Weight      int       `json:"weight"`
	TotalKeys   int       `json:"total_keys"`
	ActiveKeys  int       `json:"active_keys"`
	InvalidKeys int       `json:"invalid_keys"`
}

func (a *admin) listSubGroups(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id", msgInvalidGroupID)
	if err != nil {
		fail(w, r, err)
		return
	}
	out := []subGroupJSON{}
	found := false
	a.state.Read(func(s *domain.State) {
		g, ok := s.Group(id)
		if !ok {
			return
		}
		found = true
		for _, sg := range g.SubGroups {
			m, ok := s.Group(sg.GroupID)
			if !ok {
				continue
			}
			st := keyStatsOf(s, m)
			out = append(out, subGroupJSON{Group: groupOut(m, s.Settings.AppURL), Weight: sg.Weight,
				TotalKeys: st.TotalKeys, ActiveKeys: st.ActiveKeys, InvalidKeys: st.TotalKeys - st.ActiveKeys})
		}
	})
	if !found {
		fail(w, r, errNotFound(msgGroupNotFound))
		return
	}
	ok(w, r, out)
}

// aggregateOf checks the {id} of a sub-group route: the group exists (404) and is an
// aggregate (400 BAD_REQUEST, API.md 2.10).
func (a *admin) aggregateOf(r *http.Request) (uint64, error) {
	id, err := pathID(r, "id", msgInvalidGroupID)
	if err != nil {
		return 0, err
	}
	g := read(a.state, func(s *domain.State) *domain.Group { g, _ := s.Group(id); return g })
	if g == nil {
		return 0, errNotFound(msgGroupNotFound)
	}
	if g.Type != domain.GroupAggregate {
		return 0, errBadRequest(msgNotAggregate)
	}
	return id, nil
}

func (a *admin) addSubGroups(w http.ResponseWriter, r *http.Request) {
	id, err := a.aggregateOf(r)
	if err != nil {
		fail(w, r, err)
		return
	}
	var body struct {
		SubGroups []struct {
			GroupID uint64 `json:"group_id"`
			Weight  int    `json:"weight"`
		} `json:"sub_groups"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		fail(w, r, err)
		return
	}
	if body.SubGroups == nil {
		fail(w, r, errRequired("sub_groups"))
		return
	}
	subs := make([]domain.SubGroup, len(body.SubGroups))
	for i, sg := range body.SubGroups {
		subs[i] = domain.SubGroup{GroupID: sg.GroupID, Weight: sg.Weight}
	}
	if err := a.cmd.AddSubGroups(r.Context(), events.ActorAdmin, id, subs); err != nil {
		fail(w, r, err)
		return
	}
	ok(w, r, nil)
}

// subGroupLink reads the aggregate and member ids of /groups/{id}/sub-groups/{subGroupId}.
func (a *admin) subGroupLink(r *http.Request) (id, member uint64, err error) {
	if id, err = a.aggregateOf(r); err != nil {
		return 0, 0, err
	}
	member, err = pathID(r, "subGroupId", msgInvalidSubGroupID)
	return id, member, err
}

func (a *admin) setSubGroupWeight(w http.ResponseWriter, r *http.Request) {
	id, member, err := a.subGroupLink(r)
	if err != nil {
		fail(w, r, err)
		return
	}
	var body struct {
		Weight *int `json:"weight"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		fail(w, r, err)
		return
	}
	if body.Weight == nil {
		fail(w, r, errRequired("weight"))
		return
	}
	if err := a.cmd.SetSubGroupWeight(r.Context(), events.ActorAdmin, id, member, *body.Weight); err != nil {
		fail(w, r, err)
		return
	}
	ok(w, r, nil)
}

func (a *admin) removeSubGroup(w http.ResponseWriter, r *http.Request) {
	id, member, err := a.subGroupLink(r)
	if err != nil {
		fail(w, r, err)
		return
	}
	if err := a.cmd.RemoveSubGroup(r.Context(), events.ActorAdmin, id, member); err != nil {
		fail(w, r, err)
		return
	}
	ok(w, r, nil)
}

type parentJSON struct {
	GroupID     uint64 `json:"group_id"`
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
	Weight      int    `json:"weight"`
}

func (a *admin) parentAggregates(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id", msgInvalidGroupID)
	if err != nil {
		fail(w, r, err)
		return
	}
	out := []parentJSON{}
	found := false
	a.state.Read(func(s *domain.State) {
		if _, found = s.Group(id); !found {
			return
		}
		for _, p := range s.ParentsOf(id) {
			if g, ok := s.Group(p.GroupID); ok {
				out = append(out, parentJSON{GroupID: g.ID, Name: g.Name, DisplayName: g.DisplayName, Weight: p.Weight})
			}
		}
	})
	if !found {
		fail(w, r, errNotFound(msgGroupNotFound))
		return
	}
	ok(w, r, out)
}
