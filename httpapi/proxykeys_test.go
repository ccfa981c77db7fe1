package httpapi_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"gpt-load/httpapi"
	"gpt-load/proxy"
	"gpt-load/proxy/limits"
)

type proxyKeyOut struct {
	ID        uint64     `json:"id"`
	Name      string     `json:"name"`
	Source    string     `json:"source"`
	ReadOnly  bool       `json:"read_only"`
	Masked    string     `json:"masked"`
	Groups    []string   `json:"groups"`
	AllGroups bool       `json:"all_groups"`
	Enabled   bool       `json:"enabled"`
	Expired   bool       `json:"expired"`
	ExpiresAt *time.Time `json:"expires_at"`
	Notes     string     `json:"notes"`
	RPM       int64      `json:"rpm"`
	Daily     int64      `json:"daily_tokens"`
	Key       string     `json:"key"`
	Remaining struct {
		DailyTokens   *int64 `json:"daily_tokens"`
		MonthlyTokens *int64 `json:"monthly_tokens"`
	} `json:"remaining"`
}

// TestProxyKeysLifecycle drives a named proxy key through the admin API and the proxy:
// created with its secret shown once, listed without it beside the unnamed keys, changed,
// disabled, expired, limited to a group, rotated and deleted, every change audited.
func TestProxyKeysLifecycle(t *testing.T) {
	t.Parallel()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`)
	}))
	defer upstream.Close()
	var ph atomic.Pointer[proxy.Handler]
	lim := limits.New(limits.Config{Log: zerolog.Nop()})
	n := startNode(t, nodeOpts{
		proxy: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ph.Load().ServeHTTP(w, r) }),
		deps:  func(d *httpapi.Deps) { d.ProxyKeyUsage = lim },
	})
	h, err := proxy.New(proxy.Config{}, proxy.Deps{Views: n.proj, Facts: n.store, Limits: lim, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	ph.Store(h)
	for _, name := range []string{"alpha", "beta"} {
		var g struct {
			ID uint64 `json:"id"`
		}
		n.do("POST", "/api/groups", `{"name":"`+name+`","channel_type":"openai","test_model":"m","proxy_keys":"sk-group-`+name+`","upstreams":[{"url":"`+upstream.URL+`","weight":1}]}`).ok(t, &g)
		n.addKeys(g.ID, "sk-up-"+name)
	}
	call := func(group, key string) int {
		t.Helper()
		return n.send("POST", "/proxy/"+group+"/v1/chat/completions", `{"model":"m","messages":[]}`, "Authorization", "Bearer "+key).code
	}

	// Create: the object, and this once its secret.
	var k proxyKeyOut
	n.do("POST", "/api/proxy-keys", `{"name":" team ","groups":["alpha"],"rpm":100,"daily_tokens":1000,"expires_at":null,"notes":"n"}`).ok(t, &k)
	if k.ID == 0 || k.Name != "team" || k.Source != "named" || !k.Enabled || len(k.Groups) != 1 || k.Groups[0] != "alpha" || k.AllGroups ||
		!strings.HasPrefix(k.Key, "sk-gl-") || len(k.Key) < 40 || k.Masked == "" || strings.Contains(k.Masked, k.Key[8:20]) {
		t.Fatalf("created %+v", k)
	}
	if k.Remaining.DailyTokens == nil || *k.Remaining.DailyTokens != 1000 || k.Remaining.MonthlyTokens != nil {
		t.Errorf("remaining %+v", k.Remaining)
	}
	secret := k.Key
	if got := call("alpha", secret); got != 200 {
		t.Fatalf("proxied with the new key: %d", got)
	}
	if got := call("beta", secret); got != http.StatusForbidden {
		t.Errorf("another group: %d, want 403", got)
	}

	// List: the named key without its secret, then the unnamed ones, masked.
	list := n.do("GET", "/api/proxy-keys", nil)
	if strings.Contains(string(list.body), secret) || strings.Contains(string(list.body), "sk-group-alpha") {
		t.Fatalf("the list shows a secret: %s", list.body)
	}
	var keys []proxyKeyOut
	list.ok(t, &keys)
	sources := map[string]int{}
	for _, x := range keys {
		sources[x.Source]++
		if x.Source != "named" && (!x.ReadOnly || x.ID != 0 || x.Masked == "") {
			t.Errorf("unnamed key %+v", x)
		}
	}
	if len(keys) == 0 || keys[0].ID != k.ID || keys[0].Key != "" || sources["named"] != 1 || sources["global"] != 1 || sources["group"] != 2 {
		t.Fatalf("listed %+v", keys)
	}
	if r := keys[0].Remaining.DailyTokens; r == nil || *r != 1000-7 {
		t.Errorf("remaining after one answer of 7 tokens: %v", *r)
	}

	// Bad input: a 400 naming each field, and nothing changes.
	before := n.encoded()
	for body, field := range map[string]string{
		`{"name":""}`:               "name",
		`{"groups":["nope"]}`:       "groups",
		`{"rpm":-1}`:                "rpm",
		`{"daily_tokens":-5}`:       "daily_tokens",
		`{"expires_at":"tomorrow"}`: "expires_at",
		`{"notes":"` + strings.Repeat("x", 1001) + `"}`: "notes",
	} {
		e := n.do("PUT", fmt.Sprintf("/api/proxy-keys/%d", k.ID), body).fails(t, http.StatusBadRequest, "VALIDATION_FAILED")
		if len(e.Fields) != 1 || e.Fields[0].Field != field {
			t.Errorf("%s: fields %+v, want %s", body, e.Fields, field)
		}
	}
	n.do("PUT", fmt.Sprintf("/api/proxy-keys/%d", k.ID), `{"rpm":"fast"}`).fails(t, http.StatusBadRequest, "INVALID_JSON")
	n.do("POST", "/api/proxy-keys", `{"rpm":5}`).fails(t, http.StatusBadRequest, "VALIDATION_FAILED")
	n.do("POST", "/api/proxy-keys", `{"name":"team"}`).fails(t, http.StatusConflict, "DUPLICATE_RESOURCE")
	n.do("PUT", "/api/proxy-keys/999", `{"rpm":1}`).fails(t, http.StatusNotFound, "NOT_FOUND")
	n.do("PUT", "/api/proxy-keys/x", `{"rpm":1}`).fails(t, http.StatusBadRequest, "BAD_REQUEST")
	if string(n.encoded()) != string(before) {
		t.Fatal("bad input changed the state")
	}

	// Update, partially: the other fields stay.
	var u proxyKeyOut
	n.do("PUT", fmt.Sprintf("/api/proxy-keys/%d", k.ID), `{"groups":[],"enabled":false}`).ok(t, &u)
	if u.Enabled || len(u.Groups) != 0 || !u.AllGroups || u.RPM != 100 || u.Notes != "n" || u.Key != "" {
		t.Fatalf("updated %+v", u)
	}
	if got := call("alpha", secret); got != http.StatusUnauthorized {
		t.Errorf("disabled: %d, want 401", got)
	}
	past := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	n.do("PUT", fmt.Sprintf("/api/proxy-keys/%d", k.ID), `{"enabled":true,"expires_at":"`+past+`"}`).ok(t, &u)
	if !u.Expired {
		t.Errorf("expired key shows %+v", u)
	}
	if got := call("beta", secret); got != http.StatusUnauthorized {
		t.Errorf("expired: %d, want 401", got)
	}
	n.do("PUT", fmt.Sprintf("/api/proxy-keys/%d", k.ID), `{"expires_at":null}`).ok(t, &u)
	if got := call("beta", secret); got != 200 {
		t.Errorf("every group, not expired: %d, want 200", got)
	}

	// Rotate: the new secret once, the old one refused.
	var r proxyKeyOut
	n.do("POST", fmt.Sprintf("/api/proxy-keys/%d/rotate", k.ID), nil).ok(t, &r)
	if r.ID != k.ID || r.Key == "" || r.Key == secret {
		t.Fatalf("rotated %+v", r)
	}
	if got := call("alpha", secret); got != http.StatusUnauthorized {
		t.Errorf("old secret: %d, want 401", got)
	}
	if got := call("alpha", r.Key); got != 200 {
		t.Errorf("new secret: %d, want 200", got)
	}

	// Delete.
	n.do("DELETE", fmt.Sprintf("/api/proxy-keys/%d", k.ID), nil).ok(t, nil)
	if got := call("alpha", r.Key); got != http.StatusUnauthorized {
		t.Errorf("deleted: %d, want 401", got)
	}
	n.do("DELETE", fmt.Sprintf("/api/proxy-keys/%d", k.ID), nil).fails(t, http.StatusNotFound, "NOT_FOUND")

	// Every change is in the audit trail, without a secret.
	audit := n.do("GET", "/api/audit?type=proxykey.created,proxykey.updated,proxykey.rotated,proxykey.deleted", nil)
	var page struct {
		Items []struct {
			Type string `json:"type"`
		} `json:"items"`
	}
	audit.ok(t, &page)
	types := map[string]int{}
	for _, it := range page.Items {
		types[it.Type]++
	}
	if types["proxykey.created"] != 1 || types["proxykey.updated"] != 3 || types["proxykey.rotated"] != 1 || types["proxykey.deleted"] != 1 {
		t.Errorf("audited %v", types)
	}
	if strings.Contains(string(audit.body), secret) || strings.Contains(string(audit.body), r.Key) {
		t.Error("the audit trail shows a secret")
	}
}
