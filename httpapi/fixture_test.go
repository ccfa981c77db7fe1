package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestGptLoadScript runs the admin calls of the script that made gpt-load 1.x's fixture
// databases (settings, six groups, an aggregate, 100 keys, notes, validations, upstream
// changes), exactly as a gpt-load user's script sends them and reads the answers, and
// checks the result against what gpt-load itself stored.
func TestGptLoadScript(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	// The fixture's mock upstream answered 401 to these keys.
	refused := []string{"sk-fixture-openai-0017", "sk-fixture-openai-0018", "sk-fixture-openai-0019",
		"sk-fixture-openai-0020", "sk-fixture-openaibk-0019", "sk-fixture-openaibk-0020"}
	n.validator.invalid = func(v string) bool { return slices.Contains(refused, v) }
	api := func(method, path, body string) json.RawMessage {
		t.Helper()
		var b any
		if body != "" {
			b = body
		}
		return n.do(method, path, b).ok(t, nil).Data
	}
	gid := func(name string) uint64 {
		var groups []struct {
			ID   uint64 `json:"id"`
			Name string `json:"name"`
		}
		json.Unmarshal(api("GET", "/api/groups", ""), &groups)
		for _, g := range groups {
			if g.Name == name {
				return g.ID
			}
		}
		t.Fatalf("no group %s", name)
		return 0
	}
	const mockA, mockB = "http://127.0.0.1:18091", "http://127.0.0.1:18092"

	// 1. system settings
	api("PUT", "/api/settings", `{"app_url":"https://gpt-load.example.com","request_log_retention_days":14,"max_retries":5,"blacklist_threshold":4,"proxy_keys":"sk-fixture-proxy-global-1, sk-fixture-proxy-global-2","key_validation_interval_minutes":120,"request_timeout":300}`)
	// 2. groups
	api("POST", "/api/groups", strings.ReplaceAll(strings.ReplaceAll(openaiGroup, "https://api.openai.com", mockA), "https://openai-mirror.example.com", mockB))
	api("POST", "/api/groups", `{"name":"openai-backup","display_name":"OpenAI Backup","description":"Fixture: second OpenAI group (aggregate member)","channel_type":"openai","upstreams":[{"url":"`+mockA+`","weight":1}],"test_model":"gpt-4o-mini","sort":2,"config":{"blacklist_threshold":1}}`)
	api("POST", "/api/groups", `{"name":"gemini","display_name":"Gemini","description":"Fixture: Gemini group","channel_type":"gemini","upstreams":[{"url":"`+mockA+`","weight":1}],"test_model":"gemini-2.5-flash","sort":3,"proxy_keys":"sk-fixture-proxy-gemini-1"}`)
	api("POST", "/api/groups", `{"name":"anthropic","display_name":"Anthropic","description":"Fixture: Anthropic group","channel_type":"anthropic","upstreams":[{"url":"`+mockA+`","weight":1}],"test_model":"claude-3-5-haiku-latest","sort":4,"config":{"request_timeout":900}}`)
	api("POST", "/api/groups", `{"name":"openai-response","display_name":"OpenAI Responses","description":"Fixture: openai-response channel","channel_type":"openai-response","upstreams":[{"url":"`+mockA+`","weight":1}],"test_model":"gpt-4.1-mini","validation_endpoint":"/v1/responses","sort":5}`)
	api("POST", "/api/groups", `{"name":"openai-pool","display_name":"OpenAI Pool (aggregate)","description":"Fixture: aggregate of openai (70) + openai-backup (30)","group_type":"aggregate","channel_type":"openai","sort":0,"proxy_keys":"sk-fixture-proxy-pool-1","config":{"max_retries":1}}`)
	oa, bk, ge, an, or, pool := gid("openai"), gid("openai-backup"), gid("gemini"), gid("anthropic"), gid("openai-response"), gid("openai-pool")
	api("POST", fmt.Sprint("/api/groups/", pool, "/sub-groups"), fmt.Sprintf(`{"sub_groups":[{"group_id":%d,"weight":70},{"group_id":%d,"weight":30}]}`, oa, bk))
	// 3. keys, 20 per standard group
	prefixes := map[uint64]string{oa: "sk-fixture-openai", bk: "sk-fixture-openaibk", ge: "sk-fixture-gemini", an: "sk-fixture-anthropic", or: "sk-fixture-openairesp"}
	for _, g := range []uint64{oa, bk, ge, an, or} {
		var txt strings.Builder
		for i := 1; i <= 20; i++ {
			fmt.Fprintf(&txt, "%s-%04d\n", prefixes[g], i)
		}
		body, _ := json.Marshal(map[string]any{"group_id": g, "keys_text": txt.String()})
		api("POST", "/api/keys/add-multiple", string(body))
	}
	// 4. notes
	keyID := func(g uint64, value string) uint64 {
		var page struct {
			Items []struct {
				ID       uint64 `json:"id"`
				KeyValue string `json:"key_value"`
			} `json:"items"`
		}
		json.Unmarshal(api("GET", fmt.Sprint("/api/keys?group_id=", g, "&page=1&page_size=100"), ""), &page)
		for _, k := range page.Items {
			if k.KeyValue == value {
				return k.ID
			}
		}
		t.Fatalf("no key %s", value)
		return 0
	}
	note := func(g uint64, value, text string) {
		body, _ := json.Marshal(map[string]string{"notes": text})
		api("PUT", fmt.Sprint("/api/keys/", keyID(g, value), "/notes"), string(body))
	}
	note(oa, "sk-fixture-openai-0001", "primary billing account")
	note(oa, "sk-fixture-openai-0002", "team B quota, rotate monthly")
	note(oa, "sk-fixture-openai-0018", "revoked upstream (fixture)")
	note(ge, "sk-fixture-gemini-0005", "free tier 备注 ✓")
	// 6. validation, polling the task as the script does
	validate := func(g uint64) {
		api("POST", "/api/keys/validate-group", fmt.Sprintf(`{"group_id":%d}`, g))
		n.waitTask(10 * time.Second)
	}
	validate(oa)
	validate(oa)
	validate(bk)
	// 7. the real-looking upstreams
	api("PUT", fmt.Sprint("/api/groups/", oa), `{"upstreams":[{"url":"https://api.openai.com","weight":3},{"url":"https://openai-mirror.example.com","weight":1}],"test_model":"gpt-4o-mini"}`)
	api("PUT", fmt.Sprint("/api/groups/", bk), `{"upstreams":[{"url":"https://api.openai.com","weight":1}],"test_model":"gpt-4o-mini"}`)
	api("PUT", fmt.Sprint("/api/groups/", ge), `{"upstreams":[{"url":"https://generativelanguage.googleapis.com","weight":1}],"test_model":"gemini-2.5-flash"}`)
	api("PUT", fmt.Sprint("/api/groups/", an), `{"upstreams":[{"url":"https://api.anthropic.com","weight":1}],"test_model":"claude-3-5-haiku-latest"}`)
	api("PUT", fmt.Sprint("/api/groups/", or), `{"upstreams":[{"url":"https://api.openai.com","weight":1}],"test_model":"gpt-4.1-mini"}`)

	// What gpt-load stored (expected.json of the fixture).
	if want := []uint64{1, 2, 3, 4, 5, 6}; !slices.Equal([]uint64{oa, bk, ge, an, or, pool}, want) {
		t.Errorf("group ids %v", []uint64{oa, bk, ge, an, or, pool})
	}
	groups := list(t, n.do(http.MethodGet, "/api/groups", nil).data(t))
	byName := map[string]any{}
	for _, g := range groups {
		byName[field(t, g, "name").(string)] = g
	}
	checks := map[string]string{
		"openai": `{"id":1,"display_name":"OpenAI Primary","group_type":"standard","channel_type":"openai","sort":1,"test_model":"gpt-4o-mini",
			"validation_endpoint":"","proxy_keys":"sk-fixture-proxy-openai-1,sk-fixture-proxy-openai-2","model_redirect_strict":true,
			"upstreams":[{"url":"https://api.openai.com","weight":3},{"url":"https://openai-mirror.example.com","weight":1}],
			"config":{"blacklist_threshold":2,"enable_request_body_logging":true,"key_validation_interval_minutes":30,"max_retries":2,"request_timeout":120},
			"header_rules":[{"key":"X-Fixture-Tag","value":"gpt-load-fixture","action":"set"},{"key":"X-Debug-Client","value":"","action":"remove"}],
			"model_redirect_rules":{"gpt-4o-fixture":"gpt-4o-mini","gpt-fast":"gpt-4.1-mini"},"param_overrides":{"max_tokens":512,"temperature":0.2},
			"endpoint":"https://gpt-load.example.com/proxy/openai"}`,
		"openai-backup":   `{"id":2,"config":{"blacklist_threshold":1},"proxy_keys":"","upstreams":[{"url":"https://api.openai.com","weight":1}],"param_overrides":null,"header_rules":[],"model_redirect_rules":{}}`,
		"gemini":          `{"id":3,"channel_type":"gemini","config":null,"proxy_keys":"sk-fixture-proxy-gemini-1","test_model":"gemini-2.5-flash"}`,
		"anthropic":       `{"id":4,"config":{"request_timeout":900},"test_model":"claude-3-5-haiku-latest"}`,
		"openai-response": `{"id":5,"validation_endpoint":"/v1/responses","channel_type":"openai-response"}`,
		"openai-pool":     `{"id":6,"group_type":"aggregate","upstreams":[],"test_model":"-","config":{"max_retries":1},"proxy_keys":"sk-fixture-proxy-pool-1"}`,
	}
	for name, want := range checks {
		var w map[string]any
		json.Unmarshal([]byte(want), &w)
		for k, v := range w {
			if !sameJSON(field(t, byName[name], k), jsonString(v)) {
				t.Errorf("%s.%s = %s, gpt-load stored %s", name, k, jsonString(field(t, byName[name], k)), jsonString(v))
			}
		}
	}
	subs := list(t, n.do(http.MethodGet, fmt.Sprint("/api/groups/", pool, "/sub-groups"), nil).data(t))
	if len(subs) != 2 || field(t, subs[0], "weight") != float64(70) || field(t, subs[1], "weight") != float64(30) {
		t.Errorf("sub-groups %s", jsonString(subs))
	}
	// Keys: ids 1-100 in group order, statuses and notes as gpt-load left them.
	counts := map[uint64][2]float64{oa: {16, 4}, bk: {18, 2}, ge: {20, 0}, an: {20, 0}, or: {20, 0}}
	for g, want := range counts {
		st := n.do(http.MethodGet, fmt.Sprint("/api/groups/", g, "/stats"), nil).data(t)
		if field(t, st, "key_stats", "active_keys") != want[0] || field(t, st, "key_stats", "invalid_keys") != want[1] {
			t.Errorf("group %d keys %s", g, jsonString(field(t, st, "key_stats")))
		}
	}
	for _, c := range []struct {
		g            uint64
		value, notes string
		id           uint64
		status       string
	}{
		{oa, "sk-fixture-openai-0001", "primary billing account", 1, "active"},
		{oa, "sk-fixture-openai-0018", "revoked upstream (fixture)", 18, "invalid"},
		{bk, "sk-fixture-openaibk-0020", "", 40, "invalid"},
		{ge, "sk-fixture-gemini-0005", "free tier 备注 ✓", 45, "active"},
		{or, "sk-fixture-openairesp-0020", "", 100, "active"},
	} {
		items := list(t, field(t, n.do(http.MethodGet, fmt.Sprint("/api/keys?group_id=", c.g, "&key_value=", c.value), nil).data(t), "items"))
		if len(items) != 1 || field(t, items[0], "id") != float64(c.id) || field(t, items[0], "notes") != c.notes || field(t, items[0], "status") != c.status {
			t.Errorf("key %s: %s", c.value, jsonString(items))
		}
	}
	s := list(t, n.do(http.MethodGet, "/api/settings", nil).data(t))
	var got []string
	for _, c := range s {
		for _, st := range list(t, field(t, c, "settings")) {
			got = append(got, fmt.Sprint(field(t, st, "key"), "=", field(t, st, "value")))
		}
	}
	for _, w := range []string{"app_url=https://gpt-load.example.com", "proxy_keys=sk-fixture-proxy-global-1,sk-fixture-proxy-global-2",
		"request_log_retention_days=14", "request_timeout=300", "max_retries=5", "blacklist_threshold=4", "key_validation_interval_minutes=120"} {
		if !slices.Contains(got, w) {
			t.Errorf("setting %s missing in %v", w, got)
		}
	}
}
