package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"gpt-load/domain"
)

// TestBadInputChangesNothing sends bad input to every route that changes something: each
// answer is a 4xx naming the culprit, and the state is exactly as before.
func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	g := n.group("g")
	other := n.group("other")
	agg := uint64(0)
	{
		var a struct {
			ID uint64 `json:"id"`
		}
		n.do(http.MethodPost, "/api/groups", `{"name":"agg","group_type":"aggregate","channel_type":"openai"}`).ok(t, &a)
		agg = a.ID
	}
	n.addKeys(g, "sk-key-0001", "sk-key-0002")
	key := n.keyID(g, "sk-key-0001")
	tooMany := strings.Repeat("k ", 5001)
	longKey := strings.Repeat("x", domain.MaxKeyBytes+1)
	maxKey := fmt.Sprint(domain.MaxKeyBytes)
	std := `"channel_type":"openai","test_model":"m","upstreams":[{"url":"https://u.example","weight":1}]`

	for _, c := range []struct {
		method, path, body string
		status             int
		code               string
		names              string // comma-separated: each must be named in the fields or the message
	}{
		// groups
		{"POST", "/api/groups", `not json`, 400, "INVALID_JSON", ""},
		{"POST", "/api/groups", `[]`, 400, "INVALID_JSON", ""},
		{"POST", "/api/groups", `{"name":"x"} {}`, 400, "INVALID_JSON", ""},
		{"POST", "/api/groups", `{}`, 400, "VALIDATION_FAILED", "name,channel_type,test_model,upstreams"},
		{"POST", "/api/groups", `{"name":5}`, 400, "INVALID_JSON", "name"},
		{"POST", "/api/groups", `{"name":"Bad Name",` + std + `}`, 400, "VALIDATION_FAILED", "name"},
		{"POST", "/api/groups", `{"name":"n","channel_type":"openai","test_model":"m","upstreams":[{"url":"ftp://u","weight":1},{"url":"https://v","weight":1.5}]}`, 400, "VALIDATION_FAILED", "upstreams[0].url,upstreams[1].weight"},
		{"POST", "/api/groups", `{"name":"n",` + std + `,"config":{"max_retries":-1,"nope":1}}`, 400, "VALIDATION_FAILED", "config.max_retries,config.nope"},
		{"POST", "/api/groups", `{"name":"n",` + std + `,"header_rules":[{"key":"x-a","value":"1","action":"set"},{"key":"X-A","value":"2","action":"set"}]}`, 400, "VALIDATION_FAILED", "header_rules[1].key"},
		{"POST", "/api/groups", `{"name":"n",` + std + `,"validation_endpoint":"https://x/v1"}`, 400, "VALIDATION_FAILED", "validation_endpoint"},
		{"POST", "/api/groups", `{"name":"n","group_type":"aggregate","channel_type":"openai","model_redirect_rules":{"a":"b"}}`, 400, "VALIDATION_FAILED", "model_redirect_rules"},
		{"POST", "/api/groups", `{"name":"n","group_type":"mixed",` + std + `}`, 400, "VALIDATION_FAILED", "group_type"},
		{"POST", "/api/groups", `{"name":"n","channel_type":"cohere","test_model":"m","upstreams":[{"url":"https://u","weight":1}]}`, 400, "VALIDATION_FAILED", "channel_type"},
		{"POST", "/api/groups", `{"name":"n",` + std + `,"param_overrides":[1]}`, 400, "VALIDATION_FAILED", "param_overrides"},
		{"POST", "/api/groups", `{"name":"g",` + std + `}`, 409, "DUPLICATE_RESOURCE", "g"},
		{"PUT", fmt.Sprint("/api/groups/", g), `{"upstreams":null}`, 400, "VALIDATION_FAILED", "upstreams"},
		{"PUT", fmt.Sprint("/api/groups/", g), `{"test_model":"  "}`, 400, "VALIDATION_FAILED", "test_model"},
		{"PUT", fmt.Sprint("/api/groups/", g), `{"sort":"x"}`, 400, "INVALID_JSON", "sort"},
		{"PUT", fmt.Sprint("/api/groups/", g), `{"display_name":"` + strings.Repeat("d", 256) + `"}`, 400, "VALIDATION_FAILED", "display_name"},
		{"PUT", fmt.Sprint("/api/groups/", g), `{"name":"other"}`, 409, "DUPLICATE_RESOURCE", "other"},
		{"PUT", fmt.Sprint("/api/groups/", g), ``, 400, "INVALID_JSON", ""},
		{"PUT", "/api/groups/0", `{}`, 400, "BAD_REQUEST", ""},
		{"PUT", "/api/groups/reorder", `{"items":[]}`, 400, "INVALID_JSON", "items"},
		{"PUT", "/api/groups/reorder", `{"items":[{"sort":1}]}`, 400, "INVALID_JSON", "items[0].id"},
		{"PUT", "/api/groups/reorder", fmt.Sprintf(`{"items":[{"id":%d,"sort":3},{"id":999,"sort":1}]}`, g), 400, "VALIDATION_FAILED", "items[1].id"},
		{"DELETE", "/api/groups/999", ``, 404, "NOT_FOUND", ""},
		{"DELETE", "/api/groups/-1", ``, 400, "BAD_REQUEST", ""},
		{"POST", fmt.Sprint("/api/groups/", g, "/copy"), `{"copy_keys":"x"}`, 400, "VALIDATION_FAILED", "copy_keys"},
		{"POST", fmt.Sprint("/api/groups/", g, "/copy"), `{"copy_keys":1}`, 400, "INVALID_JSON", "copy_keys"},
		{"POST", fmt.Sprint("/api/groups/", agg, "/sub-groups"), `{}`, 400, "INVALID_JSON", "sub_groups"},
		{"POST", fmt.Sprint("/api/groups/", agg, "/sub-groups"), fmt.Sprintf(`{"sub_groups":[{"group_id":%d,"weight":-1}]}`, g), 400, "VALIDATION_FAILED", "sub_groups[0].weight"},
		{"POST", fmt.Sprint("/api/groups/", agg, "/sub-groups"), fmt.Sprintf(`{"sub_groups":[{"group_id":%d,"weight":1},{"group_id":%d,"weight":1}]}`, g, g), 400, "VALIDATION_FAILED", "sub_groups[1].group_id"},
		{"POST", fmt.Sprint("/api/groups/", agg, "/sub-groups"), fmt.Sprintf(`{"sub_groups":[{"group_id":%d,"weight":1}]}`, agg), 400, "VALIDATION_FAILED", "sub_groups[0].group_id"},
		{"PUT", fmt.Sprint("/api/groups/", agg, "/sub-groups/", g, "/weight"), `{}`, 400, "INVALID_JSON", "weight"},
		// strict JSON: a key given twice (encoding/json would keep the last), or unknown
		{"POST", "/api/groups", `{"name":"n1","name":"n2",` + std + `}`, 400, "INVALID_JSON", "name"},
		{"POST", "/api/groups", `{"name":"n1","NAME":"n2",` + std + `}`, 400, "INVALID_JSON", "NAME"},
		{"POST", "/api/groups", `{"name":"n",` + std + `,"config":{"max_retries":1,"max_retries":2}}`, 400, "INVALID_JSON", "config.max_retries"},
		{"POST", "/api/groups", `{"name":"n",` + std + `,"param_overrides":{"t":1,"t":2}}`, 400, "INVALID_JSON", "param_overrides.t"},
		{"POST", "/api/groups", `{"name":"n",` + std + `,"proxy_key":"sk-typo"}`, 400, "INVALID_JSON", "proxy_key"},
		{"PUT", fmt.Sprint("/api/groups/", g), `{"upstreams":[{"url":"https://a.example","weight":1,"weight":2}]}`, 400, "INVALID_JSON", "upstreams[0].weight"},
		{"PUT", "/api/groups/reorder", fmt.Sprintf(`{"items":[{"id":%d,"sort":1,"sort":2}]}`, g), 400, "INVALID_JSON", "items[0].sort"},
		{"PUT", "/api/groups/reorder", fmt.Sprintf(`{"items":[{"id":%d,"order":1}]}`, g), 400, "INVALID_JSON", "items[0].order"},
		{"POST", "/api/keys/add-multiple", fmt.Sprintf(`{"group_id":%d,"keys_text":"sk-a","keys_text":"sk-b"}`, g), 400, "INVALID_JSON", "keys_text"},
		{"POST", "/api/keys/validate-group", fmt.Sprintf(`{"group_id":%d,"keys_text":"sk-a"}`, g), 400, "INVALID_JSON", "keys_text"},
		{"PUT", "/api/settings", `{"max_retries":3,"max_retries":4}`, 400, "INVALID_JSON", "max_retries"},
		// keys
		{"POST", "/api/keys/add-multiple", `{"keys_text":"a"}`, 400, "INVALID_JSON", "group_id"},
		{"POST", "/api/keys/add-multiple", fmt.Sprintf(`{"group_id":%d}`, g), 400, "INVALID_JSON", "keys_text"},
		{"POST", "/api/keys/add-multiple", `{"group_id":"1","keys_text":"a"}`, 400, "INVALID_JSON", "group_id"},
		{"POST", "/api/keys/add-multiple", `{"group_id":-1,"keys_text":"a"}`, 400, "INVALID_JSON", "group_id"},
		{"POST", "/api/keys/add-multiple", keysBody(g, " \n\t "), 400, "VALIDATION_FAILED", "keys_text"},
		{"POST", "/api/keys/add-multiple", keysBody(g, ",;,"), 400, "VALIDATION_FAILED", "keys_text"},
		{"POST", "/api/keys/add-multiple", keysBody(g, tooMany), 400, "VALIDATION_FAILED", "keys_text,5000,5001,/api/keys/add-async"},
		{"POST", "/api/keys/add-multiple", keysBody(g, "sk-ok "+longKey), 400, "VALIDATION_FAILED", "keys_text,entry 2," + maxKey},
		{"POST", "/api/keys/test-multiple", keysBody(g, longKey), 400, "VALIDATION_FAILED", "keys_text," + maxKey},
		{"POST", "/api/keys/add-multiple", keysBody(999, "a"), 404, "NOT_FOUND", ""},
		{"POST", "/api/keys/add-multiple", keysBody(agg, "sk-1"), 400, "VALIDATION_FAILED", "aggregate"},
		{"POST", "/api/keys/delete-multiple", keysBody(g, tooMany), 400, "VALIDATION_FAILED", "keys_text,/api/keys/delete-async"},
		{"POST", "/api/keys/restore-multiple", keysBody(g, " "), 400, "VALIDATION_FAILED", "keys_text"},
		{"POST", "/api/keys/test-multiple", keysBody(999, "a"), 404, "NOT_FOUND", ""},
		{"POST", "/api/keys/add-async", keysBody(g, longKey), 400, "VALIDATION_FAILED", "keys_text," + maxKey},
		{"POST", "/api/keys/add-async", `{"group_id":1,"keys_text":5}`, 400, "INVALID_JSON", "keys_text"},
		{"POST", "/api/keys/delete-async", keysBody(999, "a"), 404, "NOT_FOUND", ""},
		{"POST", "/api/keys/restore-all-invalid", `{}`, 400, "INVALID_JSON", "group_id"},
		{"POST", "/api/keys/clear-all-invalid", `{"group_id":999}`, 404, "NOT_FOUND", ""},
		{"POST", "/api/keys/clear-all", `{"group_id":true}`, 400, "INVALID_JSON", "group_id"},
		{"POST", "/api/keys/clear-all", fmt.Sprintf(`{"group_id":%d}`, agg), 400, "VALIDATION_FAILED", "aggregate"},
		{"POST", "/api/keys/validate-group", fmt.Sprintf(`{"group_id":%d,"status":"x"}`, g), 400, "VALIDATION_FAILED", "status"},
		{"POST", "/api/keys/validate-group", fmt.Sprintf(`{"group_id":%d}`, agg), 400, "VALIDATION_FAILED", "group_id"},
		{"POST", "/api/keys/disable-multiple", fmt.Sprintf(`{"group_id":%d,"key_ids":[]}`, g), 400, "INVALID_JSON", "key_ids"},
		{"POST", "/api/keys/disable-multiple", fmt.Sprintf(`{"group_id":%d,"key_ids":[0]}`, g), 400, "VALIDATION_FAILED", "key_ids[0]"},
		{"POST", "/api/keys/disable-multiple", fmt.Sprintf(`{"group_id":%d,"key_ids":["a"]}`, g), 400, "INVALID_JSON", "key_ids"},
		{"POST", "/api/keys/disable-multiple", fmt.Sprintf(`{"group_id":%d,"key_ids":[%d,99999]}`, g, key), 404, "NOT_FOUND", "99999"},
		{"PUT", fmt.Sprint("/api/keys/", key, "/notes"), `{"notes":"` + strings.Repeat("n", 256) + `"}`, 400, "VALIDATION_FAILED", "notes"},
		{"PUT", fmt.Sprint("/api/keys/", key, "/notes"), `{"notes":1}`, 400, "INVALID_JSON", "notes"},
		{"PUT", "/api/keys/x/notes", `{"notes":""}`, 400, "BAD_REQUEST", ""},
		// settings
		{"PUT", "/api/settings", `{"app_url":"not a url","blacklist_threshold":1.5,"enable_request_body_logging":"yes"}`, 400, "VALIDATION_ERROR", "app_url,blacklist_threshold,enable_request_body_logging"},
		{"PUT", "/api/settings", `{"proxy_keys":" , "}`, 400, "VALIDATION_ERROR", "proxy_keys"},
		{"PUT", "/api/settings", `{"max_retries":null}`, 400, "VALIDATION_ERROR", "max_retries"},
	} {
		t.Run(c.method+" "+c.path+" "+trunc(c.body), func(t *testing.T) {
			before := n.encoded()
			var body any
			if c.body != "" {
				body = c.body
			}
			e := n.do(c.method, c.path, body).fails(t, c.status, c.code)
			t.Logf("%s %s", e.Code, e.Message)
			for _, name := range strings.Split(c.names, ",") {
				if name == "" {
					continue
				}
				named := strings.Contains(e.Message, name)
				for _, f := range e.Fields {
					named = named || f.Field == name
				}
				if !named {
					t.Errorf("%q not named in %q %+v", name, e.Message, e.Fields)
				}
			}
			if string(n.encoded()) != string(before) {
				t.Error("the state changed")
			}
		})
	}
	_ = other
}

// TestGroupReadBackIsAccepted: a group as the API shows it may be sent back as an update
// (its read-only fields are ignored), so a client that edits what it read keeps working
// although unknown fields are refused.
func TestGroupReadBackIsAccepted(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	g := n.group("g", `,"description":"before"`)
	var groups []map[string]any
	n.do(http.MethodGet, "/api/groups", nil).ok(t, &groups)
	if len(groups) != 1 {
		t.Fatalf("groups %v", groups)
	}
	groups[0]["description"] = "after"
	var out map[string]any
	n.do(http.MethodPut, fmt.Sprint("/api/groups/", g), groups[0]).ok(t, &out)
	if out["description"] != "after" {
		t.Errorf("update from a read-back group: %v", out)
	}
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40]
	}
	return s
}
