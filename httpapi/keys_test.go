package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/httpapi/tasks"
)

func keysBody(gid uint64, text string) string {
	return fmt.Sprintf(`{"group_id":%d,"keys_text":%q}`, gid, text)
}

func TestKeysContract(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	gid := n.group("g")

	t.Run("add-multiple", func(t *testing.T) {
		d := n.do(http.MethodPost, "/api/keys/add-multiple", keysBody(gid, "sk-key-0001\nsk-key-0002, sk-key-0002;sk-bad-0003 \t sk-key-0004")).data(t)
		checkShape(t, "add result", d, shape{"added_count": "integer", "ignored_count": "integer", "total_in_group": "integer"})
		if !sameJSON(d, `{"added_count":4,"ignored_count":1,"total_in_group":4}`) {
			t.Errorf("add %s", jsonString(d))
		}
		d = n.do(http.MethodPost, "/api/keys/add-multiple", keysBody(gid, `["sk-key-0001"," sk-key-0005 ",""]`)).data(t)
		if !sameJSON(d, `{"added_count":1,"ignored_count":1,"total_in_group":5}`) {
			t.Errorf("add JSON array %s", jsonString(d))
		}
	})

	t.Run("list", func(t *testing.T) {
		d := n.do(http.MethodGet, fmt.Sprint("/api/keys?group_id=", gid, "&page=1&page_size=2"), nil).data(t)
		checkShape(t, "page", d, shape{"items": "array", "pagination": "object"})
		checkShape(t, "pagination", field(t, d, "pagination"), paginationShape)
		if !sameJSON(field(t, d, "pagination"), `{"page":1,"page_size":2,"total_items":5,"total_pages":3}`) {
			t.Errorf("pagination %s", jsonString(field(t, d, "pagination")))
		}
		items := list(t, field(t, d, "items"))
		for _, it := range items {
			checkShape(t, "key", it, keyShape)
		}
		first := items[0]
		if field(t, first, "key_value") != "sk-key-0005" || field(t, first, "status") != "active" ||
			field(t, first, "request_count") != float64(0) || field(t, first, "last_used_at") != nil ||
			field(t, first, "cooldown_until") != nil || field(t, first, "disabled") != false ||
			field(t, first, "key_hash") != n.store.Cipher().Hash("sk-key-0005").String() {
			t.Errorf("first key %s", jsonString(first))
		}
		// Every page, in id order descending.
		var all []uint64
		for page := 1; page <= 3; page++ {
			d := n.do(http.MethodGet, fmt.Sprint("/api/keys?group_id=", gid, "&page=", page, "&page_size=2"), nil).data(t)
			all = append(all, ids(t, list(t, field(t, d, "items")))...)
		}
		if len(all) != 5 || !sortedDesc(all) {
			t.Errorf("ids over pages %v", all)
		}
		// Bad page parameters fall back to the defaults.
		d = n.do(http.MethodGet, fmt.Sprint("/api/keys?group_id=", gid, "&page=x&page_size=-3"), nil).data(t)
		if !sameJSON(field(t, d, "pagination"), `{"page":1,"page_size":15,"total_items":5,"total_pages":1}`) {
			t.Errorf("default pagination %s", jsonString(field(t, d, "pagination")))
		}
		d = n.do(http.MethodGet, fmt.Sprint("/api/keys?group_id=", gid, "&page_size=5000"), nil).data(t)
		if field(t, d, "pagination", "page_size") != float64(1000) {
			t.Errorf("page_size cap %v", field(t, d, "pagination"))
		}
		d = n.do(http.MethodGet, fmt.Sprint("/api/keys?group_id=", gid, "&page=9"), nil).data(t)
		if len(list(t, field(t, d, "items"))) != 0 || field(t, d, "pagination", "total_items") != float64(5) {
			t.Errorf("page past the end %s", jsonString(d))
		}
	})

	t.Run("filters and search", func(t *testing.T) {
		bad := n.keyID(gid, "sk-bad-0003")
		if err := n.cmd.RecordHealth(context.Background(), events.ActorSystem,
			domain.KeyValidated{GroupID: gid, KeyID: bad, Message: "m"},
			domain.KeyValidated{GroupID: gid, KeyID: bad, Message: "m"},
			domain.KeyValidated{GroupID: gid, KeyID: bad, Message: "[status 401] invalid"}); err != nil {
			t.Fatal(err)
		}
		count := func(query string) (int, []any) {
			d := n.do(http.MethodGet, fmt.Sprint("/api/keys?group_id=", gid, query), nil).data(t)
			return int(field(t, d, "pagination", "total_items").(float64)), list(t, field(t, d, "items"))
		}
		if c, items := count("&status=invalid"); c != 1 || field(t, items[0], "key_value") != "sk-bad-0003" ||
			field(t, items[0], "last_error") != "[status 401] invalid" || field(t, items[0], "failure_count") != float64(3) {
			t.Errorf("invalid filter: %d %s", c, jsonString(items))
		}
		if c, _ := count("&status=active"); c != 4 {
			t.Errorf("active filter: %d", c)
		}
		if c, items := count("&key_value=sk-key-0002"); c != 1 || field(t, items[0], "key_value") != "sk-key-0002" {
			t.Errorf("key_value: %d %v", c, items)
		}
		if c, _ := count("&key_value=sk-key-0002&status=invalid"); c != 0 {
			t.Errorf("key_value with the other status: %d", c)
		}
		if c, _ := count("&key_value=nope"); c != 0 {
			t.Errorf("unknown key_value: %d", c)
		}
		// Search: a part of the masked value, or a prefix of the hash.
		if c, items := count("&search=0004"); c != 1 || field(t, items[0], "key_value") != "sk-key-0004" {
			t.Errorf("search suffix: %d %v", c, items)
		}
		if c, _ := count("&search=" + "sk-k****0001"); c != 1 {
			t.Errorf("search masked: %d", c)
		}
		if c, _ := count("&search=sk-k"); c != 4 {
			t.Errorf("search prefix: %d", c)
		}
		if c, _ := count("&search=key-0002"); c != 0 {
			t.Errorf("search must not see the hidden middle of a key: %d", c)
		}
		h := strings.ToUpper(n.store.Cipher().Hash("sk-key-0004").String()[:10])
		if c, items := count("&search=" + h); c < 1 || !slices.Contains(ids(t, items), n.keyID(gid, "sk-key-0004")) {
			t.Errorf("search hash prefix %s: %d", h, c)
		}
		if c, _ := count("&search=0001&status=invalid"); c != 0 {
			t.Errorf("search and status: %d", c)
		}
		n.do(http.MethodGet, fmt.Sprint("/api/keys?group_id=", gid, "&status=broken"), nil).fails(t, http.StatusBadRequest, "VALIDATION_FAILED")
		n.do(http.MethodGet, "/api/keys", nil).fails(t, http.StatusBadRequest, "BAD_REQUEST")
		n.do(http.MethodGet, "/api/keys?group_id=0", nil).fails(t, http.StatusBadRequest, "BAD_REQUEST")
		n.do(http.MethodGet, "/api/keys?group_id=x", nil).fails(t, http.StatusBadRequest, "BAD_REQUEST")
		n.do(http.MethodGet, "/api/keys?group_id=999", nil).fails(t, http.StatusNotFound, "NOT_FOUND")
	})

	t.Run("cooldown", func(t *testing.T) {
		id := n.keyID(gid, "sk-key-0001")
		until := time.Now().Add(time.Hour).Truncate(time.Second)
		if err := n.cmd.RecordHealth(context.Background(), events.ActorProxy,
			domain.KeyFailed{GroupID: gid, KeyID: id, Kind: domain.FailureRateLimit, Status: 429, RetryUntil: until, Message: "rate limited"}); err != nil {
			t.Fatal(err)
		}
		items := list(t, field(t, n.do(http.MethodGet, fmt.Sprint("/api/keys?group_id=", gid, "&key_value=sk-key-0001"), nil).data(t), "items"))
		got, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(field(t, items[0], "cooldown_until")))
		if !got.Equal(until) || field(t, items[0], "last_error") != "rate limited" {
			t.Errorf("cooldown %s", jsonString(items[0]))
		}
	})

	t.Run("export", func(t *testing.T) {
		r := n.do(http.MethodGet, fmt.Sprint("/api/keys/export?group_id=", gid), nil)
		if r.code != http.StatusOK || r.header.Get("Content-Type") != "text/plain; charset=utf-8" ||
			r.header.Get("Content-Disposition") != `attachment; filename="keys-g-all.txt"` {
			t.Fatalf("export %d %v", r.code, r.header)
		}
		if string(r.body) != "sk-key-0001\nsk-key-0002\nsk-bad-0003\nsk-key-0004\nsk-key-0005\n" {
			t.Errorf("export body %q", r.body)
		}
		r = n.send(http.MethodGet, fmt.Sprint("/api/keys/export?status=invalid&group_id=", gid, "&key=", testAuthKey), nil)
		if string(r.body) != "sk-bad-0003\n" || !strings.Contains(r.header.Get("Content-Disposition"), "keys-g-invalid.txt") {
			t.Errorf("export invalid (key in the query) %d %q", r.code, r.body)
		}
		n.do(http.MethodGet, fmt.Sprint("/api/keys/export?status=x&group_id=", gid), nil).fails(t, http.StatusBadRequest, "VALIDATION_FAILED")
		n.do(http.MethodGet, "/api/keys/export?group_id=999", nil).fails(t, http.StatusNotFound, "NOT_FOUND")
	})

	t.Run("notes", func(t *testing.T) {
		id := n.keyID(gid, "sk-key-0002")
		n.do(http.MethodPut, fmt.Sprint("/api/keys/", id, "/notes"), `{"notes":"  free tier 备注 ✓  "}`).ok(t, nil)
		if k, _ := n.key(gid, "sk-key-0002"); k.Notes != "free tier 备注 ✓" {
			t.Errorf("notes %q", k.Notes)
		}
		n.do(http.MethodPut, fmt.Sprint("/api/keys/", id, "/notes"), fmt.Sprintf(`{"notes":%q}`, strings.Repeat("é", 256))).fails(t, http.StatusBadRequest, "VALIDATION_FAILED")
		n.do(http.MethodPut, "/api/keys/99999/notes", `{"notes":"x"}`).fails(t, http.StatusNotFound, "NOT_FOUND")
		n.do(http.MethodPut, "/api/keys/0/notes", `{"notes":"x"}`).fails(t, http.StatusBadRequest, "BAD_REQUEST")
	})

	t.Run("disable and enable", func(t *testing.T) {
		id := n.keyID(gid, "sk-key-0004")
		e := n.do(http.MethodPost, "/api/keys/disable-multiple", fmt.Sprintf(`{"group_id":%d,"key_ids":[%d],"keys_text":"sk-key-0005 sk-unknown"}`, gid, id)).ok(t, nil)
		if !sameJSON(jsonAny(t, e.Data), `{"disabled_count":2,"ignored_count":1,"total_in_group":5}`) || e.Message != "2 keys disabled" {
			t.Errorf("disable %s %q", e.Data, e.Message)
		}
		if k, _ := n.key(gid, "sk-key-0005"); !k.Disabled {
			t.Error("sk-key-0005 not disabled")
		}
		items := list(t, field(t, n.do(http.MethodGet, fmt.Sprint("/api/keys?group_id=", gid, "&key_value=sk-key-0004"), nil).data(t), "items"))
		if field(t, items[0], "disabled") != true || field(t, items[0], "status") != "active" {
			t.Errorf("disabled key %s", jsonString(items[0]))
		}
		e = n.do(http.MethodPost, "/api/keys/enable-multiple", fmt.Sprintf(`{"group_id":%d,"key_ids":[%d]}`, gid, id)).ok(t, nil)
		if !sameJSON(jsonAny(t, e.Data), `{"enabled_count":1,"ignored_count":0,"total_in_group":5}`) {
			t.Errorf("enable %s", e.Data)
		}
		n.do(http.MethodPost, "/api/keys/enable-multiple", fmt.Sprintf(`{"group_id":%d,"key_ids":[99999]}`, gid)).fails(t, http.StatusNotFound, "NOT_FOUND")
		n.do(http.MethodPost, "/api/keys/enable-multiple", fmt.Sprintf(`{"group_id":%d}`, gid)).fails(t, http.StatusBadRequest, "INVALID_JSON")
		n.do(http.MethodPost, "/api/keys/enable-multiple", `{"group_id":999,"key_ids":[1]}`).fails(t, http.StatusNotFound, "NOT_FOUND")
	})

	t.Run("validate and test", func(t *testing.T) {
		st := tasks.Status{}
		n.do(http.MethodPost, "/api/keys/validate-group", fmt.Sprintf(`{"group_id":%d,"status":"invalid"}`, gid)).ok(t, &st)
		if st.TaskType != tasks.KeyValidation || !st.IsRunning && st.Total != 1 || st.GroupName != "g" {
			t.Errorf("validation task %+v", st)
		}
		seen := n.waitTask(10 * time.Second)
		end := seen[len(seen)-1]
		if !sameJSON(jsonAny(t, end.Result), `{"total_keys":1,"valid_keys":0,"invalid_keys":1}`) || end.Processed != 1 {
			t.Errorf("validation end %+v %s", end, end.Result)
		}
		n.validator.mu.Lock()
		call := n.validator.validateCalls[len(n.validator.validateCalls)-1]
		n.validator.mu.Unlock()
		if call.group != gid || call.concurrency != 10 || len(call.ids) != 1 || call.ids[0] != n.keyID(gid, "sk-bad-0003") {
			t.Errorf("validator called with %+v", call)
		}
		// The whole group, without the disabled key.
		n.do(http.MethodPost, "/api/keys/validate-group", fmt.Sprintf(`{"group_id":%d}`, gid)).ok(t, &st)
		n.waitTask(10 * time.Second)
		n.validator.mu.Lock()
		call = n.validator.validateCalls[len(n.validator.validateCalls)-1]
		n.validator.mu.Unlock()
		if len(call.ids) != 4 || slices.Contains(call.ids, n.keyID(gid, "sk-key-0005")) {
			t.Errorf("validate-group ids %v", call.ids)
		}
		n.do(http.MethodPost, "/api/keys/validate-group", fmt.Sprintf(`{"group_id":%d,"status":"gone"}`, gid)).fails(t, http.StatusBadRequest, "VALIDATION_FAILED")
		n.do(http.MethodPost, "/api/keys/validate-group", `{"group_id":999}`).fails(t, http.StatusNotFound, "NOT_FOUND")

		d := n.do(http.MethodPost, "/api/keys/test-multiple", keysBody(gid, "sk-key-0001 sk-nope sk-bad-0003 sk-key-0001")).data(t)
		checkShape(t, "test result", d, shape{"results": "array", "total_duration": "integer"})
		res := list(t, field(t, d, "results"))
		want := `[{"key_value":"sk-key-0001","is_valid":true},
			{"key_value":"sk-nope","is_valid":false,"error":"Key does not exist in this group or has been removed."},
			{"key_value":"sk-bad-0003","is_valid":false,"error":"[status 401] invalid api key"},
			{"key_value":"sk-key-0001","is_valid":true}]`
		if !sameJSON(res, want) {
			t.Errorf("test results %s", jsonString(res))
		}
	})

	t.Run("restore, delete and clear", func(t *testing.T) {
		d := n.do(http.MethodPost, "/api/keys/restore-multiple", keysBody(gid, "sk-bad-0003 sk-key-0001 sk-gone")).data(t)
		if !sameJSON(d, `{"restored_count":1,"ignored_count":2,"total_in_group":5}`) {
			t.Errorf("restore %s", jsonString(d))
		}
		if k, _ := n.key(gid, "sk-bad-0003"); k.Status != domain.KeyActive || k.FailureCount != 0 {
			t.Errorf("restored key %+v", k)
		}
		d = n.do(http.MethodPost, "/api/keys/delete-multiple", keysBody(gid, "sk-key-0001\nsk-gone")).data(t)
		if !sameJSON(d, `{"deleted_count":1,"ignored_count":1,"total_in_group":4}`) {
			t.Errorf("delete %s", jsonString(d))
		}
		e := n.do(http.MethodPost, "/api/keys/restore-all-invalid", fmt.Sprintf(`{"group_id":%d}`, gid)).ok(t, nil)
		if e.Message != "0 keys restored" || e.Data != nil {
			t.Errorf("restore-all-invalid %+v", e)
		}
		e = n.do(http.MethodPost, "/api/keys/clear-all-invalid", fmt.Sprintf(`{"group_id":%d}`, gid)).ok(t, nil)
		if e.Message != "0 invalid keys cleared" {
			t.Errorf("clear-all-invalid %q", e.Message)
		}
		e = n.do(http.MethodPost, "/api/keys/clear-all", fmt.Sprintf(`{"group_id":%d}`, gid), "Accept-Language", "zh-CN").ok(t, nil)
		if e.Message != "已清除 4 个密钥" {
			t.Errorf("clear-all %q", e.Message)
		}
		n.do(http.MethodPost, "/api/keys/clear-all", `{"group_id":999}`).fails(t, http.StatusNotFound, "NOT_FOUND")
	})
}

func jsonAny(t testing.TB, raw []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return v
}

func TestAsyncTasks(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	gid := n.group("g")
	n.addKeys(gid, "sk-old-1")

	var st tasks.Status
	zero := n.do(http.MethodGet, "/api/tasks/status", nil).data(t)
	checkShape(t, "no task", zero, taskShape)
	if !sameJSON(zero, `{"task_type":"","is_running":false,"processed":0,"total":0,"started_at":"0001-01-01T00:00:00Z"}`) {
		t.Errorf("no task yet: %s", jsonString(zero))
	}

	// JSON body.
	init := n.do(http.MethodPost, "/api/keys/add-async", keysBody(gid, "sk-old-1 sk-new-1 sk-new-2 sk-new-2")).data(t)
	checkShape(t, "task", init, taskShape)
	if field(t, init, "task_type") != "KEY_IMPORT" || field(t, init, "total") != float64(4) || field(t, init, "group_name") != "g" {
		t.Errorf("initial status %s", jsonString(init))
	}
	seen := n.waitTask(10 * time.Second)
	end := seen[len(seen)-1]
	if end.Processed != 4 || end.Error != "" || !sameJSON(jsonAny(t, end.Result), `{"added_count":2,"ignored_count":2}`) ||
		end.FinishedAt == nil || end.DurationSeconds == nil {
		t.Errorf("import end %+v %s", end, end.Result)
	}
	checkShape(t, "finished task", jsonAny(t, n.do(http.MethodGet, "/api/tasks/status", nil).env(t).Data), taskShape)

	// Multipart upload, fields in either order.
	n.upload(map[string]string{"group_id": fmt.Sprint(gid)}, "keys.TXT", `["sk-up-1","sk-up-2"," "]`).ok(t, &st)
	if st.Total != 2 {
		t.Errorf("upload total %d", st.Total)
	}
	n.waitTask(10 * time.Second)
	if _, ok := n.key(gid, "sk-up-2"); !ok {
		t.Error("uploaded key missing")
	}
	n.upload(map[string]string{"group_id": fmt.Sprint(gid)}, "keys.csv", "a").fails(t, http.StatusBadRequest, "VALIDATION_FAILED")
	n.upload(map[string]string{"group_id": fmt.Sprint(gid)}, "", "").fails(t, http.StatusBadRequest, "BAD_REQUEST")
	n.upload(map[string]string{}, "k.txt", "sk-1").fails(t, http.StatusBadRequest, "BAD_REQUEST")
	n.upload(map[string]string{"group_id": "abc"}, "k.txt", "sk-1").fails(t, http.StatusBadRequest, "BAD_REQUEST")
	n.upload(map[string]string{"group_id": "999"}, "k.txt", "sk-1").fails(t, http.StatusNotFound, "NOT_FOUND")
	n.upload(map[string]string{"group_id": fmt.Sprint(gid)}, "k.txt", " \n,; ").fails(t, http.StatusBadRequest, "VALIDATION_FAILED")

	// Delete.
	n.do(http.MethodPost, "/api/keys/delete-async", keysBody(gid, "sk-new-1,sk-up-1,sk-missing")).ok(t, &st)
	if st.TaskType != tasks.KeyDelete || st.Total != 3 {
		t.Errorf("delete task %+v", st)
	}
	seen = n.waitTask(10 * time.Second)
	if end := seen[len(seen)-1]; !sameJSON(jsonAny(t, end.Result), `{"deleted_count":2,"ignored_count":1}`) {
		t.Errorf("delete end %+v %s", end, end.Result)
	}

	// One slot: a second task while one runs is a conflict; no keys is bad input.
	n.validator.mu.Lock()
	n.validator.hold = make(chan struct{})
	n.validator.mu.Unlock()
	n.do(http.MethodPost, "/api/keys/validate-group", fmt.Sprintf(`{"group_id":%d}`, gid)).ok(t, &st)
	before := n.encoded()
	n.do(http.MethodPost, "/api/keys/add-async", keysBody(gid, "sk-x")).fails(t, http.StatusConflict, "TASK_IN_PROGRESS")
	n.do(http.MethodPost, "/api/keys/delete-async", keysBody(gid, "sk-x")).fails(t, http.StatusConflict, "TASK_IN_PROGRESS")
	n.upload(map[string]string{"group_id": fmt.Sprint(gid)}, "k.txt", "sk-x").fails(t, http.StatusConflict, "TASK_IN_PROGRESS")
	e := n.do(http.MethodPost, "/api/keys/validate-group", fmt.Sprintf(`{"group_id":%d}`, gid), "Accept-Language", "ja").fails(t, http.StatusConflict, "TASK_IN_PROGRESS")
	if e.Message != "別のタスクが実行中です。しばらくお待ちください" {
		t.Errorf("localized conflict %q", e.Message)
	}
	if string(n.encoded()) != string(before) {
		t.Error("a refused task changed the state")
	}
	n.validator.mu.Lock()
	close(n.validator.hold)
	n.validator.hold = nil
	n.validator.mu.Unlock()
	n.waitTask(10 * time.Second)
	n.do(http.MethodPost, "/api/keys/add-async", keysBody(gid, " ; ,")).fails(t, http.StatusBadRequest, "VALIDATION_FAILED")
	empty := n.group("empty")
	n.do(http.MethodPost, "/api/keys/validate-group", fmt.Sprintf(`{"group_id":%d}`, empty)).fails(t, http.StatusBadRequest, "VALIDATION_FAILED")
}

func TestValidatorMissing(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{noValidator: true})
	gid := n.group("g")
	n.addKeys(gid, "sk-1")
	for path, body := range map[string]string{"/api/keys/validate-group": fmt.Sprintf(`{"group_id":%d}`, gid), "/api/keys/test-multiple": keysBody(gid, "sk-1")} {
		e := n.do(http.MethodPost, path, body).fails(t, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE")
		if e.Message != "Key validation is not available on this node" {
			t.Errorf("%s: %q", path, e.Message)
		}
	}
}

// TestCopyBigGroup copies a group larger than a request should copy: its keys go through
// the import task, or stay behind (with a message) while another task runs.
func TestCopyBigGroup(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	gid := n.group("big")
	keys := make([]string, domain.MaxSyncKeys+1)
	for i := range keys {
		keys[i] = fmt.Sprintf("sk-copy-%05d", i)
	}
	n.addKeys(gid, keys...)
	var cp struct {
		Group struct {
			ID   uint64 `json:"id"`
			Name string `json:"name"`
		} `json:"group"`
	}
	n.do(http.MethodPost, fmt.Sprint("/api/groups/", gid, "/copy"), `{"copy_keys":"all"}`).ok(t, &cp)
	seen := n.waitTask(time.Minute)
	if end := seen[len(seen)-1]; end.TaskType != tasks.KeyImport || end.GroupName != "big_copy" || end.Processed != len(keys) {
		t.Errorf("copy task %+v", end)
	}
	if got := n.keysIn(cp.Group.ID); got != len(keys) {
		t.Errorf("%d keys copied", got)
	}

	n.validator.mu.Lock()
	n.validator.hold = make(chan struct{})
	n.validator.mu.Unlock()
	n.do(http.MethodPost, "/api/keys/validate-group", fmt.Sprintf(`{"group_id":%d}`, gid)).ok(t, nil)
	e := n.do(http.MethodPost, fmt.Sprint("/api/groups/", gid, "/copy"), `{}`).ok(t, &cp)
	if cp.Group.Name != "big_copy_2" || !strings.Contains(e.Message, "not copied") || n.keysIn(cp.Group.ID) != 0 {
		t.Errorf("copy while busy: %q %+v", e.Message, cp)
	}
	n.validator.mu.Lock()
	close(n.validator.hold)
	n.validator.hold = nil
	n.validator.mu.Unlock()
	n.waitTask(time.Minute)
}
