package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"gpt-load/events/embedded"
)

var gptloadFixtures = filepath.Join("..", "..", "projections", "gptload", "testdata", "gpt-load-1x")

// runImportBinary runs `gpt-load import-gptload args...` in dir with env; it returns the
// exit code and the output.
func runImportBinary(t *testing.T, dir string, env []string, args ...string) (int, string) {
	t.Helper()
	return runSubcommand(t, dir, env, append([]string{"import-gptload"}, args...)...)
}

// runSubcommand runs `gpt-load args...` in dir with only env (plus PATH and HOME); it
// returns the exit code and the output.
func runSubcommand(t *testing.T, dir string, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		t.Fatal(err)
	}
	return 0, string(out)
}

// TestImportGptloadThenServe is the whole move as a user makes it: the gpt-load database
// (its encrypted fixture, with the openai group's upstream pointed at a fake upstream) is
// imported by the binary into an empty DATA_DIR with an ENCRYPTION_KEY of this node; a
// node started afterwards shows every group, key and setting of expected.json through
// the admin API, and proxies with an imported proxy key to the fake upstream, which
// checks that it gets one of the group's active keys, redirected model and header rule
// included. The import is refused while the node runs, and a second one finds nothing
// to do.
func TestImportGptloadThenServe(t *testing.T) {
	t.Parallel()
	var (
		mu   sync.Mutex
		seen []string
	)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		body, _ := io.ReadAll(r.Body)
		n, _ := strconv.Atoi(strings.TrimPrefix(key, "sk-fixture-openai-"))
		if !strings.HasPrefix(key, "sk-fixture-openai-") || n < 1 || n > 16 {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"message":"invalid key"}}`)
			return
		}
		mu.Lock()
		seen = append(seen, fmt.Sprintf("%s model=%s tag=%s", key, modelOf(body), r.Header.Get("X-Fixture-Tag")))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"chatcmpl-imported","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`)
	}))
	defer upstream.Close()

	dir := t.TempDir()
	src := filepath.Join(dir, "gpt-load.db")
	b, err := os.ReadFile(filepath.Join(gptloadFixtures, "encrypted.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, b, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", src)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE groups SET upstreams = ? WHERE id = 1`, `[{"url":"`+upstream.URL+`","weight":1}]`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	env := []string{"DATA_DIR=" + filepath.Join(dir, "data"), "AUTH_KEY=" + e2eAdminKey, "ENCRYPTION_KEY=this-node-key-Str0ng-987654321", "HOST=127.0.0.1"}
	args := []string{"--dsn", src, "--encryption-key", "fixture-encryption-key-7Qm2Lx9Vp4", "--with-logs"}
	code, out := runImportBinary(t, dir, env, args...)
	if code != 0 || !strings.Contains(out, "keys: 100 imported (94 active, 6 invalid)") || !strings.Contains(out, "16 request logs written") ||
		!strings.Contains(out, "keys 100/100") || !strings.Contains(out, "settings: 7 changed") {
		t.Fatalf("import: exit %d\n%s", code, out)
	}

	p := startProc(t, dir, append(env, "PORT="+strconv.Itoa(freePort(t)))...)
	p.waitHealthy(t)
	checkServedAsExpected(t, p)

	// The proxy serves the imported keys with the imported proxy key and rules.
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/proxy/openai/v1/chat/completions", p.port),
		strings.NewReader(`{"model":"gpt-4o-fixture","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer sk-fixture-proxy-openai-2")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "chatcmpl-imported") {
		t.Fatalf("proxied call: %d %s", resp.StatusCode, body)
	}
	mu.Lock()
	if len(seen) != 1 || !strings.HasSuffix(seen[0], "model=gpt-4o-mini tag=gpt-load-fixture") {
		t.Errorf("the upstream saw %v", seen)
	}
	mu.Unlock()

	// The imported request logs are in the node's SQL store.
	var logs struct {
		Pagination struct {
			Total int `json:"total_items"`
		} `json:"pagination"`
	}
	api(t, p, "GET", "/api/logs?page_size=100", "", &logs)
	if logs.Pagination.Total < 16 {
		t.Errorf("%d request logs, want the 16 imported", logs.Pagination.Total)
	}

	// While the node holds DATA_DIR, the import is refused, and says why.
	code, out = runImportBinary(t, dir, env, args...)
	if code == 0 || !strings.Contains(out, "in use by process") || !strings.Contains(out, "Stop that node") {
		t.Errorf("import beside a running node: exit %d\n%s", code, out)
	}
	if c := p.stop(t, 20*time.Second); c != 0 {
		t.Fatalf("node exit code %d", c)
	}
	code, out = runImportBinary(t, dir, env, args...)
	if code != 0 || !strings.Contains(out, "Nothing to import") || !strings.Contains(out, "0 request logs written (16 read)") {
		t.Errorf("second import: exit %d\n%s", code, out)
	}
}

func modelOf(body []byte) string {
	var v struct {
		Model string `json:"model"`
	}
	json.Unmarshal(body, &v)
	return v.Model
}

// checkServedAsExpected compares what the admin API of p shows with expected.json: every
// setting changed from gpt-load's defaults, every group field, members and weights, and
// every key's id, value, status and notes.
func checkServedAsExpected(t *testing.T, p *proc) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(gptloadFixtures, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var want struct {
		Settings map[string]string `json:"system_settings_changed_from_default"`
		Groups   []map[string]any  `json:"groups"`
	}
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	var cats []struct {
		Settings []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"settings"`
	}
	api(t, p, "GET", "/api/settings", "", &cats)
	got := map[string]string{}
	for _, c := range cats {
		for _, s := range c.Settings {
			got[s.Key] = fmt.Sprint(s.Value)
		}
	}
	for k, v := range want.Settings {
		if got[k] != v {
			t.Errorf("setting %s = %q, want %q", k, got[k], v)
		}
	}
	var groups []map[string]any
	api(t, p, "GET", "/api/groups", "", &groups)
	byID := map[float64]map[string]any{}
	for _, g := range groups {
		byID[g["id"].(float64)] = g
	}
	if len(groups) != len(want.Groups) {
		t.Errorf("%d groups, want %d", len(groups), len(want.Groups))
	}
	for _, wg := range want.Groups {
		id := wg["id"].(float64)
		g := byID[id]
		if g == nil {
			t.Errorf("group %v missing", id)
			continue
		}
		for _, f := range []string{"name", "display_name", "description", "group_type", "channel_type", "sort", "test_model",
			"validation_endpoint", "proxy_keys", "model_redirect_strict", "upstreams", "header_rules", "model_redirect_rules"} {
			w, gv := wg[f], g[f]
			if f == "upstreams" && wg["name"] == "openai" {
				continue // pointed at the fake upstream for this test
			}
			if !reflect.DeepEqual(norm(gv), norm(w)) {
				t.Errorf("group %v %s = %v, want %v", wg["name"], f, gv, w)
			}
		}
		for _, f := range []string{"config", "param_overrides"} {
			w, gv := norm(wg[f]), norm(g[f])
			if w == nil {
				w = map[string]any{}
			}
			if gv == nil {
				gv = map[string]any{}
			}
			if !reflect.DeepEqual(gv, w) {
				t.Errorf("group %v %s = %v, want %v", wg["name"], f, gv, w)
			}
		}
		if subs := wg["sub_groups"].([]any); len(subs) > 0 {
			var members []map[string]any
			api(t, p, "GET", fmt.Sprintf("/api/groups/%v/sub-groups", id), "", &members)
			if len(members) != len(subs) {
				t.Errorf("group %v: %d members, want %d", wg["name"], len(members), len(subs))
			}
			for _, s := range subs {
				s := s.(map[string]any)
				found := false
				for _, m := range members {
					grp, _ := m["group"].(map[string]any)
					if grp != nil && grp["id"] == s["sub_group_id"] && m["weight"] == s["weight"] {
						found = true
					}
				}
				if !found {
					t.Errorf("group %v: member %v missing in %v", wg["name"], s, members)
				}
			}
		}
		var page struct {
			Items []map[string]any `json:"items"`
		}
		api(t, p, "GET", fmt.Sprintf("/api/keys?group_id=%v&page_size=100", id), "", &page)
		keys := map[float64]map[string]any{}
		for _, k := range page.Items {
			keys[k["id"].(float64)] = k
		}
		wkeys := wg["keys"].([]any)
		if len(page.Items) != len(wkeys) {
			t.Errorf("group %v: %d keys, want %d", wg["name"], len(page.Items), len(wkeys))
		}
		for _, wk := range wkeys {
			wk := wk.(map[string]any)
			k := keys[wk["id"].(float64)]
			if k == nil || k["key_value"] != wk["key_value"] || k["status"] != wk["status"] || k["notes"] != wk["notes"] {
				t.Errorf("key %v: %v, want %v", wk["id"], k, wk)
			}
		}
	}
}

// norm re-reads a JSON value so that equal JSON compares equal.
func norm(v any) any {
	b, _ := json.Marshal(v)
	var out any
	json.Unmarshal(bytes.TrimSpace(b), &out)
	return out
}

// TestImportIntoRunningNodeThroughNATS imports into a node that is running on an external
// NATS (NATS_URL): no lock stands in the way, and the running node serves the imported
// groups and keys at once, with their ids.
func TestImportIntoRunningNodeThroughNATS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, err := embedded.Start(embedded.Config{Name: "ext", DataDir: filepath.Join(dir, "nats"), Listen: "127.0.0.1:" + strconv.Itoa(freePort(t))}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Close(ctx)
	})
	common := []string{"NATS_URL=" + srv.ClientURL(), "AUTH_KEY=" + e2eAdminKey, "ENCRYPTION_KEY=cluster-key-Str0ng-1234567890", "HOST=127.0.0.1"}
	p := startProc(t, dir, append(common, "DATA_DIR="+filepath.Join(dir, "node"), "PORT="+strconv.Itoa(freePort(t)))...)
	p.waitHealthy(t)

	src := filepath.Join(dir, "plain.db")
	b, err := os.ReadFile(filepath.Join(gptloadFixtures, "plain.db"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(src, b, 0o600)
	code, out := runImportBinary(t, dir, append(common, "DATA_DIR="+filepath.Join(dir, "importer")), "--dsn", src)
	if code != 0 || !strings.Contains(out, "keys: 100 imported (94 active, 6 invalid)") {
		t.Fatalf("import into the running node: exit %d\n%s", code, out)
	}
	// The node follows the log: it shows the import as soon as it has read it.
	var page struct {
		Items []struct {
			ID    uint64 `json:"id"`
			Value string `json:"key_value"`
			Notes string `json:"notes"`
		} `json:"items"`
	}
	found := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !found; time.Sleep(20 * time.Millisecond) {
		var groups []map[string]any
		api(t, p, "GET", "/api/groups", "", &groups)
		if len(groups) < 6 {
			continue
		}
		api(t, p, "GET", "/api/keys?group_id=3&page_size=100", "", &page)
		for _, k := range page.Items {
			if k.ID == 45 && k.Value == "sk-fixture-gemini-0005" && k.Notes == "free tier 备注 ✓" {
				found = len(page.Items) == 20
			}
		}
	}
	if !found {
		t.Errorf("the running node shows %d keys of gemini: %+v", len(page.Items), page.Items)
	}
}
