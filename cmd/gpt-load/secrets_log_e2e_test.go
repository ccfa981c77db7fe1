package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The upstream key of TestNoSecretPrinted: '+', '/' and '=' make its escaped forms differ.
const secLeakProbe = "AIzaSy+Leak/Probe=0042xyzQ"

// TestNoSecretPrinted runs the built binary at LOG_LEVEL=debug, without ENCRYPTION_KEY,
// in front of a Gemini upstream (key in ?key=) that resets connections, answers 401 and
// 500 quoting the URL it was called with, and redirects to it, and of an upstream that is
// not listening. Through proxied calls, a key test, a validation task and the admin reads,
// the upstream key never shows in the node's stdout or stderr, in an answer to a client,
// or in an admin answer other than the key list and the export, which show it on purpose.
func TestNoSecretPrinted(t *testing.T) {
	t.Parallel()
	var calls int
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		full := "http://" + r.Host + r.URL.String()
		switch {
		case strings.Contains(r.URL.Path, "reset"):
			c, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0) // the client sees "connection reset by peer"
			}
			c.Close()
		case strings.Contains(r.URL.Path, "unauth"):
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, `{"error":{"code":401,"message":"API key not valid: %s (key %s)","status":"UNAUTHENTICATED"}}`, full, r.URL.Query().Get("key"))
		case strings.Contains(r.URL.Path, "plain"):
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, "upstream failed on %s with key=%s", full, r.URL.Query().Get("key"))
		case strings.Contains(r.URL.Path, "redirect"):
			http.Redirect(w, r, full+"&again=1", http.StatusFound)
		default:
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"candidates":[{"content":{"parts":[{"text":"hi"}]}}]}`)
		}
	}))
	defer up.Close()
	dead := "http://127.0.0.1:" + strconv.Itoa(freePort(t)) // nothing listens there

	dir := t.TempDir()
	p := startProc(t, dir, "PORT="+strconv.Itoa(freePort(t)), "HOST=127.0.0.1", "AUTH_KEY="+secAdmin,
		"LOG_LEVEL=debug", "DATA_DIR="+filepath.Join(dir, "data"))
	p.waitHealthy(t)

	var gem, gone struct {
		ID uint64 `json:"id"`
	}
	adminOK(t, p, "POST", "/api/groups", `{"name":"gem","channel_type":"gemini","test_model":"unauth-model",
		"proxy_keys":"`+secGroupProxy+`","config":{"max_retries":1,"blacklist_threshold":0},
		"upstreams":[{"url":"`+up.URL+`","weight":1}]}`, &gem)
	adminOK(t, p, "POST", "/api/groups", `{"name":"gone","channel_type":"gemini","test_model":"m",
		"proxy_keys":"`+secGroupProxy+`","config":{"max_retries":1},"upstreams":[{"url":"`+dead+`","weight":1}]}`, &gone)
	for _, g := range []uint64{gem.ID, gone.ID} {
		adminOK(t, p, "POST", "/api/keys/add-multiple", fmt.Sprintf(`{"group_id":%d,"keys_text":%q}`, g, secLeakProbe), nil)
	}

	forms := map[string]string{"raw": secLeakProbe, "query-escape": url.QueryEscape(secLeakProbe),
		"path-escape": url.PathEscape(secLeakProbe), "lower-hex": strings.ToLower(url.QueryEscape(secLeakProbe))}
	leaks := func(where string, b []byte) {
		t.Helper()
		for enc, f := range forms {
			if bytes.Contains(b, []byte(f)) {
				t.Errorf("%s shows the upstream key (%s form): %.400s", where, enc, b)
			}
		}
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	proxied := 0
	for _, c := range []struct{ group, model string }{
		{"gem", "reset"}, {"gem", "unauth"}, {"gem", "plain"}, {"gem", "redirect"}, {"gem", "fine"}, {"gone", "any"},
	} {
		u := fmt.Sprintf("http://127.0.0.1:%d/proxy/%s/v1beta/models/%s:generateContent?key=%s", p.port, c.group, c.model, url.QueryEscape(secGroupProxy))
		resp, err := client.Post(u, "application/json", strings.NewReader(`{"contents":[{"parts":[{"text":"hi"}]}]}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var head bytes.Buffer
		resp.Header.Write(&head)
		leaks(fmt.Sprintf("the answer to %s/%s (%d)", c.group, c.model, resp.StatusCode), append(head.Bytes(), body...))
		proxied++
	}
	if calls < 5 {
		t.Fatalf("the upstream saw %d calls, want at least 5", calls)
	}

	// A key test and a validation task against the 401 upstream.
	code, body := adminCall(t, p, "POST", "/api/keys/test-multiple", fmt.Sprintf(`{"group_id":%d,"keys_text":%q}`, gem.ID, secLeakProbe))
	if code != 200 || !bytes.Contains(body, []byte("API key not valid")) {
		t.Fatalf("test-multiple: %d %s", code, body)
	}
	// The key test answers with the key it tested (key_value, as gpt-load does): only the
	// upstream's message must be masked.
	leaks("the key test's message", bytes.ReplaceAll(body, []byte(`"key_value":"`+secLeakProbe+`"`), nil))
	adminOK(t, p, "POST", "/api/keys/validate-group", fmt.Sprintf(`{"group_id":%d}`, gem.ID), nil)

	// The request logs of every proxied call reach SQL.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var logs struct {
			Items []map[string]any `json:"items"`
		}
		adminOK(t, p, "GET", "/api/logs?page_size=100", "", &logs)
		if len(logs.Items) >= proxied {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d request logs after 30 s, want %d", len(logs.Items), proxied)
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, _ = adminCall(t, p, "GET", "/api/tasks/status", "")
	for _, path := range []string{"/api/logs?page_size=100", "/api/logs/export?format=csv-logs", "/api/dashboard/stats", "/api/groups",
		"/api/audit?page_size=100", "/api/tasks/status", "/api/settings", fmt.Sprintf("/api/groups/%d/stats", gem.ID)} {
		code, body := adminCall(t, p, "GET", path, "")
		if code != 200 {
			t.Fatalf("%s: %d %s", path, code, body)
		}
		leaks(path, body)
	}
	// Positive controls: the key exports show the key, and the output is at debug level.
	for _, path := range []string{fmt.Sprintf("/api/keys/export?group_id=%d", gem.ID), "/api/logs/export"} {
		if _, exported := adminCall(t, p, "GET", path, ""); !bytes.Contains(exported, []byte(secLeakProbe)) {
			t.Fatalf("the export %s does not show the key: %s", path, exported)
		}
	}
	if code := p.stop(t, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	out := []byte(p.out.String())
	if !bytes.Contains(out, []byte("DBG")) {
		t.Fatalf("no debug line in the output:\n%s", out)
	}
	leaks("the node's output", out)
	for what, secret := range map[string]string{"admin key": secAdmin, "proxy key": secGroupProxy} {
		if bytes.Contains(out, []byte(secret)) || bytes.Contains(out, []byte(url.QueryEscape(secret))) {
			t.Errorf("the node's output shows the %s", what)
		}
	}
	// The start-up warnings of this configuration: no ENCRYPTION_KEY, and AUTH_KEY seeded
	// as the global proxy key.
	for _, w := range []string{"ENCRYPTION_KEY is not set", "AUTH_KEY is also a proxy key in the global proxy_keys setting"} {
		if !bytes.Contains(out, []byte(w)) {
			t.Errorf("no warning %q in the output", w)
		}
	}
}
