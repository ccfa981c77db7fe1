package httpapi_test

import (
	"fmt"
	"net/http"
	"testing"
)

// openaiGroup is the richest group of the gpt-load fixture script: every per-group field.
const openaiGroup = `{"name":"openai","display_name":"OpenAI Primary","description":"Fixture: standard OpenAI group with every per-group feature","group_type":"standard","channel_type":"openai",
 "upstreams":[{"url":"https://api.openai.com","weight":3},{"url":"https://openai-mirror.example.com","weight":1}],
 "test_model":"gpt-4o-mini","sort":1,"proxy_keys":"sk-fixture-proxy-openai-1,sk-fixture-proxy-openai-2",
 "config":{"max_retries":2,"blacklist_threshold":2,"request_timeout":120,"key_validation_interval_minutes":30,"enable_request_body_logging":true},
 "header_rules":[{"key":"x-fixture-tag","value":"gpt-load-fixture","action":"set"},{"key":"X-Debug-Client","value":"","action":"remove"}],
 "model_redirect_rules":{"gpt-4o-fixture":"gpt-4o-mini","gpt-fast":"gpt-4.1-mini"},"model_redirect_strict":true,
 "param_overrides":{"temperature":0.2,"max_tokens":512}}`

func TestGroupsContract(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})

	// Create: the group object of API.md 2.1.
	created := n.do(http.MethodPost, "/api/groups", openaiGroup).data(t)
	checkShape(t, "created group", created, groupShape)
	if got := field(t, created, "endpoint"); got != "http://localhost:3001/proxy/openai" {
		t.Errorf("endpoint %v", got)
	}
	if got := field(t, created, "header_rules"); !sameJSON(got, `[{"key":"X-Fixture-Tag","value":"gpt-load-fixture","action":"set"},{"key":"X-Debug-Client","value":"","action":"remove"}]`) {
		t.Errorf("header rules %s", jsonString(got))
	}
	if got := field(t, created, "config"); !sameJSON(got, `{"blacklist_threshold":2,"enable_request_body_logging":true,"key_validation_interval_minutes":30,"max_retries":2,"request_timeout":120}`) {
		t.Errorf("config %s", jsonString(got))
	}
	if got := field(t, created, "param_overrides"); !sameJSON(got, `{"max_tokens":512,"temperature":0.2}`) {
		t.Errorf("param_overrides %s", jsonString(got))
	}
	openaiID := uint64(field(t, created, "id").(float64))

	// An aggregate: upstreams [], test_model "-", defaults for the rest.
	agg := n.do(http.MethodPost, "/api/groups", `{"name":"pool","group_type":"aggregate","channel_type":"openai","display_name":"Pool","proxy_keys":" sk-pool-1 "}`).data(t)
	checkShape(t, "aggregate", agg, groupShape)
	if jsonString(field(t, agg, "upstreams")) != "[]" || field(t, agg, "test_model") != "-" ||
		field(t, agg, "config") != nil || field(t, agg, "param_overrides") != nil ||
		jsonString(field(t, agg, "model_redirect_rules")) != "{}" || field(t, agg, "proxy_keys") != "sk-pool-1" {
		t.Errorf("aggregate defaults: %s", jsonString(agg))
	}
	aggID := uint64(field(t, agg, "id").(float64))
	backupID := n.group("backup", `,"sort":2,"display_name":"Backup"`)

	t.Run("list in display order", func(t *testing.T) {
		got := list(t, n.do(http.MethodGet, "/api/groups", nil).data(t))
		if len(got) != 3 {
			t.Fatalf("%d groups", len(got))
		}
		for _, g := range got {
			checkShape(t, "listed group", g, groupShape)
		}
		// sort ascending, then id descending: pool (0), openai (1), backup (2)
		if order := ids(t, got); fmt.Sprint(order) != fmt.Sprint([]uint64{aggID, openaiID, backupID}) {
			t.Errorf("order %v", order)
		}
		names := list(t, n.do(http.MethodGet, "/api/groups/list", nil).data(t))
		for _, g := range names {
			checkShape(t, "group name", g, shape{"id": "integer", "name": "string", "display_name": "string"})
		}
		if fmt.Sprint(ids(t, names)) != fmt.Sprint([]uint64{openaiID, aggID, backupID}) {
			t.Errorf("groups/list order %v", ids(t, names))
		}
	})

	t.Run("config options", func(t *testing.T) {
		opts := list(t, n.do(http.MethodGet, "/api/groups/config-options", nil).data(t))
		want := []string{"request_timeout", "idle_conn_timeout", "connect_timeout", "max_idle_conns",
			"max_idle_conns_per_host", "response_header_timeout", "proxy_url", "max_retries",
			"blacklist_threshold", "failover_status_codes", "key_validation_interval_minutes",
			"key_validation_concurrency", "key_validation_timeout_seconds", "enable_request_body_logging",
			"retry_empty_response", "prompt_cache_affinity", "upstream_key_rpm", "upstream_key_tpm"}
		if len(opts) != len(want) {
			t.Fatalf("%d options", len(opts))
		}
		for i, o := range opts {
			checkShape(t, "config option", o, shape{"key": "string", "name": "string", "description": "string", "default_value": "number|string|bool"})
			if field(t, o, "key") != want[i] {
				t.Errorf("option %d is %v, want %s", i, field(t, o, "key"), want[i])
			}
		}
		if field(t, opts[0], "default_value") != float64(600) || field(t, opts[13], "default_value") != false {
			t.Errorf("defaults: %s", jsonString(opts))
		}
		zh := list(t, n.do(http.MethodGet, "/api/groups/config-options", nil, "Accept-Language", "zh-CN,zh;q=0.9").data(t))
		if field(t, zh[0], "name") != "请求超时（秒）" {
			t.Errorf("localized name %v", field(t, zh[0], "name"))
		}
	})

	t.Run("reorder", func(t *testing.T) {
		e := n.do(http.MethodPut, "/api/groups/reorder", fmt.Sprintf(`{"items":[{"id":%d,"sort":9},{"id":%d,"sort":8}]}`, openaiID, backupID)).ok(t, nil)
		if e.Message != "Group order saved" || e.Data != nil {
			t.Errorf("reorder answer %+v", e)
		}
		got := ids(t, list(t, n.do(http.MethodGet, "/api/groups", nil).data(t)))
		if fmt.Sprint(got) != fmt.Sprint([]uint64{aggID, backupID, openaiID}) {
			t.Errorf("order after reorder %v", got)
		}
	})

	t.Run("update is partial", func(t *testing.T) {
		g := n.do(http.MethodPut, fmt.Sprint("/api/groups/", openaiID), `{"display_name":"Renamed","group_type":"aggregate","test_model":"","config":null}`).data(t)
		checkShape(t, "updated group", g, groupShape)
		if field(t, g, "display_name") != "Renamed" || field(t, g, "group_type") != "standard" ||
			field(t, g, "test_model") != "gpt-4o-mini" || field(t, g, "config") == nil || field(t, g, "sort") != float64(9) {
			t.Errorf("partial update: %s", jsonString(g))
		}
		g = n.do(http.MethodPut, fmt.Sprint("/api/groups/", openaiID), `{"config":{},"header_rules":[]}`).data(t)
		if field(t, g, "config") != nil || jsonString(field(t, g, "header_rules")) != "[]" {
			t.Errorf("empty values clear: %s", jsonString(g))
		}
		n.do(http.MethodPut, fmt.Sprint("/api/groups/", openaiID), `{"name":"backup"}`).fails(t, http.StatusConflict, "DUPLICATE_RESOURCE")
		n.do(http.MethodPut, "/api/groups/999", `{"sort":1}`).fails(t, http.StatusNotFound, "NOT_FOUND")
		n.do(http.MethodPut, "/api/groups/abc", `{"sort":1}`).fails(t, http.StatusBadRequest, "BAD_REQUEST")
	})

	t.Run("stats", func(t *testing.T) {
		n.addKeys(backupID, "sk-a-0001", "sk-a-0002", "sk-bad-0003")
		st := n.do(http.MethodGet, fmt.Sprint("/api/groups/", backupID, "/stats"), nil).data(t)
		checkShape(t, "stats", st, shape{"key_stats": "object", "stats_24_hour": "object", "stats_7_day": "object", "stats_30_day": "object"})
		checkShape(t, "key stats", field(t, st, "key_stats"), shape{"total_keys": "integer", "active_keys": "integer", "invalid_keys": "integer"})
		for _, w := range []string{"stats_24_hour", "stats_7_day", "stats_30_day"} {
			checkShape(t, w, field(t, st, w), statsShape)
		}
		if field(t, st, "key_stats", "total_keys") != float64(3) || field(t, st, "key_stats", "active_keys") != float64(3) {
			t.Errorf("key stats %s", jsonString(st))
		}
		n.do(http.MethodGet, "/api/groups/999/stats", nil).fails(t, http.StatusNotFound, "NOT_FOUND")
	})

	t.Run("sub-groups", func(t *testing.T) {
		path := fmt.Sprint("/api/groups/", aggID, "/sub-groups")
		n.do(http.MethodPost, path, fmt.Sprintf(`{"sub_groups":[{"group_id":%d,"weight":70},{"group_id":%d,"weight":30}]}`, openaiID, backupID)).ok(t, nil)
		subs := list(t, n.do(http.MethodGet, path, nil).data(t))
		if len(subs) != 2 {
			t.Fatalf("%d sub-groups", len(subs))
		}
		for _, s := range subs {
			checkShape(t, "sub-group", s, shape{"group": "object", "weight": "integer", "total_keys": "integer", "active_keys": "integer", "invalid_keys": "integer"})
			checkShape(t, "sub-group's group", field(t, s, "group"), groupShape)
		}
		if field(t, subs[1], "total_keys") != float64(3) || field(t, subs[1], "weight") != float64(30) {
			t.Errorf("sub-groups %s", jsonString(subs))
		}
		n.do(http.MethodPut, fmt.Sprint(path, "/", backupID, "/weight"), `{"weight":0}`).ok(t, nil)
		parents := list(t, n.do(http.MethodGet, fmt.Sprint("/api/groups/", backupID, "/parent-aggregate-groups"), nil).data(t))
		if len(parents) != 1 {
			t.Fatalf("parents %v", parents)
		}
		checkShape(t, "parent", parents[0], shape{"group_id": "integer", "name": "string", "display_name": "string", "weight": "integer"})
		if field(t, parents[0], "weight") != float64(0) || field(t, parents[0], "name") != "pool" {
			t.Errorf("parent %s", jsonString(parents[0]))
		}
		if got := list(t, n.do(http.MethodGet, fmt.Sprint("/api/groups/", aggID, "/parent-aggregate-groups"), nil).data(t)); len(got) != 0 {
			t.Errorf("an unused group has parents %v", got)
		}
		// Errors of API.md 2.10.
		n.do(http.MethodPost, fmt.Sprint("/api/groups/", openaiID, "/sub-groups"), `{"sub_groups":[{"group_id":1,"weight":1}]}`).fails(t, http.StatusBadRequest, "BAD_REQUEST")
		n.do(http.MethodPost, "/api/groups/999/sub-groups", `{"sub_groups":[]}`).fails(t, http.StatusNotFound, "NOT_FOUND")
		n.do(http.MethodPost, path, fmt.Sprintf(`{"sub_groups":[{"group_id":%d,"weight":1}]}`, backupID)).fails(t, http.StatusBadRequest, "VALIDATION_FAILED")
		n.do(http.MethodPost, path, `{"sub_groups":[{"group_id":999,"weight":1}]}`).fails(t, http.StatusBadRequest, "VALIDATION_FAILED")
		n.do(http.MethodPut, fmt.Sprint(path, "/", backupID, "/weight"), `{"weight":1001}`).fails(t, http.StatusBadRequest, "VALIDATION_FAILED")
		n.do(http.MethodPut, fmt.Sprint(path, "/999/weight"), `{"weight":1}`).fails(t, http.StatusNotFound, "NOT_FOUND")
		n.do(http.MethodPut, fmt.Sprint(path, "/x/weight"), `{"weight":1}`).fails(t, http.StatusBadRequest, "BAD_REQUEST")
		n.do(http.MethodDelete, fmt.Sprint(path, "/", backupID), nil).ok(t, nil)
		n.do(http.MethodDelete, fmt.Sprint(path, "/", backupID), nil).fails(t, http.StatusNotFound, "NOT_FOUND")
		if subs := list(t, n.do(http.MethodGet, path, nil).data(t)); len(subs) != 1 {
			t.Errorf("after delete: %v", subs)
		}
	})

	t.Run("copy", func(t *testing.T) {
		path := fmt.Sprint("/api/groups/", backupID, "/copy")
		n.do(http.MethodPost, path, nil).fails(t, http.StatusBadRequest, "INVALID_JSON")
		n.do(http.MethodPost, path, `{"copy_keys":"some"}`).fails(t, http.StatusBadRequest, "VALIDATION_FAILED")
		n.do(http.MethodPost, "/api/groups/999/copy", `{}`).fails(t, http.StatusNotFound, "NOT_FOUND")
		cp := n.do(http.MethodPost, path, `{}`).data(t)
		checkShape(t, "copy", cp, shape{"group": "object"})
		g := field(t, cp, "group")
		checkShape(t, "copied group", g, groupShape)
		if field(t, g, "name") != "backup_copy" || field(t, g, "display_name") != "Backup Copy" {
			t.Errorf("copy %s", jsonString(g))
		}
		id := uint64(field(t, g, "id").(float64))
		if total := field(t, n.do(http.MethodGet, fmt.Sprint("/api/groups/", id, "/stats"), nil).data(t), "key_stats", "total_keys"); total != float64(3) {
			t.Errorf("copied keys %v", total)
		}
		g = field(t, n.do(http.MethodPost, path, `{"copy_keys":"none"}`).data(t), "group")
		if field(t, g, "name") != "backup_copy_2" {
			t.Errorf("second copy %v", field(t, g, "name"))
		}
	})

	t.Run("delete", func(t *testing.T) {
		n.do(http.MethodDelete, fmt.Sprint("/api/groups/", openaiID), nil).ok(t, nil)
		n.do(http.MethodDelete, fmt.Sprint("/api/groups/", openaiID), nil).fails(t, http.StatusNotFound, "NOT_FOUND")
		if subs := list(t, n.do(http.MethodGet, fmt.Sprint("/api/groups/", aggID, "/sub-groups"), nil).data(t)); len(subs) != 0 {
			t.Errorf("links of a deleted group stay: %v", subs)
		}
	})
}
