package httpapi

import (
	"net/http"
	"slices"

	"github.com/go-chi/chi/v5"

	"gpt-load/domain"
)

// channelTypes is GET /api/channel-types: the supported channel types, in a stable order.
func (a *admin) channelTypes(w http.ResponseWriter, r *http.Request) {
	ok(w, r, domain.ChannelTypes())
}

type integrationGroup struct {
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
	ChannelType string `json:"channel_type"`
	Path        string `json:"path"`
}

// integrationOf describes a group for client discovery (API.md 1.5). OpenAI-style groups
// validated on another endpoint than their channel's are "custom", and their path names
// that endpoint. full is the global form (/proxy/{name}...), else the per-group form.
func integrationOf(g *domain.Group, full bool) integrationGroup {
	out := integrationGroup{Name: g.Name, DisplayName: g.DisplayName, ChannelType: string(g.ChannelType)}
	base := ""
	if full {
		base = "/proxy/" + g.Name
	}
	out.Path = base
	if (g.ChannelType == domain.ChannelOpenAI || g.ChannelType == domain.ChannelOpenAIResponse) &&
		g.EffectiveValidationEndpoint() != g.ChannelType.DefaultValidationEndpoint() {
		out.ChannelType = "custom"
		out.Path = base + g.ValidationEndpoint
	}
	return out
}

// mayUse reports whether a proxy key is one of the group's or a global one.
func mayUse(key string, g *domain.Group, global []string) bool {
	return slices.Contains(global, key) || slices.Contains(domain.SplitProxyKeys(g.ProxyKeys), key)
}

// integrationInfo is GET /api/integration/info?key=<proxy key>: the groups the key may
// use, in display order.
func (a *admin) integrationInfo(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Query().Get("key")
	if key == "" {
		fail(w, r, withField(errValidation(msgProxyKeyRequired), "key"))
		return
	}
	var out []integrationGroup
	a.state.Read(func(s *domain.State) {
		global := domain.SplitProxyKeys(s.Settings.ProxyKeys)
		for _, g := range s.Groups() {
			if mayUse(key, g, global) {
				out = append(out, integrationOf(g, true))
			}
		}
	})
	if len(out) == 0 {
		fail(w, r, withField(errValidation(msgProxyKeyInvalid), "key"))
		return
	}
	ok(w, r, out)
}

// groupIntegrationInfo is /proxy/{group}/api/integration/info?key=<proxy key> (any
// method): the group, if the key may use it. It is answered before proxy authentication,
// and only the query parameter is read.
func (a *admin) groupIntegrationInfo(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Query().Get("key")
	if key == "" {
		fail(w, r, withField(errValidation(msgProxyKeyRequired), "key"))
		return
	}
	name := chi.URLParam(r, "group")
	var (
		info  integrationGroup
		found bool
		may   bool
	)
	a.state.Read(func(s *domain.State) {
		g, ok := s.GroupByName(name)
		if !ok {
			return
		}
		found, may = true, mayUse(key, g, domain.SplitProxyKeys(s.Settings.ProxyKeys))
		info = integrationOf(g, false)
	})
	switch {
	case !found:
		fail(w, r, errNotFound(msgGroupNotFound))
	case !may:
		fail(w, r, withField(errValidation(msgProxyKeyInvalid), "key"))
	default:
		ok(w, r, []integrationGroup{info})
	}
}
