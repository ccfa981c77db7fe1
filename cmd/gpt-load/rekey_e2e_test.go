package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gpt-load/events"
	"gpt-load/events/eventstest"
)

// Upstream keys of the rekey tests: the fake upstream answers by the word in the middle.
const (
	rkGood  = "sk-rk-good-5b1d7f3a9c2e"
	rkBad   = "sk-rk-bad-0e1f2a3b4c5d"    // 401: counted, blacklisted
	rkCool  = "sk-rk-cool-9a8b7c6d5e4f"   // 429 with Retry-After: cooled down
	rkFile  = "sk-rk-good-file-7e6d5c4b"  // uploaded as a file
	rkMixed = "sk-rk-good-mixed-2f1e0d9c" // added by a node with K1 before the migration
	rkProxy = "sk-rk-proxy-3c2b1a0f9e8d"  // the group's proxy key
	rkHdr   = "Bearer rk-hdr-Tok-4d3c2b1a"
	rkKey1  = "rekey-first-Encryption-Key-0123"
	rkKey2  = "rekey-second-Encryption-Key-4567"
)

// rekeyUpstream fails keys with 401 or 429 by their name and answers the others.
func rekeyUpstream(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		auth := r.Header.Get("Authorization")
		switch {
		case strings.Contains(auth, "-bad-"):
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}`)
		case strings.Contains(auth, "-cool-"):
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":{"message":"Rate limit reached","type":"requests"}}`)
		default:
			io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// rekeyNode is a node of the rekey tests: its admin key is the one generated into
// DATA_DIR, so that the admin key file is migrated too.
type rekeyNode struct {
	*proc
	admin string
}

func startRekeyNode(t *testing.T, dir string, env []string) *rekeyNode {
	t.Helper()
	p := startProc(t, dir, env...)
	p.waitHealthy(t)
	return &rekeyNode{proc: p, admin: runAdminKey(t, dir, env...)}
}

func (n *rekeyNode) call(t *testing.T, method, path, body string, out any) {
	t.Helper()
	adminData(t, n.port, n.admin, method, path, body, out)
}

// seedGroup creates the group "rk" (with a proxy key and a header rule, both secrets)
// on upstreamURL with the good, the bad and the cooling key, and answers its id.
func (n *rekeyNode) seedGroup(t *testing.T, upstreamURL string) uint64 {
	t.Helper()
	var g struct {
		ID uint64 `json:"id"`
	}
	n.call(t, "POST", "/api/groups", `{"name":"rk","channel_type":"openai","test_model":"m","proxy_keys":"`+rkProxy+`",
		"header_rules":[{"key":"X-Upstream-Token","value":"`+rkHdr+`","action":"set"}],
		"upstreams":[{"url":"`+upstreamURL+`","weight":1}]}`, &g)
	n.call(t, "POST", "/api/keys/add-multiple", fmt.Sprintf(`{"group_id":%d,"keys_text":"%s\n%s\n%s"}`, g.ID, rkGood, rkBad, rkCool), nil)
	return g.ID
}

func (n *rekeyNode) proxy(t *testing.T) int {
	t.Helper()
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/proxy/rk/v1/chat/completions", n.port),
		strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+rkProxy)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// waitCounted waits until the keys of group id have served want requests in all, as the
// request logs written to SQL count them.
func (n *rekeyNode) waitCounted(t *testing.T, id uint64, want int) {
	t.Helper()
	eventstest.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		var page struct {
			Items []struct {
				Count int `json:"request_count"`
			} `json:"items"`
		}
		n.call(t, "GET", fmt.Sprintf("/api/keys?group_id=%d&page_size=1000", id), "", &page)
		got := 0
		for _, k := range page.Items {
			got += k.Count
		}
		if got != want {
			return fmt.Errorf("%d requests counted, want %d", got, want)
		}
		return nil
	})
}

// picture is what the admin API shows of the state, key hashes left out (they change
// with the key, by design).
func (n *rekeyNode) picture(t *testing.T) string {
	t.Helper()
	var groups []map[string]any
	n.call(t, "GET", "/api/groups", "", &groups)
	var settings any
	n.call(t, "GET", "/api/settings", "", &settings)
	out := map[string]any{"groups": groups, "settings": settings}
	for _, g := range groups {
		var page struct {
			Items []map[string]any `json:"items"`
		}
		n.call(t, "GET", fmt.Sprintf("/api/keys?group_id=%v&page_size=1000", g["id"]), "", &page)
		for _, k := range page.Items {
			delete(k, "key_hash")
		}
		out[fmt.Sprint("keys-", g["id"])] = page.Items
	}
	b, _ := json.MarshalIndent(out, "", " ")
	return string(b)
}

func (n *rekeyNode) encryptionStatus(t *testing.T) map[string]any {
	t.Helper()
	var st map[string]any
	n.call(t, "GET", "/api/dashboard/encryption-status", "", &st)
	return st
}

// scanAtRest walks every file under dataDir, every SQL row and the given outputs, and
// reports each forbidden byte sequence it finds. A control string that must be found
// (a group name in the event store) guards against a scan that reads nothing.
func scanAtRest(t *testing.T, dataDir string, forbidden map[string]string, outputs map[string]string) {
	t.Helper()
	check := func(where, s string) {
		for what, f := range forbidden {
			if strings.Contains(s, f) {
				t.Errorf("%s holds %s", where, what)
			}
		}
	}
	control, files := false, 0
	err := filepath.WalkDir(dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		rel, _ := filepath.Rel(dataDir, path)
		control = control || strings.Contains(rel, "GL_EVENTS") && bytes.Contains(b, []byte("Gl-Type"))
		check(rel, string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !control {
		t.Fatalf("the scan of %d files found no event message in GL_EVENTS", files)
	}
	scanSQL(t, filepath.Join(dataDir, "gpt-load.db"), func(table, cell string) { check("SQL table "+table, cell) })
	for name, out := range outputs {
		check(name, out)
	}
}

// upstreamForms are the forms of the upstream keys that must never rest anywhere while
// encryption is on.
func upstreamForms() map[string]string {
	m := map[string]string{}
	for _, k := range []string{rkGood, rkBad, rkCool, rkFile, rkMixed} {
		for enc, form := range encodings(k) {
			m[k+" ("+enc+")"] = form
		}
	}
	return m
}

// sealedSQLValues returns the stored key values of the request logs in SQL.
func sealedSQLValues(t *testing.T, dataDir string) []string {
	t.Helper()
	var vals []string
	scanSQL(t, filepath.Join(dataDir, "gpt-load.db"), func(table, cell string) {
		if table == "request_logs" && strings.HasPrefix(cell, "gl1:") {
			vals = append(vals, cell)
		}
	})
	return vals
}

// TestMigrateKeysThroughTheBinary walks encryption through its whole life on one DATA_DIR
// with the built binary: data written in clear, `migrate-keys --to K1`, more data with
// K1 (a key file upload, proxied requests that blacklist one key and cool another down,
// an export), `migrate-keys --from K1 --to K2`, then `--from K2`. After each migration
// the node shows the same groups, keys (ids, statuses, failure counts, usage) and
// settings, refuses the previous key with a message naming migrate-keys, and nothing
// under DATA_DIR, in SQL or in any output holds an upstream key in clear (while
// encryption is on) or a value sealed with a retired key.
func TestMigrateKeysThroughTheBinary(t *testing.T) {
	t.Parallel()
	upstream := rekeyUpstream(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	port := "PORT=" + strconv.Itoa(freePort(t))
	clear := []string{port, "HOST=127.0.0.1"}
	withKey := func(k string) []string { return append(slices.Clone(clear), "ENCRYPTION_KEY="+k) }
	outputs := map[string]string{}

	// In clear: a group with a proxy key and a header rule, keys from text.
	n := startRekeyNode(t, dir, clear)
	gid := n.seedGroup(t, upstream.URL)
	for range 3 {
		if code := n.proxy(t); code != 200 {
			t.Fatalf("proxied call in clear: %d", code)
		}
	}
	n.stop(t, 20*time.Second)

	migrate := func(args ...string) string {
		t.Helper()
		code, out := runSubcommand(t, dir, clear, append([]string{"migrate-keys"}, args...)...)
		if code != 0 {
			t.Fatalf("migrate-keys %v: exit %d\n%s", args, code, out)
		}
		return out
	}
	refused := func(env []string, want ...string) {
		t.Helper()
		p := startProc(t, dir, env...)
		select {
		case err := <-p.exited:
			p.exited <- err // for the cleanup
		case <-time.After(30 * time.Second):
			t.Fatal("the node started on data sealed with another key")
		}
		for _, w := range append(want, "migrate-keys", "nothing was started") {
			if !strings.Contains(p.out.String(), w) {
				t.Errorf("refusal does not say %q:\n%s", w, p.out.String())
			}
		}
	}

	// ENCRYPTION_KEY set before the migration: the node serves the clear data, the
	// dashboard says that it is not encrypted, and what it adds is sealed with K1 beside
	// the clear data; migrate-keys --to K1 takes both.
	n = startRekeyNode(t, dir, withKey(rkKey1))
	if st := n.encryptionStatus(t); st["has_mismatch"] != true || st["scenario_type"] != "data_not_encrypted" {
		t.Fatalf("encryption status with a key on clear data: %v", st)
	}
	n.call(t, "POST", "/api/keys/add-multiple", fmt.Sprintf(`{"group_id":%d,"keys_text":"%s"}`, gid, rkMixed), nil)
	n.stop(t, 20*time.Second)

	// Enable.
	outputs["migrate --to K1"] = migrate("--to", rkKey1)
	k1 := mustCipher(t, rkKey1).KeyID()
	k2 := mustCipher(t, rkKey2).KeyID()
	scanAtRest(t, dataDir, upstreamForms(), outputs)
	refused(clear, k1)

	n = startRekeyNode(t, dir, withKey(rkKey1))
	if st := n.encryptionStatus(t); st["has_mismatch"] != false {
		t.Fatalf("encryption status after enabling: %v", st)
	}
	// With K1: a key file, failures, a cooldown, an export.
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "keys.txt")
	io.WriteString(fw, rkFile+"\n")
	mw.WriteField("group_id", strconv.FormatUint(gid, 10))
	mw.Close()
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/api/keys/add-async", n.port), &body)
	req.Header.Set("Authorization", "Bearer "+n.admin)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("key file upload: %v %v", err, resp)
	}
	resp.Body.Close()
	waitTask := func() {
		t.Helper()
		eventstest.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
			var st struct {
				IsRunning bool   `json:"is_running"`
				Error     string `json:"error"`
			}
			n.call(t, "GET", "/api/tasks/status", "", &st)
			if st.IsRunning {
				return fmt.Errorf("task running")
			}
			if st.Error != "" {
				t.Fatalf("task failed: %s", st.Error)
			}
			return nil
		})
	}
	waitTask()
	// A gpt-load database uploaded for a dry run: it rests in the spool while it is read.
	plainDB := filepath.Join(gptloadFixtures, "plain.db")
	body.Reset()
	mw = multipart.NewWriter(&body)
	fw, _ = mw.CreateFormFile("file", "gpt-load.db")
	raw, err := os.ReadFile(plainDB)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(raw)
	mw.WriteField("dry_run", "true")
	mw.Close()
	req, _ = http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/api/import/gptload", n.port), &body)
	req.Header.Set("Authorization", "Bearer "+n.admin)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if resp, err = http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("gpt-load database upload: %v %v", err, resp)
	}
	resp.Body.Close()
	waitTask()
	if left, err := os.ReadDir(filepath.Join(dataDir, "spool")); err != nil || len(left) != 0 {
		t.Fatalf("the spool after the upload's task: %v %v", left, err)
	}
	for range 12 {
		if code := n.proxy(t); code != 200 {
			t.Fatalf("proxied call with K1: %d", code)
		}
	}
	code, exported := adminRequest(t, n.port, n.admin, "GET", fmt.Sprintf("/api/keys/export?group_id=%d&status=all", gid), "")
	if code != 200 || !bytes.Contains(exported, []byte(rkFile)) {
		t.Fatalf("export: %d %q", code, exported)
	}
	var invalid struct {
		Items []map[string]any `json:"items"`
	}
	n.call(t, "GET", fmt.Sprintf("/api/keys?group_id=%d&status=invalid", gid), "", &invalid)
	if len(invalid.Items) != 1 || invalid.Items[0]["key_value"] != rkBad {
		t.Fatalf("blacklisted keys: %v, want the 401 key", invalid.Items)
	}
	n.waitCounted(t, gid, 15)
	before := n.picture(t)
	n.stop(t, 20*time.Second)
	outputs["node output (K1)"] = n.out.String()
	sealedK1 := sealedSQLValues(t, dataDir)
	if len(sealedK1) == 0 {
		t.Fatal("no request log in SQL holds a sealed key value")
	}

	// Change.
	outputs["migrate K1 → K2"] = migrate("--from", rkKey1, "--to", rkKey2)
	forbidden := upstreamForms()
	fixtureCopy := filepath.Join(t.TempDir(), "gpt-load.db") // opening it writes to it
	if err := os.WriteFile(fixtureCopy, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	scanSQL(t, fixtureCopy, func(_, cell string) {
		for _, f := range regexp.MustCompile(`sk-fixture-[A-Za-z0-9-]+`).FindAllString(cell, -1) {
			forbidden["uploaded gpt-load key "+f] = f
		}
	})
	if len(forbidden) < len(upstreamForms())+100 {
		t.Fatalf("the gpt-load fixture gave %d keys", len(forbidden)-len(upstreamForms()))
	}
	forbidden["the K1 key id in a sealed value"] = "gl1:" + k1
	forbidden["the K1 key id in a message header"] = "Gl-Key-Id: " + k1
	for i, v := range sealedK1 {
		forbidden[fmt.Sprint("K1-sealed request log value ", i)] = v[len("gl1:")+9:]
	}
	refused(withKey(rkKey1), k1, k2)
	n = startRekeyNode(t, dir, withKey(rkKey2))
	if after := n.picture(t); after != before {
		t.Fatalf("the state changed across K1 → K2: %s", lineDiff(before, after))
	}
	if st := n.encryptionStatus(t); st["has_mismatch"] != false {
		t.Fatalf("encryption status after the change: %v", st)
	}
	if code := n.proxy(t); code != 200 {
		t.Fatalf("proxied call with K2: %d", code)
	}
	n.waitCounted(t, gid, 16)
	before = n.picture(t)
	n.stop(t, 20*time.Second)
	outputs["node output (K2)"] = n.out.String()
	scanAtRest(t, dataDir, forbidden, outputs)

	// Disable.
	migrate("--from", rkKey2)
	refused(withKey(rkKey2), k2)
	n = startRekeyNode(t, dir, clear)
	if after := n.picture(t); after != before {
		t.Fatalf("the state changed across disabling: %s", lineDiff(before, after))
	}
	if st := n.encryptionStatus(t); st["has_mismatch"] != false {
		t.Fatalf("encryption status after disabling: %v", st)
	}
	n.stop(t, 20*time.Second)
}

func mustCipher(t testing.TB, key string) *events.Cipher {
	t.Helper()
	c, err := events.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// lineDiff shows the lines where two texts differ.
func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out strings.Builder
	for i := range max(len(al), len(bl)) {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			fmt.Fprintf(&out, "\nline %d: before %s\n         after  %s", i+1, x, y)
		}
	}
	return out.String()
}
