package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"gpt-load/domain"
)

func TestAuth(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	for _, c := range []struct {
		name   string
		path   string
		header []string
		want   int
	}{
		{"none", "/api/groups", nil, http.StatusUnauthorized},
		{"wrong bearer", "/api/groups", []string{"Authorization", "Bearer nope"}, http.StatusUnauthorized},
		{"lower-case bearer", "/api/groups", []string{"Authorization", "bearer " + testAuthKey}, http.StatusUnauthorized},
		{"bearer", "/api/groups", []string{"Authorization", "Bearer " + testAuthKey}, http.StatusOK},
		{"query", "/api/groups?key=" + testAuthKey, nil, http.StatusOK},
		{"query wins", "/api/groups?key=nope", []string{"Authorization", "Bearer " + testAuthKey}, http.StatusUnauthorized},
		{"x-api-key", "/api/groups", []string{"X-Api-Key", testAuthKey}, http.StatusOK},
		{"x-goog-api-key", "/api/groups", []string{"X-Goog-Api-Key", testAuthKey}, http.StatusOK},
		{"openapi needs the key", "/api/openapi.json", nil, http.StatusUnauthorized},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := n.send(http.MethodGet, c.path, nil, c.header...)
			if r.code != c.want {
				t.Fatalf("%d %s", r.code, r.body)
			}
			if c.want == http.StatusUnauthorized {
				if e := r.fails(t, http.StatusUnauthorized, "UNAUTHORIZED"); e.Message != "Authentication failed" {
					t.Errorf("message %q", e.Message)
				}
			}
		})
	}
	// Unknown /api routes are 404 with or without the key (API.md 0.1).
	for _, r := range []*response{n.send(http.MethodGet, "/api/nothing", nil), n.do(http.MethodGet, "/api/nothing", nil),
		n.do(http.MethodPatch, "/api/groups", nil), n.do(http.MethodGet, "/proxy/g/v1/chat", nil)} {
		if r.code != http.StatusNotFound || string(r.body) != "{\"error\":\"Not Found\"}\n" {
			t.Errorf("unknown route: %d %s", r.code, r.body)
		}
	}
	t.Run("login", func(t *testing.T) {
		for _, c := range []struct {
			body string
			lang string
			code int
			want string
		}{
			{`{"auth_key":"` + testAuthKey + `"}`, "", http.StatusOK, `{"success":true,"message":"Authentication successful"}`},
			{`{"auth_key":"nope"}`, "", http.StatusUnauthorized, `{"success":false,"message":"Authentication failed"}`},
			{`{"auth_key":"nope"}`, "zh-CN", http.StatusUnauthorized, `{"success":false,"message":"认证失败"}`},
			{`{"auth_key":""}`, "", http.StatusBadRequest, `{"success":false,"message":"Invalid request: auth_key is required"}`},
			{`not json`, "", http.StatusBadRequest, `{"success":false,"message":"Invalid request: auth_key is required"}`},
		} {
			r := n.send(http.MethodPost, "/api/auth/login", c.body, "Accept-Language", c.lang)
			if r.code != c.code || !sameJSON(jsonAny(t, r.body), c.want) {
				t.Errorf("login %s: %d %s", c.body, r.code, r.body)
			}
		}
	})
	t.Run("no admin key configured", func(t *testing.T) {
		t.Parallel()
		empty := ""
		m := startNode(t, nodeOpts{authKey: &empty})
		if r := m.send(http.MethodGet, "/api/groups?key=", nil); r.code != http.StatusUnauthorized {
			t.Errorf("empty AUTH_KEY lets an empty key in: %d", r.code)
		}
	})
}

func TestLocalization(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	for _, c := range []struct{ lang, want string }{
		{"", "Group order saved"},
		{"en-US,en;q=0.9", "Group order saved"},
		{"fr", "Group order saved"},
		{"zh-CN,zh;q=0.9", "分组排序已保存"},
		{"zh-TW", "分组排序已保存"},
		{"ja-JP", "グループの並び順を保存しました"},
		{"en;q=1, zh", "Group order saved"},
	} {
		gid := n.group(fmt.Sprint("l", len(c.lang)+strings.Count(c.lang, ";")*100+int(c.want[0])))
		e := n.do(http.MethodPut, "/api/groups/reorder", fmt.Sprintf(`{"items":[{"id":%d,"sort":1}]}`, gid), "Accept-Language", c.lang).ok(t, nil)
		if e.Message != c.want {
			t.Errorf("Accept-Language %q: %q", c.lang, e.Message)
		}
	}
	e := n.do(http.MethodGet, "/api/groups/999/stats", nil, "Accept-Language", "ja").fails(t, http.StatusNotFound, "NOT_FOUND")
	if e.Message != "グループが見つかりません" {
		t.Errorf("localized error %q", e.Message)
	}
}

func TestSettingsContract(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	cats := list(t, n.do(http.MethodGet, "/api/settings", nil).data(t))
	if len(cats) != 3 {
		t.Fatalf("%d categories", len(cats))
	}
	wantCats := []string{"Basic", "Request", "Key"}
	count := 0
	for i, c := range cats {
		checkShape(t, "category", c, shape{"category_name": "string", "settings": "array"})
		if field(t, c, "category_name") != wantCats[i] {
			t.Errorf("category %d: %v", i, field(t, c, "category_name"))
		}
		for _, s := range list(t, field(t, c, "settings")) {
			count++
			checkShape(t, "setting", s, shape{"key": "string", "name": "string", "value": "string|integer|bool",
				"type": "string", "default_value": "string", "description": "string", "category": "string",
				"min_value": "?integer", "max_value": "?integer", "required": "bool"})
		}
	}
	if count != 22 { // API.md 4.1's 18, and our retry_empty_response, prompt_cache_affinity, upstream_key_rpm, upstream_key_tpm
		t.Errorf("%d settings", count)
	}
	first := list(t, field(t, cats[0], "settings"))[0]
	if !sameJSON(first, `{"key":"app_url","name":"Application URL","value":"http://localhost:3001","type":"string","default_value":"http://localhost:3001",
		"description":"Public base URL of this service, e.g. https://gpt-load.example.com. Group endpoints shown in the UI are built from it.","category":"Basic","required":true}`) {
		t.Errorf("app_url %s", jsonString(first))
	}
	retention := list(t, field(t, cats[0], "settings"))[2]
	if field(t, retention, "min_value") != float64(0) || field(t, retention, "value") != float64(7) || field(t, retention, "default_value") != "7" {
		t.Errorf("retention %s", jsonString(retention))
	}
	zh := list(t, n.do(http.MethodGet, "/api/settings", nil, "Accept-Language", "zh").data(t))
	if field(t, zh[0], "category_name") != "基础参数" || field(t, list(t, field(t, zh[0], "settings"))[0], "name") != "项目地址" {
		t.Errorf("zh settings %s", jsonString(zh[0]))
	}

	// The fixture's change: all fields, proxy keys normalized.
	e := n.do(http.MethodPut, "/api/settings", `{"app_url":"https://gpt-load.example.com","request_log_retention_days":14,"max_retries":5,"blacklist_threshold":4,"proxy_keys":"sk-fixture-proxy-global-1, sk-fixture-proxy-global-2","key_validation_interval_minutes":120,"request_timeout":300}`).ok(t, nil)
	if e.Message != "Settings updated" || e.Data != nil {
		t.Errorf("put %+v", e)
	}
	s := n.proj.View().Settings
	if s.AppURL != "https://gpt-load.example.com" || s.ProxyKeys != "sk-fixture-proxy-global-1,sk-fixture-proxy-global-2" || s.MaxRetries != 5 || s.RequestTimeout != 300 {
		t.Errorf("settings now %+v", s)
	}
	n.do(http.MethodPut, "/api/settings", `{}`).ok(t, nil)
	// A group endpoint follows app_url.
	gid := n.group("after")
	g := list(t, n.do(http.MethodGet, "/api/groups", nil).data(t))[0]
	if field(t, g, "endpoint") != "https://gpt-load.example.com/proxy/after" || uint64(field(t, g, "id").(float64)) != gid {
		t.Errorf("endpoint %v", field(t, g, "endpoint"))
	}

	// All or nothing, every bad field named.
	before := n.encoded()
	e = n.do(http.MethodPut, "/api/settings", `{"max_retries":-1,"request_timeout":"600","nope":1,"app_url":"https://ok.example.com","failover_status_codes":"99"}`).
		fails(t, http.StatusBadRequest, "VALIDATION_ERROR")
	mustContain(t, "message", e.Message, "max_retries", "request_timeout", "nope", "failover_status_codes")
	var named []string
	for _, f := range e.Fields {
		named = append(named, f.Field)
	}
	if strings.Join(named, ",") != "failover_status_codes,max_retries,nope,request_timeout" {
		t.Errorf("fields %v", named)
	}
	if string(n.encoded()) != string(before) {
		t.Error("a refused settings change changed the state")
	}
	n.do(http.MethodPut, "/api/settings", `[1]`).fails(t, http.StatusBadRequest, "INVALID_JSON")
	n.do(http.MethodPut, "/api/settings", `null`).fails(t, http.StatusBadRequest, "INVALID_JSON")
}

func TestDashboard(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	gid := n.group("g", `,"proxy_keys":"short,Adequately-Long-Proxy-Key-With-Digits-0123"`)
	n.addKeys(gid, "sk-key-00000001", "sk-key-00000002", "sk-bad-00000003")
	id := n.keyID(gid, "sk-bad-00000003")
	n.do(http.MethodPost, "/api/keys/validate-group", fmt.Sprintf(`{"group_id":%d}`, gid)).ok(t, nil)
	n.waitTask(10 * time.Second)
	n.do(http.MethodPost, "/api/keys/validate-group", fmt.Sprintf(`{"group_id":%d}`, gid)).ok(t, nil)
	n.waitTask(10 * time.Second)
	n.do(http.MethodPost, "/api/keys/validate-group", fmt.Sprintf(`{"group_id":%d}`, gid)).ok(t, nil)
	n.waitTask(10 * time.Second)
	if k, _ := n.key(gid, "sk-bad-00000003"); k.Status != domain.KeyInvalid || k.ID != id {
		t.Fatalf("key not blacklisted: %+v", k)
	}

	d := n.do(http.MethodGet, "/api/dashboard/stats", nil).data(t)
	checkShape(t, "stats", d, shape{"key_count": "object", "rpm": "object", "request_count": "object", "error_rate": "object", "token_count": "object", "security_warnings": "array"})
	checkShape(t, "key_count", field(t, d, "key_count"), shape{"value": "number", "sub_value": "?integer", "sub_value_tip": "?string", "trend": "number", "trend_is_growth": "bool"})
	if !sameJSON(field(t, d, "key_count"), `{"value":2,"sub_value":1,"sub_value_tip":"Invalid keys","trend":0,"trend_is_growth":false}`) {
		t.Errorf("key_count %s", jsonString(field(t, d, "key_count")))
	}
	// rpm, request_count, error_rate and token_count come from request logs, which this
	// test does not make: only their shape is the contract here (logs_test.go checks the
	// values).
	for _, c := range []string{"rpm", "request_count", "error_rate", "token_count"} {
		checkShape(t, c, field(t, d, c), shape{"value": "number", "sub_value": "?integer", "sub_value_tip": "?string", "trend": "number", "trend_is_growth": "bool"})
	}
	// The key count follows the keys: one more active key shows at once.
	n.addKeys(gid, "sk-key-00000004")
	d = n.do(http.MethodGet, "/api/dashboard/stats", nil).data(t)
	if v := field(t, field(t, d, "key_count"), "value"); v != float64(3) {
		t.Errorf("key_count value %v after adding a key, want 3", v)
	}
	var types []string
	for _, w := range list(t, field(t, d, "security_warnings")) {
		checkShape(t, "warning", w, shape{"type": "string", "message": "string", "severity": "string", "suggestion": "string"})
		types = append(types, fmt.Sprint(field(t, w, "type"), "/", field(t, w, "severity")))
	}
	// AUTH_KEY contains common words; the global key is short, contains "key" and has two
	// kinds of characters; the group's first key is too short, its second contains "key".
	want := "AUTH_KEY/high,ENCRYPTION_KEY/high," +
		"Global Proxy Key #1/medium,Global Proxy Key #1/high,Global Proxy Key #1/medium," +
		"Group Proxy Key [g] #1/high,Group Proxy Key [g] #2/high"
	if strings.Join(types, ",") != want {
		t.Errorf("warnings %v", types)
	}

	enc := n.do(http.MethodGet, "/api/dashboard/encryption-status", nil).data(t)
	checkShape(t, "encryption", enc, shape{"has_mismatch": "bool", "scenario_type": "string", "message": "string", "suggestion": "string"})
	if !sameJSON(enc, `{"has_mismatch":false,"scenario_type":"","message":"","suggestion":""}`) {
		t.Errorf("encryption status %s", jsonString(enc))
	}
}

func TestEncryptionStatus(t *testing.T) {
	t.Parallel()
	const key1, key2 = "Encryption-Key-For-Tests-0123456789", "Another-Encryption-Key-9876543210"
	for _, c := range []struct {
		name       string
		stored     string  // the key the keys were written with
		configured *string // the key the node runs with now
		want       string
	}{
		{"both off", "", nil, ""},
		{"both on", key1, nil, ""},
		{"keys in clear, key set now", "", str(key1), "data_not_encrypted"},
		{"keys encrypted, no key now", key1, str(""), "key_not_configured"},
		{"another key", key1, str(key2), "key_mismatch"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			n := startNode(t, nodeOpts{password: c.stored, apiPassword: c.configured})
			gid := n.group("g")
			n.addKeys(gid, "sk-1", "sk-2")
			enc := n.do(http.MethodGet, "/api/dashboard/encryption-status", nil).data(t)
			if field(t, enc, "scenario_type") != c.want || field(t, enc, "has_mismatch") != (c.want != "") ||
				(c.want != "") == (field(t, enc, "message") == "" || field(t, enc, "suggestion") == "") {
				t.Errorf("status %s", jsonString(enc))
			}
			d := n.do(http.MethodGet, "/api/dashboard/stats", nil).data(t)
			set := c.stored != "" && c.configured == nil || c.configured != nil && *c.configured != ""
			if warned := strings.Contains(jsonString(field(t, d, "security_warnings")), `"ENCRYPTION_KEY"`); warned == set {
				t.Errorf("ENCRYPTION_KEY warning %v with the key set %v", warned, set)
			}
		})
	}
}

func TestIntegrationInfo(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	n.group("a", `,"sort":2,"display_name":"A","proxy_keys":"sk-a, sk-shared"`)
	n.group("b", `,"sort":1,"proxy_keys":"sk-shared","validation_endpoint":"/v1/custom?x=1"`)
	n.do(http.MethodPost, "/api/groups", `{"name":"c","channel_type":"gemini","test_model":"m","upstreams":[{"url":"https://g.example","weight":1}],"validation_endpoint":"/v1/other"}`).ok(t, nil)

	get := func(path string) *response { return n.send(http.MethodGet, path, nil) }
	all := get("/api/integration/info?key=sk-global-proxy-key").data(t)
	for _, g := range list(t, all) {
		checkShape(t, "integration", g, shape{"name": "string", "display_name": "string", "channel_type": "string", "path": "string"})
	}
	if !sameJSON(all, `[{"name":"c","display_name":"","channel_type":"gemini","path":"/proxy/c"},
		{"name":"b","display_name":"","channel_type":"custom","path":"/proxy/b/v1/custom?x=1"},
		{"name":"a","display_name":"A","channel_type":"openai","path":"/proxy/a"}]`) {
		t.Errorf("global key %s", jsonString(all))
	}
	if got := get("/api/integration/info?key=sk-a").data(t); !sameJSON(got, `[{"name":"a","display_name":"A","channel_type":"openai","path":"/proxy/a"}]`) {
		t.Errorf("group key %s", jsonString(got))
	}
	if got := get("/api/integration/info?key=sk-shared").data(t); len(list(t, got)) != 2 {
		t.Errorf("shared key %s", jsonString(got))
	}
	get("/api/integration/info").fails(t, http.StatusBadRequest, "VALIDATION_FAILED")
	get("/api/integration/info?key=nope").fails(t, http.StatusBadRequest, "VALIDATION_FAILED")

	if got := get("/proxy/b/api/integration/info?key=sk-shared").data(t); !sameJSON(got, `[{"name":"b","display_name":"","channel_type":"custom","path":"/v1/custom?x=1"}]`) {
		t.Errorf("group form %s", jsonString(got))
	}
	if got := n.send(http.MethodPost, "/proxy/a/api/integration/info?key=sk-a", nil).data(t); !sameJSON(got, `[{"name":"a","display_name":"A","channel_type":"openai","path":""}]`) {
		t.Errorf("group form, POST %s", jsonString(got))
	}
	get("/proxy/a/api/integration/info").fails(t, http.StatusBadRequest, "VALIDATION_FAILED")
	n.send(http.MethodGet, "/proxy/a/api/integration/info", nil, "Authorization", "Bearer sk-a").fails(t, http.StatusBadRequest, "VALIDATION_FAILED")
	get("/proxy/zz/api/integration/info?key=sk-a").fails(t, http.StatusNotFound, "NOT_FOUND")
	get("/proxy/b/api/integration/info?key=sk-a").fails(t, http.StatusBadRequest, "VALIDATION_FAILED")

	if got := n.do(http.MethodGet, "/api/channel-types", nil).data(t); !sameJSON(got, `["openai","openai-response","gemini","anthropic","azure-openai"]`) {
		t.Errorf("channel types %s", jsonString(got))
	}
}

func TestStartingNode(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{notReady: true})
	for _, path := range []string{"/api/groups", "/api/integration/info?key=k", "/proxy/g/api/integration/info?key=k"} {
		e := n.do(http.MethodGet, path, nil).fails(t, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE")
		if !strings.Contains(e.Message, "starting") {
			t.Errorf("%s: %q", path, e.Message)
		}
	}
	if r := n.send(http.MethodGet, "/health", nil); r.code != http.StatusServiceUnavailable {
		t.Errorf("health %d", r.code)
	}
}

func TestProxyMount(t *testing.T) {
	t.Parallel()
	var proxied []string
	proxy := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied = append(proxied, r.Method+" "+r.URL.Path)
		w.WriteHeader(http.StatusTeapot)
	})
	n := startNode(t, nodeOpts{proxy: proxy})
	n.group("g", `,"proxy_keys":"sk-g"`)
	if r := n.send(http.MethodPost, "/proxy/g/v1/chat/completions", "{}"); r.code != http.StatusTeapot {
		t.Errorf("proxied request answered %d", r.code)
	}
	n.send(http.MethodGet, "/proxy/g/api/integration/info?key=sk-g", nil).ok(t, nil)
	if r := n.send(http.MethodGet, "/proxy/g", nil); r.code != http.StatusNotFound {
		t.Errorf("/proxy/g answered %d", r.code)
	}
	if fmt.Sprint(proxied) != "[POST /proxy/g/v1/chat/completions]" {
		t.Errorf("the proxy saw %v", proxied)
	}
}
