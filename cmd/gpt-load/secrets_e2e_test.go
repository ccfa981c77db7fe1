package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"gpt-load/projections/sqlstore"
)

// The secrets of TestNoSecretAtRest. Each is distinctive, so a hit can only be a leak.
const (
	secAdmin       = "adm-Priv-0a1b2c3d4e5f-e2e" // AUTH_KEY: the admin key, and the first global proxy key
	secGlobalProxy = "sk-glob-Proxy-7f3a9c2e5b1d"
	secGroupProxy  = "sk-grp-Proxy-1c2d3e4f5a6b"
	secHeader      = "Bearer hdr+Tok/en=9e8d7c6b" // a header rule value; + / = escape differently
	secUpGood      = "sk-upGood-aaaa1111bbbb2222"
	secUpBad       = "sk-upBad-cccc3333dddd4444"
	secGemini      = "AIzaGem-Priv-0011223344"
	secProxyPass   = "pxPass+5e6f/7a8b" // user:password of a group's proxy_url
	secGlobalPass  = "gpPass-9f8e7d6c"  // user:password of the global proxy_url, later cleared
	secUpPass      = "upPass-1a2b3c4d"  // user:password in an upstream URL
)

// encodings lists the forms in which a secret could rest on disk.
func encodings(s string) map[string]string {
	return map[string]string{
		"raw":          s,
		"query-escape": url.QueryEscape(s),
		"path-escape":  url.PathEscape(s),
		"userinfo":     url.UserPassword("u", s).String()[2:],
		"base64":       base64.StdEncoding.EncodeToString([]byte(s)),
		"base64-raw":   base64.RawStdEncoding.EncodeToString([]byte(s)),
		"base64-url":   base64.RawURLEncoding.EncodeToString([]byte(s)),
		"hex":          hex.EncodeToString([]byte(s)),
	}
}

// adminCall calls the admin API of p with the admin key and returns status and body.
func adminCall(t *testing.T, p *proc, method, path, body string) (int, []byte) {
	t.Helper()
	return adminRequest(t, p.port, secAdmin, method, path, body)
}

// adminOK calls the admin API and decodes the envelope's data into out (if not nil).
func adminOK(t *testing.T, p *proc, method, path, body string, out any) {
	t.Helper()
	adminData(t, p.port, secAdmin, method, path, body, out)
}

// sqlTarget is the database a node writes to in TestNoSecretAtRest.
type sqlTarget struct {
	name string
	dsn  func(t *testing.T, dataDir string) string // "" env: the default SQLite file
}

// TestNoSecretAtRest drives the built binary with ENCRYPTION_KEY and AUTH_KEY set through
// everything that records secrets: settings with global proxy keys and a proxy URL, groups
// with proxy keys, header rules, proxy URLs and credentials in upstream URLs, key imports,
// proxied requests that succeed and fail, an export, a restart. Then no file under
// DATA_DIR and no SQL table holds any of those secrets, in clear or in a common encoding.
// It runs on SQLite, and on PostgreSQL when TEST_POSTGRES_DSN is set.
func TestNoSecretAtRest(t *testing.T) {
	t.Parallel()
	targets := []sqlTarget{
		{name: "sqlite", dsn: func(*testing.T, string) string { return "" }},
		{name: "postgres", dsn: freshPostgres},
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			testNoSecretAtRest(t, tg)
		})
	}
}

func testNoSecretAtRest(t *testing.T, tg sqlTarget) {
	// The service calls the upstream on its own too (key validation): what it saw is
	// read while such a call may be running.
	var headerSeen, geminiSeen atomic.Value
	headerSeen.Store("")
	geminiSeen.Store("")
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(r.URL.Path, ":generateContent") {
			geminiSeen.Store(r.URL.Query().Get("key") + r.Header.Get("X-Goog-Api-Key"))
			io.WriteString(w, `{"candidates":[{"content":{"parts":[{"text":"hi"}]}}],"usageMetadata":{"promptTokenCount":1,"candidatesTokenCount":1,"totalTokenCount":2}}`)
			return
		}
		headerSeen.Store(r.Header.Get("X-Upstream-Token"))
		body, _ := io.ReadAll(r.Body)
		switch {
		case bytes.Contains(body, []byte(`"boom"`)):
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"error":{"message":"upstream exploded","type":"server_error"}}`)
		case r.Header.Get("Authorization") != "Bearer "+secUpGood:
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}`)
		default:
			io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
		}
	}))
	defer upstream.Close()

	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	env := []string{"PORT=" + strconv.Itoa(freePort(t)), "HOST=127.0.0.1", "AUTH_KEY=" + secAdmin,
		"ENCRYPTION_KEY=e2e-encryption-key-Str0ng-0123456789"}
	dsn := tg.dsn(t, dataDir)
	if dsn != "" {
		env = append(env, "DATABASE_DSN="+dsn)
	}
	p := startProc(t, dir, env...)
	p.waitHealthy(t)

	// Settings: more global proxy keys, and a proxy URL with a password that is cleared
	// again (it stays in the log).
	adminOK(t, p, "PUT", "/api/settings", `{"proxy_keys":"`+secAdmin+`,`+secGlobalProxy+`","proxy_url":"http://gpuser:`+secGlobalPass+`@127.0.0.1:9"}`, nil)
	adminOK(t, p, "PUT", "/api/settings", `{"proxy_url":""}`, nil)

	var oa, gem, idle struct {
		ID uint64 `json:"id"`
	}
	adminOK(t, p, "POST", "/api/groups", `{"name":"oa-secrets","channel_type":"openai","test_model":"gpt-e2e-model",
		"proxy_keys":"`+secGroupProxy+`","header_rules":[{"key":"X-Upstream-Token","value":"`+secHeader+`","action":"set"}],
		"upstreams":[{"url":"`+upstream.URL+`","weight":1}]}`, &oa)
	adminOK(t, p, "POST", "/api/groups", `{"name":"gem-secrets","channel_type":"gemini","test_model":"gemini-e2e",
		"proxy_keys":"`+secGroupProxy+`","upstreams":[{"url":"`+upstream.URL+`","weight":1}]}`, &gem)
	proxyURL := (&url.URL{Scheme: "http", User: url.UserPassword("pxuser", secProxyPass), Host: "127.0.0.1:9"}).String()
	adminOK(t, p, "POST", "/api/groups", `{"name":"idle-secrets","channel_type":"openai","test_model":"m",
		"config":{"proxy_url":"`+proxyURL+`"},"upstreams":[{"url":"https://upuser:`+secUpPass+`@127.0.0.1:9/v1","weight":1}]}`, &idle)
	// An update carries the whole group again.
	adminOK(t, p, "PUT", fmt.Sprintf("/api/groups/%d", oa.ID), `{"description":"updated","proxy_keys":"`+secGroupProxy+`"}`, nil)
	adminOK(t, p, "POST", "/api/keys/add-multiple", fmt.Sprintf(`{"group_id":%d,"keys_text":"%s\n%s"}`, oa.ID, secUpGood, secUpBad), nil)
	adminOK(t, p, "POST", "/api/keys/add-multiple", fmt.Sprintf(`{"group_id":%d,"keys_text":"%s"}`, gem.ID, secGemini), nil)

	proxy := func(path, auth, model string) int {
		req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d%s", p.port, path),
			strings.NewReader(`{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`))
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := 0; i < 6; i++ { // the bad key fails and is retried, then blacklisted
		if code := proxy("/proxy/oa-secrets/v1/chat/completions", secGroupProxy, "gpt-e2e-model"); code != 200 {
			t.Fatalf("proxied call %d: %d", i, code)
		}
	}
	if headerSeen.Load() != secHeader {
		t.Fatalf("the upstream saw X-Upstream-Token %q, want the header rule's value", headerSeen.Load())
	}
	for _, k := range []string{secGlobalProxy, secAdmin} { // proxy keys in the query, as Gemini clients send them
		if code := proxy("/proxy/oa-secrets/v1/chat/completions?key="+url.QueryEscape(k)+"&trace=1", "", "gpt-e2e-model"); code != 200 {
			t.Fatalf("proxied call with ?key=: %d", code)
		}
	}
	if code := proxy("/proxy/oa-secrets/v1/chat/completions", secGroupProxy, "boom"); code < 500 {
		t.Fatalf("failing upstream answered %d", code)
	}
	if code := proxy("/proxy/gem-secrets/v1beta/models/gemini-e2e:generateContent?key="+url.QueryEscape(secGroupProxy), "", "x"); code != 200 {
		t.Fatalf("gemini call: %d", code)
	}
	if geminiSeen.Load() != secGemini {
		t.Fatalf("the gemini upstream saw key %q", geminiSeen.Load())
	}

	// The export is recorded in the audit trail, with who, which group and which filter.
	code, exported := adminCall(t, p, "GET", fmt.Sprintf("/api/keys/export?group_id=%d&status=all", oa.ID), "")
	if code != 200 || !bytes.Contains(exported, []byte(secUpGood)) {
		t.Fatalf("export: %d %q", code, exported)
	}
	var audit struct {
		Items []struct {
			Type    string         `json:"type"`
			Actor   string         `json:"actor"`
			Details map[string]any `json:"details"`
		} `json:"items"`
	}
	adminOK(t, p, "GET", "/api/audit?type=keys.exported", "", &audit)
	if len(audit.Items) != 1 || audit.Items[0].Actor != "admin" || audit.Items[0].Details["group_id"] != float64(oa.ID) ||
		audit.Items[0].Details["status"] != "all" || audit.Items[0].Details["group_name"] != "oa-secrets" || audit.Items[0].Details["source"] != "127.0.0.1" {
		t.Fatalf("audit of the export: %+v", audit.Items)
	}
	// The audit trail still reads the sealed events, masked.
	code, full := adminCall(t, p, "GET", "/api/audit?page_size=100", "")
	if code != 200 || !bytes.Contains(full, []byte("oa-secrets")) || !bytes.Contains(full, []byte("settings.changed")) {
		t.Fatalf("audit trail: %d %s", code, full)
	}
	for _, s := range []string{secAdmin, secGlobalProxy, secGroupProxy, secUpGood, secHeader, secGlobalPass, secProxyPass, secUpPass} {
		if bytes.Contains(full, []byte(s)) {
			t.Errorf("the audit trail shows %q", s)
		}
	}

	// Oversized fields and out-of-range settings are refused naming the field.
	code, body := adminCall(t, p, "POST", "/api/groups", `{"name":"big","channel_type":"openai","test_model":"m",
		"upstreams":[{"url":"`+upstream.URL+`","weight":1}],"param_overrides":{"p":"`+strings.Repeat("x", 100<<10)+`"}}`)
	if code != 400 || !bytes.Contains(body, []byte("param_overrides")) {
		t.Errorf("100 KiB param_overrides: %d %s, want 400 naming the field", code, body)
	}
	code, body = adminCall(t, p, "POST", "/api/groups", `{"name":"big","channel_type":"openai","test_model":"m",
		"upstreams":[{"url":"`+upstream.URL+`","weight":1}],"param_overrides":{"p":"`+strings.Repeat("x", 3<<20)+`"}}`)
	if code != 400 && code != 413 {
		t.Errorf("3 MB param_overrides: %d %.200s, want 400 or 413", code, body)
	}
	code, body = adminCall(t, p, "PUT", "/api/settings", `{"max_retries":50}`)
	if code != 400 || !bytes.Contains(body, []byte("max_retries")) || !bytes.Contains(body, []byte("between 0 and 10")) {
		t.Errorf("max_retries 50: %d %s", code, body)
	}

	// A restart reads the sealed log (and snapshot) back: the group still serves.
	if code := p.stop(t, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	p = startProc(t, dir, env...)
	p.waitHealthy(t)
	if code := proxy("/proxy/oa-secrets/v1/chat/completions", secGroupProxy, "gpt-e2e-model"); code != 200 {
		t.Fatalf("proxied call after the restart: %d", code)
	}
	if code := proxy("/proxy/oa-secrets/v1/chat/completions", secGlobalProxy, "gpt-e2e-model"); code != 200 {
		t.Fatalf("global proxy key after the restart: %d", code)
	}
	if headerSeen.Load() != secHeader {
		t.Fatalf("after the restart the upstream saw X-Upstream-Token %q", headerSeen.Load())
	}
	if code := p.stop(t, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}

	secrets := map[string]string{
		"admin key": secAdmin, "global proxy key": secGlobalProxy, "group proxy key": secGroupProxy,
		"header rule value": secHeader, "upstream key": secUpGood, "blacklisted upstream key": secUpBad,
		"gemini upstream key": secGemini, "group proxy_url password": secProxyPass,
		"global proxy_url password": secGlobalPass, "upstream URL password": secUpPass,
	}
	// Positive controls: the scan reads the stores in clear where nothing is secret.
	var sawGroupName, sawReqLog, sawSnapshot bool
	files := 0
	err := filepath.WalkDir(dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dataDir, path)
		sawGroupName = sawGroupName || strings.Contains(rel, "GL_EVENTS") && bytes.Contains(b, []byte("oa-secrets"))
		sawReqLog = sawReqLog || strings.Contains(rel, "GL_REQLOG") && bytes.Contains(b, []byte("/v1/chat/completions"))
		sawSnapshot = sawSnapshot || strings.HasSuffix(rel, "state.snap")
		for what, s := range secrets {
			for enc, form := range encodings(s) {
				if bytes.Contains(b, []byte(form)) {
					t.Errorf("%s holds the %s (%s form)", rel, what, enc)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !sawGroupName || !sawReqLog || !sawSnapshot {
		t.Fatalf("the scan of %d files missed its controls: group name in GL_EVENTS %v, request path in GL_REQLOG %v, snapshot %v",
			files, sawGroupName, sawReqLog, sawSnapshot)
	}

	// Every SQL table, row by row.
	if dsn == "" {
		dsn = filepath.Join(dataDir, "gpt-load.db")
	}
	tables, rows := scanSQL(t, dsn, func(table, cell string) {
		for what, s := range secrets {
			for enc, form := range encodings(s) {
				if strings.Contains(cell, form) {
					t.Errorf("SQL table %s holds the %s (%s form)", table, what, enc)
				}
			}
		}
	})
	t.Logf("%s: scanned %d files under DATA_DIR, %d SQL tables with %d rows", tg.name, files, tables, rows)
}

// scanSQL hands every cell of every table of the database dsn to check.
func scanSQL(t *testing.T, dsn string, check func(table, cell string)) (tables, rows int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sqlstore.Open(ctx, dsn, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	list := `SELECT name FROM sqlite_master WHERE type = 'table'`
	if sqlstore.DialectOf(dsn) == sqlstore.Postgres {
		list = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`
	}
	var names []string
	if err := db.NewRaw(list).Scan(ctx, &names); err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("no SQL table to scan")
	}
	for _, name := range names {
		tables++
		rs, err := db.QueryContext(ctx, `SELECT * FROM "`+name+`"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rs.Columns()
		for rs.Next() {
			rows++
			cells := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range cells {
				ptrs[i] = &cells[i]
			}
			if err := rs.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for _, c := range cells {
				if b, ok := c.([]byte); ok {
					c = string(b)
				}
				check(name, fmt.Sprint(c))
			}
		}
		if err := rs.Err(); err != nil {
			t.Fatal(err)
		}
		rs.Close()
	}
	return tables, rows
}

// freshPostgres creates a database of its own on the server TEST_POSTGRES_DSN names, drops
// it when the test ends, and returns its DSN; it skips without TEST_POSTGRES_DSN.
func freshPostgres(t *testing.T, _ string) string {
	base := os.Getenv("TEST_POSTGRES_DSN")
	if base == "" {
		t.Skip("TEST_POSTGRES_DSN is not set: skipping the PostgreSQL scan (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("TEST_POSTGRES_DSN: %v", err)
	}
	name := fmt.Sprintf("gl_secrets_%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := sqlstore.Open(ctx, base, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
		admin.Close()
	})
	u.Path = "/" + name
	return u.String()
}
