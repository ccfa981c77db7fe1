package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/events/eventstest"
	"gpt-load/httpapi"
)

// recordingProxy stands for the proxy: it counts the requests that reach it.
type recordingProxy struct{ calls atomic.Int64 }

func (p *recordingProxy) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	p.calls.Add(1)
	io.WriteString(w, `{"ok":true}`)
}

// TestProxyWaitsForCatchUp: until the projections have caught up, the proxy is not
// reached; clients get 503 with Retry-After in their provider's error shape, and admin
// routes 503 with Retry-After too.
func TestProxyWaitsForCatchUp(t *testing.T) {
	t.Parallel()
	gate := &atomic.Bool{}
	gate.Store(true)
	px := &recordingProxy{}
	n := startNode(t, nodeOpts{gate: gate, proxy: px})
	n.group("oai")
	n.do(http.MethodPost, "/api/groups", `{"name":"claude","channel_type":"anthropic","test_model":"m","upstreams":[{"url":"https://a.example","weight":1}]}`).ok(t, nil)
	gate.Store(false)

	for _, c := range []struct {
		path  string
		check func(body map[string]any) bool
	}{
		{"/proxy/oai/v1/chat/completions", func(b map[string]any) bool {
			e, _ := b["error"].(map[string]any)
			return e["message"] != "" && e["type"] == "server_error" && b["code"] == "SERVICE_UNAVAILABLE"
		}},
		{"/proxy/claude/v1/messages", func(b map[string]any) bool {
			e, _ := b["error"].(map[string]any)
			return b["type"] == "error" && e["type"] == "overloaded_error"
		}},
		{"/proxy/not-read-yet/v1/chat/completions", func(b map[string]any) bool {
			_, ok := b["error"].(map[string]any)
			return ok
		}},
	} {
		r := n.send(http.MethodPost, c.path, `{"model":"m"}`, "Authorization", "Bearer sk-global-proxy-key")
		var body map[string]any
		json.Unmarshal(r.body, &body)
		if r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || !c.check(body) {
			t.Errorf("%s while replaying: %d Retry-After=%q %s", c.path, r.code, r.header.Get("Retry-After"), r.body)
		}
	}
	if got := px.calls.Load(); got != 0 {
		t.Fatalf("the proxy served %d requests before the node caught up", got)
	}
	r := n.do(http.MethodGet, "/api/groups", nil)
	r.fails(t, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE")
	if r.header.Get("Retry-After") == "" {
		t.Errorf("admin 503 without Retry-After: %v", r.header)
	}

	gate.Store(true)
	if r := n.send(http.MethodPost, "/proxy/oai/v1/chat/completions", `{}`); r.code != http.StatusOK || px.calls.Load() != 1 {
		t.Fatalf("caught up: %d %s, proxy calls %d", r.code, r.body, px.calls.Load())
	}
}

// TestCORS: a preflight from an allowed origin is answered without a credential and
// echoes the origin; another origin gets no CORS header; each setting changes the answer.
func TestCORS(t *testing.T) {
	t.Parallel()
	base := httpapi.CORS{Enabled: true, AllowedOrigins: []string{"https://ui.example"},
		AllowedMethods: []string{"GET", "POST", "PUT", "DELETE", "OPTIONS"}, AllowedHeaders: []string{"*"}}
	with := func(f func(c *httpapi.CORS)) httpapi.CORS {
		c := base
		f(&c)
		return c
	}
	type want struct {
		origin      string // Access-Control-Allow-Origin, "" for none
		credentials bool
		methods     string // Access-Control-Allow-Methods of a preflight
	}
	for _, tc := range []struct {
		name    string
		cors    httpapi.CORS
		origin  string
		method  string // Access-Control-Request-Method
		headers string // Access-Control-Request-Headers
		want    want
	}{
		{"listed origin", base, "https://ui.example", "PUT", "authorization", want{origin: "https://ui.example", methods: "PUT"}},
		{"other origin", base, "https://evil.example", "PUT", "", want{}},
		{"disabled", with(func(c *httpapi.CORS) { c.Enabled = false }), "https://ui.example", "PUT", "", want{}},
		{"any origin is echoed", with(func(c *httpapi.CORS) { c.AllowedOrigins = []string{"*"} }), "https://other.example", "GET", "", want{origin: "https://other.example", methods: "GET"}},
		{"credentials", with(func(c *httpapi.CORS) { c.AllowCredentials = true }), "https://ui.example", "GET", "", want{origin: "https://ui.example", credentials: true, methods: "GET"}},
		{"method not allowed", with(func(c *httpapi.CORS) { c.AllowedMethods = []string{"GET"} }), "https://ui.example", "DELETE", "", want{}},
		{"header not allowed", with(func(c *httpapi.CORS) { c.AllowedHeaders = []string{"Content-Type"} }), "https://ui.example", "GET", "authorization", want{}},
		{"header allowed", with(func(c *httpapi.CORS) { c.AllowedHeaders = []string{"Content-Type", "Authorization"} }), "https://ui.example", "GET", "authorization", want{origin: "https://ui.example", methods: "GET"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := httpapi.New(httpapi.Deps{Log: zerolog.Nop(), Ready: readiness{true, 1}, CORS: tc.cors})
			for _, path := range []string{"/api/groups", "/proxy/g/v1/chat/completions", "/health"} {
				req := httptest.NewRequest(http.MethodOptions, path, nil)
				req.Header.Set("Origin", tc.origin)
				req.Header.Set("Access-Control-Request-Method", tc.method)
				if tc.headers != "" {
					req.Header.Set("Access-Control-Request-Headers", tc.headers)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				got := want{
					origin:      rec.Header().Get("Access-Control-Allow-Origin"),
					credentials: rec.Header().Get("Access-Control-Allow-Credentials") == "true",
					methods:     rec.Header().Get("Access-Control-Allow-Methods"),
				}
				if got != tc.want {
					t.Errorf("preflight %s: %d %+v, want %+v", path, rec.Code, got, tc.want)
				}
				if tc.cors.Enabled && rec.Code >= 300 {
					t.Errorf("preflight %s answered %d", path, rec.Code)
				}
			}
			// An actual request from the origin carries the same origin header.
			req := httptest.NewRequest(http.MethodGet, "/health", nil)
			req.Header.Set("Origin", tc.origin)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			wantOrigin := tc.want.origin
			if tc.name == "method not allowed" || tc.name == "header not allowed" {
				wantOrigin = tc.origin // GET without custom headers is allowed
			}
			if got := rec.Header().Get("Access-Control-Allow-Origin"); got != wantOrigin {
				t.Errorf("GET /health from %s: Access-Control-Allow-Origin %q, want %q", tc.origin, got, wantOrigin)
			}
		})
	}
}

// countingBody is a request body that never ends, a JSON string that goes on, and counts
// what was read of it.
type countingBody struct {
	prefix string
	read   atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	done := b.read.Load()
	for i := range p {
		if at := done + int64(i); at < int64(len(b.prefix)) {
			p[i] = b.prefix[at]
		} else {
			p[i] = 'x'
		}
	}
	b.read.Add(int64(len(p)))
	return len(p), nil
}

func (b *countingBody) Close() error { return nil }

// TestBodyLimits: nothing of a body is read before the caller is known, a declared length
// over the route's limit is refused unread, and a body without a length is read only up
// to the limit.
func TestBodyLimits(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	g := n.group("limits")
	for _, c := range []struct {
		name     string
		path     string
		auth     bool
		length   int64 // -1: chunked
		status   int
		maxRead  int64
		wantCode string
	}{
		{"login, declared 200 MB", "/api/auth/login", false, 200 << 20, 413, 0, ""},
		{"login, chunked", "/api/auth/login", false, -1, 413, 64 << 10, ""},
		{"admin route without key, declared", "/api/keys/add-multiple", false, 200 << 20, 401, 0, "UNAUTHORIZED"},
		{"admin route without key, chunked", "/api/keys/add-multiple", false, -1, 401, 0, "UNAUTHORIZED"},
		{"upload without key, chunked", "/api/keys/add-async", false, -1, 401, 0, "UNAUTHORIZED"},
		{"admin route with key, declared", "/api/groups", true, 200 << 20, 413, 0, "BAD_REQUEST"},
		{"admin route with key, chunked", "/api/keys/add-multiple", true, -1, 413, 6 << 20, "BAD_REQUEST"},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := &countingBody{prefix: `{"auth_key":"`}
			if c.path != "/api/auth/login" {
				body.prefix = fmt.Sprintf(`{"group_id":%d,"keys_text":"`, g)
			}
			req := httptest.NewRequest(http.MethodPost, c.path, body)
			req.ContentLength = c.length
			req.Header.Set("Content-Type", "application/json")
			if c.auth {
				req.Header.Set("Authorization", "Bearer "+testAuthKey)
			}
			rec := httptest.NewRecorder()
			n.h.ServeHTTP(rec, req)
			if rec.Code != c.status {
				t.Fatalf("%d %s, want %d", rec.Code, rec.Body, c.status)
			}
			if c.wantCode != "" && !strings.Contains(rec.Body.String(), `"code":"`+c.wantCode+`"`) {
				t.Errorf("body %s", rec.Body)
			}
			if got := body.read.Load(); got > c.maxRead {
				t.Errorf("read %d bytes of the body, want at most %d", got, c.maxRead)
			}
		})
	}
	// The largest legal synchronous request still passes: 5000 keys of the longest length.
	var b strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&b, "%0400d\\n", i)
	}
	raw := fmt.Sprintf(`{"group_id":%d,"keys_text":"%s"}`, g, b.String())
	var res struct {
		Added int `json:"added_count"`
	}
	n.do(http.MethodPost, "/api/keys/add-multiple", raw).ok(t, &res)
	if res.Added != 5000 {
		t.Fatalf("added %d", res.Added)
	}
}

// TestLongestKeysFitTheLog: a batch of keys of the longest accepted length, encrypted,
// makes events the log accepts.
func TestLongestKeysFitTheLog(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{password: "a-long-encryption-password-for-tests"})
	g := n.group("long")
	var b strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&b, "%0*d\n", domain.MaxKeyBytes, i)
	}
	var res struct {
		Added int `json:"added_count"`
	}
	n.do(http.MethodPost, "/api/keys/add-multiple", map[string]any{"group_id": g, "keys_text": b.String()}).ok(t, &res)
	if res.Added != 1000 {
		t.Fatalf("added %d", res.Added)
	}
}

// blockingBody is a request body that blocks until released.
type blockingBody struct{ release chan struct{} }

func (b blockingBody) Read([]byte) (int, error) { <-b.release; return 0, io.EOF }
func (b blockingBody) Close() error             { return nil }

// TestAdminInFlightBound: beyond MaxRequests admin requests in flight, the next one is
// answered 429 with Retry-After at once; login has its own bound.
func TestAdminInFlightBound(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{deps: func(d *httpapi.Deps) { d.MaxRequests = 2 }})
	body := blockingBody{release: make(chan struct{})}
	var wg sync.WaitGroup
	var held atomic.Int64
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := httptest.NewRequest(http.MethodPost, "/api/keys/add-multiple", body)
			req.Header.Set("Authorization", "Bearer "+testAuthKey)
			held.Add(1)
			n.h.ServeHTTP(httptest.NewRecorder(), req)
		}()
	}
	eventstest.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if r := n.do(http.MethodGet, "/api/groups", nil); r.code != http.StatusTooManyRequests {
			return fmt.Errorf("%d with %d held", r.code, held.Load())
		}
		return nil
	})
	r := n.do(http.MethodGet, "/api/groups", nil)
	r.fails(t, http.StatusTooManyRequests, "TOO_MANY_REQUESTS")
	if r.header.Get("Retry-After") == "" {
		t.Errorf("429 without Retry-After")
	}
	if r := n.send(http.MethodPost, "/api/auth/login", `{"auth_key":"`+testAuthKey+`"}`); r.code != http.StatusOK {
		t.Errorf("login while the admin routes are busy: %d %s", r.code, r.body)
	}
	close(body.release)
	wg.Wait()
	n.do(http.MethodGet, "/api/groups", nil).ok(t, nil)
}

// fakeLog is the end of the log and the connection as /health sees them.
type fakeLog struct {
	mu     sync.Mutex
	seq    uint64
	err    error
	status nats.Status
}

func (f *fakeLog) Position(ctx context.Context) (events.Position, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return events.Position{LastSeq: f.seq}, f.err
}

func (f *fakeLog) Status() nats.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

func (f *fakeLog) set(seq uint64, err error, st nats.Status) {
	f.mu.Lock()
	f.seq, f.err, f.status = seq, err, st
	f.mu.Unlock()
}

// settableReady is a readiness whose applied sequence a test sets.
type settableReady struct{ applied atomic.Uint64 }

func (r *settableReady) CaughtUp() bool  { return true }
func (r *settableReady) Applied() uint64 { return r.applied.Load() }

// TestHealthReportsLagAndJetStream walks /health through a JetStream outage and a
// projection that falls behind, on a clock the test moves.
func TestHealthReportsLagAndJetStream(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	lg := &fakeLog{seq: 10, status: nats.CONNECTED}
	ready := &settableReady{}
	ready.applied.Store(10)
	h := httpapi.New(httpapi.Deps{Log: zerolog.Nop(), Ready: ready, Now: clock, Started: clock(),
		Stream: lg, Conn: lg})
	type health struct {
		Status      string `json:"status"`
		Projections struct {
			Lag       *uint64 `json:"lag"`
			StreamSeq *uint64 `json:"stream_seq"`
		} `json:"projections"`
		NATS struct {
			Connection string `json:"connection"`
			JetStream  string `json:"jetstream"`
		} `json:"nats"`
	}
	get := func(step string, wantCode int, wantStatus string, wantLag uint64) health {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
		var b health
		json.Unmarshal(rec.Body.Bytes(), &b)
		if rec.Code != wantCode || b.Status != wantStatus {
			t.Fatalf("%s: %d %s, want %d %s", step, rec.Code, rec.Body, wantCode, wantStatus)
		}
		if wantCode == http.StatusServiceUnavailable && rec.Header().Get("Retry-After") == "" {
			t.Errorf("%s: 503 without Retry-After", step)
		}
		if wantLag != ^uint64(0) && (b.Projections.Lag == nil || *b.Projections.Lag != wantLag) {
			t.Fatalf("%s: lag %v, want %d (%s)", step, b.Projections.Lag, wantLag, rec.Body)
		}
		return b
	}
	const any = ^uint64(0)

	b := get("in step", 200, "healthy", 0)
	if b.NATS.Connection != "CONNECTED" || b.NATS.JetStream != "ok" {
		t.Fatalf("nats %+v", b.NATS)
	}

	// JetStream out of reach: degraded at first, unhealthy after a few seconds, healthy
	// again once back.
	lg.set(10, errors.New("nats: timeout"), nats.CONNECTED)
	advance(2 * time.Second)
	get("outage begins", 200, "degraded", any)
	advance(5 * time.Second)
	get("outage of 5s", 503, "unhealthy", any)
	lg.set(10, nil, nats.CONNECTED)
	advance(2 * time.Second)
	get("back", 200, "healthy", 0)
	lg.set(10, nil, nats.RECONNECTING)
	advance(2 * time.Second)
	if b := get("connection lost", 200, "degraded", any); b.NATS.Connection != "RECONNECTING" {
		t.Fatalf("connection %q", b.NATS.Connection)
	}
	advance(6 * time.Second)
	get("connection lost for 6s", 503, "unhealthy", any)
	lg.set(10, nil, nats.CONNECTED)
	advance(2 * time.Second)
	get("reconnected", 200, "healthy", 0)

	// A lag that shrinks is fine; one that keeps growing is not.
	lg.set(20, nil, nats.CONNECTED)
	advance(2 * time.Second)
	get("behind", 200, "healthy", 10)
	ready.applied.Store(15)
	advance(11 * time.Second)
	get("catching up", 200, "healthy", 5)
	lg.set(30, nil, nats.CONNECTED)
	advance(11 * time.Second)
	get("falling behind", 503, "unhealthy", 15)
	ready.applied.Store(30)
	advance(2 * time.Second)
	get("caught up again", 200, "healthy", 0)
}

type fakeLeader struct{ node, self string }

func (f fakeLeader) Leader() string { return f.node }
func (f fakeLeader) Leading() bool  { return f.node == f.self }

type fakeDB struct {
	mu  sync.Mutex
	err error
}

func (f *fakeDB) PingContext(context.Context) error { f.mu.Lock(); defer f.mu.Unlock(); return f.err }
func (f *fakeDB) set(err error)                     { f.mu.Lock(); f.err = err; f.mu.Unlock() }

// TestHealthReportsLeaderAndDatabase: /health names the leader, and a database out of
// reach makes the node degraded (the proxy still serves; logs wait in JetStream).
func TestHealthReportsLeaderAndDatabase(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	db := &fakeDB{}
	ready := &settableReady{}
	h := httpapi.New(httpapi.Deps{Log: zerolog.Nop(), Ready: ready, Now: clock, Started: clock(),
		Health: httpapi.HealthConfig{Leader: fakeLeader{node: "gl-2", self: "gl-1"}, Database: db}})
	type health struct {
		Status string `json:"status"`
		Leader struct {
			Node string `json:"node"`
			Self bool   `json:"self"`
		} `json:"leader"`
		Database struct {
			Status string `json:"status"`
			Error  string `json:"error"`
		} `json:"database"`
	}
	get := func(wantCode int) health {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
		var b health
		json.Unmarshal(rec.Body.Bytes(), &b)
		if rec.Code != wantCode {
			t.Fatalf("%d %s, want %d", rec.Code, rec.Body, wantCode)
		}
		return b
	}
	if b := get(200); b.Status != "healthy" || b.Leader.Node != "gl-2" || b.Leader.Self || b.Database.Status != "ok" {
		t.Fatalf("%+v", b)
	}
	db.set(errors.New("connection refused"))
	advance(2 * time.Second)
	if b := get(200); b.Status != "degraded" || b.Database.Status != "unreachable" || b.Database.Error != "connection refused" {
		t.Fatalf("database down: %+v", b)
	}
	db.set(nil)
	advance(2 * time.Second)
	if b := get(200); b.Status != "healthy" || b.Database.Status != "ok" {
		t.Fatalf("database back: %+v", b)
	}
}
