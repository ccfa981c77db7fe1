package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestAuditTrail(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	a := n.group("a", `,"proxy_keys":"sk-secret-proxy-aaaa","header_rules":[{"key":"Authorization","value":"Bearer sk-header-secret-zzzz","action":"set"}],"upstreams":[{"url":"https://user:pass@up.example.com","weight":1}]`)
	b := n.group("b")
	n.do(http.MethodPost, "/api/keys/add-multiple", keysBody(a, "sk-upstream-secret-0001 sk-upstream-secret-0002")).ok(t, nil)
	n.do(http.MethodPost, "/api/keys/add-multiple", keysBody(b, "sk-upstream-secret-0003")).ok(t, nil)
	n.do(http.MethodPut, fmt.Sprint("/api/groups/", a), `{"display_name":"Group A","proxy_keys":"sk-secret-proxy-bbbb"}`).ok(t, nil)
	n.do(http.MethodPut, "/api/settings", `{"proxy_keys":"sk-secret-global-cccc","max_retries":4}`).ok(t, nil)
	n.do(http.MethodPost, "/api/keys/delete-multiple", keysBody(a, "sk-upstream-secret-0001")).ok(t, nil)

	d := n.do(http.MethodGet, "/api/audit?page_size=100", nil).data(t)
	body := jsonString(d)
	for _, secret := range []string{"sk-secret-proxy-aaaa", "sk-secret-proxy-bbbb", "sk-secret-global-cccc", "sk-header-secret-zzzz",
		"sk-upstream-secret-0001", "sk-upstream-secret-0002", "sk-upstream-secret-0003", "user:pass", "sk-global-proxy-key"} {
		if strings.Contains(body, secret) {
			t.Errorf("the audit trail shows %q", secret)
		}
	}
	items := list(t, field(t, d, "items"))
	// seeded settings, 2 groups, 2 key adds, group update, settings, delete
	if len(items) != 8 || field(t, d, "pagination", "total_items") != float64(8) {
		t.Fatalf("%d items: %s", len(items), body)
	}
	for _, it := range items {
		checkShape(t, "audit item", it, shape{"seq": "integer", "id": "string", "time": "time", "type": "string",
			"actor": "string", "node": "string", "group_ids": "array", "details": "object"})
		if field(t, it, "actor") != "admin" && field(t, it, "type") != "settings.changed" || field(t, it, "node") != "test-node" {
			t.Errorf("who: %s", jsonString(it))
		}
	}
	var types []string
	for _, it := range items {
		types = append(types, field(t, it, "type").(string))
	}
	if strings.Join(types, ",") != "keys.removed,settings.changed,group.updated,keys.added,keys.added,group.created,group.created,settings.changed" {
		t.Errorf("newest first: %v", types)
	}
	if !sameJSON(field(t, items[1], "details"), `{"changed":["proxy_keys","max_retries"],"values":{"proxy_keys":"sk-s****cccc","max_retries":4}}`) {
		t.Errorf("settings change %s", jsonString(field(t, items[1], "details")))
	}
	upd := field(t, items[2], "details")
	if !sameJSON(field(t, upd, "values"), `{"display_name":"Group A","proxy_keys":"sk-s****bbbb"}`) || !sameJSON(field(t, upd, "changed"), `["display_name","proxy_keys"]`) {
		t.Errorf("group update %s", jsonString(upd))
	}
	if added := field(t, items[4], "details"); !sameJSON(added, `{"count":2,"keys":["sk-u****0001","sk-u****0002"]}`) {
		t.Errorf("keys added %s", jsonString(added))
	}
	created := field(t, items[6], "details", "group")
	if field(t, created, "proxy_keys") != "sk-s****aaaa" || !sameJSON(field(t, created, "upstreams"), `[{"url":"https://****@up.example.com","weight":1}]`) {
		t.Errorf("group created %s", jsonString(created))
	}

	// Filters.
	byGroup := n.do(http.MethodGet, fmt.Sprint("/api/audit?group_id=", b), nil).data(t)
	if field(t, byGroup, "pagination", "total_items") != float64(2) {
		t.Errorf("group b: %s", jsonString(byGroup))
	}
	byType := n.do(http.MethodGet, "/api/audit?type=keys.added,group.updated&page_size=2&page=2", nil).data(t)
	if !sameJSON(field(t, byType, "pagination"), `{"page":2,"page_size":2,"total_items":3,"total_pages":2}`) ||
		field(t, list(t, field(t, byType, "items"))[0], "type") != "keys.added" {
		t.Errorf("by type, page 2: %s", jsonString(byType))
	}
	both := n.do(http.MethodGet, fmt.Sprint("/api/audit?type=keys.added,group.updated&group_id=", a), nil).data(t)
	if field(t, both, "pagination", "total_items") != float64(2) {
		t.Errorf("by group and type: %s", jsonString(both))
	}
	e := n.do(http.MethodGet, "/api/audit?type=no.such", nil).fails(t, http.StatusBadRequest, "VALIDATION_FAILED")
	if len(e.Fields) != 1 || e.Fields[0].Field != "type" {
		t.Errorf("unknown type names %v", e.Fields)
	}
	n.do(http.MethodGet, "/api/audit?group_id=x", nil).fails(t, http.StatusBadRequest, "BAD_REQUEST")
}
