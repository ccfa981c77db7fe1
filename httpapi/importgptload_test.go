package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gpt-load/domain"
	"gpt-load/httpapi"
)

// importUpload posts a gpt-load database file with fields to /api/import/gptload.
func (n *testNode) importUpload(file string, fields map[string]string) *response {
	n.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			n.t.Fatal(err)
		}
		fw, err := mw.CreateFormFile("file", filepath.Base(file))
		if err != nil {
			n.t.Fatal(err)
		}
		fw.Write(b)
	}
	mw.Close()
	req := httptest.NewRequest(http.MethodPost, "/api/import/gptload", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+testAuthKey)
	rec := httptest.NewRecorder()
	n.h.ServeHTTP(rec, req)
	return &response{code: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

var gptloadFixture = filepath.Join("..", "projections", "gptload", "testdata", "gpt-load-1x")

// TestImportGptloadRoute drives POST /api/import/gptload end to end: a wrong key is a 400
// before anything is written, a dry run writes nothing, the import runs as a task with
// progress and a summary, the imported groups and keys are served with their ids, and a
// second upload imports nothing.
func TestImportGptloadRoute(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{password: "this-node-has-its-own-key-42"})
	enc := filepath.Join(gptloadFixture, "encrypted.db")
	before := n.encoded()

	e := n.importUpload(enc, map[string]string{"encryption_key": "not-the-right-one"}).fails(t, http.StatusBadRequest, "VALIDATION_FAILED")
	if !strings.Contains(e.Message, "not the ENCRYPTION_KEY gpt-load ran with") {
		t.Errorf("wrong key says %q", e.Message)
	}
	e = n.importUpload(enc, nil).fails(t, http.StatusBadRequest, "VALIDATION_FAILED")
	if !strings.Contains(e.Message, "encrypted") {
		t.Errorf("missing key says %q", e.Message)
	}
	n.importUpload("", nil).fails(t, http.StatusBadRequest, "BAD_REQUEST")
	notDB := filepath.Join(t.TempDir(), "keys.db")
	os.WriteFile(notDB, []byte("sk-1\nsk-2\n"), 0o600)
	n.importUpload(notDB, nil).fails(t, http.StatusBadRequest, "VALIDATION_FAILED")

	var st struct {
		TaskType  string          `json:"task_type"`
		IsRunning bool            `json:"is_running"`
		Total     int             `json:"total"`
		Processed int             `json:"processed"`
		Result    json.RawMessage `json:"result"`
		Error     string          `json:"error"`
	}
	n.importUpload(enc, map[string]string{"encryption_key": "fixture-encryption-key-7Qm2Lx9Vp4", "dry_run": "true"}).ok(t, &st)
	if st.TaskType != "IMPORT_GPTLOAD" || !st.IsRunning || st.Total != 100 {
		t.Fatalf("first status %+v", st)
	}
	n.waitTask(30 * time.Second)
	n.do(http.MethodGet, "/api/tasks/status", nil).ok(t, &st)
	if st.Error != "" || !strings.Contains(string(st.Result), `"dry_run":true`) {
		t.Fatalf("dry run ended %+v %s", st, st.Result)
	}
	if !bytes.Equal(before, n.encoded()) {
		t.Fatal("a dry run changed the state")
	}

	n.importUpload(enc, map[string]string{"encryption_key": "fixture-encryption-key-7Qm2Lx9Vp4"}).ok(t, &st)
	n.waitTask(30 * time.Second)
	n.do(http.MethodGet, "/api/tasks/status", nil).ok(t, &st)
	if st.Error != "" || st.Processed != 100 || !strings.Contains(string(st.Result), `"groups_created":6,`) || !strings.Contains(string(st.Result), `"keys_active":94,"keys_invalid":6,`) {
		t.Fatalf("import ended %+v %s", st, st.Result)
	}
	var groups []struct {
		ID        uint64 `json:"id"`
		Name      string `json:"name"`
		ProxyKeys string `json:"proxy_keys"`
	}
	n.do(http.MethodGet, "/api/groups", nil).ok(t, &groups)
	if len(groups) != 6 {
		t.Fatalf("groups %+v", groups)
	}
	for _, g := range groups {
		if g.Name == "openai" && (g.ID != 1 || g.ProxyKeys != "sk-fixture-proxy-openai-1,sk-fixture-proxy-openai-2") {
			t.Errorf("group openai: %+v", g)
		}
	}
	var page struct {
		Items []struct {
			ID     uint64 `json:"id"`
			Value  string `json:"key_value"`
			Status string `json:"status"`
			Notes  string `json:"notes"`
		} `json:"items"`
	}
	n.do(http.MethodGet, "/api/keys?group_id=1&page_size=100", nil).ok(t, &page)
	if len(page.Items) != 20 {
		t.Fatalf("%d keys in group 1", len(page.Items))
	}
	for _, k := range page.Items {
		if k.ID == 18 && (k.Value != "sk-fixture-openai-0018" || k.Status != "invalid" || k.Notes != "revoked upstream (fixture)") {
			t.Errorf("key 18: %+v", k)
		}
	}
	// The audit trail shows the import without the secrets.
	raw := n.do(http.MethodGet, "/api/audit?page_size=100", nil)
	if raw.code != http.StatusOK || bytes.Contains(raw.body, []byte("sk-fixture-openai-0001")) || bytes.Contains(raw.body, []byte("sk-fixture-proxy-openai-1")) {
		t.Errorf("audit: %d, shows a secret: %s", raw.code, raw.body[:min(len(raw.body), 400)])
	}

	// A second upload imports nothing.
	seq := n.proj.Applied()
	n.importUpload(enc, map[string]string{"encryption_key": "fixture-encryption-key-7Qm2Lx9Vp4"}).ok(t, &st)
	n.waitTask(30 * time.Second)
	n.do(http.MethodGet, "/api/tasks/status", nil).ok(t, &st)
	if st.Error != "" || !strings.Contains(string(st.Result), `"groups_left_alone":6,`) || !strings.Contains(string(st.Result), `"keys_active":0,"keys_invalid":0,`) || n.proj.Applied() != seq {
		t.Errorf("second import: %+v %s; log %d → %d", st, st.Result, seq, n.proj.Applied())
	}
	var k domain.Key
	n.proj.Read(func(s *domain.State) { p, _ := s.Key(45); k = *p })
	if k.Notes != "free tier 备注 ✓" {
		t.Errorf("key 45 notes %q", k.Notes)
	}
	_ = io.Discard
}

// TestImportGptloadBodyLimit: the upload route takes large files but not unbounded ones.
func TestImportGptloadBodyLimit(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	req := httptest.NewRequest(http.MethodPost, "/api/import/gptload", strings.NewReader("x"))
	req.ContentLength = 5 << 30
	req.Header.Set("Content-Type", "multipart/form-data; boundary=x")
	req.Header.Set("Authorization", "Bearer "+testAuthKey)
	rec := httptest.NewRecorder()
	n.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("a 5 GiB upload: %d %s", rec.Code, rec.Body)
	}
}

// An uploaded gpt-load database rests in the node's spool directory (under DATA_DIR) and
// nowhere else, and is removed whatever becomes of the import: refused at once, failed
// in its task, or done.
func TestImportGptloadSpool(t *testing.T) {
	t.Parallel()
	spool := filepath.Join(t.TempDir(), "data", "spool")
	n := startNode(t, nodeOpts{password: "this-node-has-its-own-key-42", deps: func(d *httpapi.Deps) { d.SpoolDir = spool }})
	enc := filepath.Join(gptloadFixture, "encrypted.db")
	empty := func(when string) {
		t.Helper()
		left, err := os.ReadDir(spool)
		if err != nil {
			t.Fatalf("%s: the spool directory: %v", when, err)
		}
		if len(left) != 0 {
			t.Fatalf("%s: the spool holds %v", when, left)
		}
	}
	n.importUpload(enc, map[string]string{"encryption_key": "not-the-right-one"}).fails(t, http.StatusBadRequest, "VALIDATION_FAILED")
	empty("after a refused upload")
	notDB := filepath.Join(t.TempDir(), "keys.db")
	os.WriteFile(notDB, []byte("sk-1\nsk-2\n"), 0o600)
	n.importUpload(notDB, nil).fails(t, http.StatusBadRequest, "VALIDATION_FAILED")
	empty("after an upload that is not a database")
	n.importUpload(enc, map[string]string{"encryption_key": "fixture-encryption-key-7Qm2Lx9Vp4"}).ok(t, nil)
	n.waitTask(30 * time.Second)
	empty("after the import")
	if st, err := os.Stat(spool); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("spool directory: %v %v", st, err)
	}
}
