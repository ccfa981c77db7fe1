package proxy_test

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gpt-load/domain"
	"gpt-load/events/eventstest"
	"gpt-load/projections"
	"gpt-load/proxy"
)

func TestProxyForwardsWithUpstreamKeyOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	up := newUpstream(t, nil)
	gid := e.group("g1", groupOpts{upstreams: []string{up.URL + "/base/"}})
	e.addKeys(gid, "sk-upstream-1")

	for _, tc := range []struct {
		name string
		hdr  []string
		url  string
	}{
		{"bearer", []string{"Authorization", "Bearer sk-group-g1"}, e.url("g1", "/v1/chat/completions?a=1")},
		{"x-api-key", []string{"X-Api-Key", "sk-global"}, e.url("g1", "/v1/chat/completions?a=1")},
		{"x-goog-api-key", []string{"X-Goog-Api-Key", "sk-global"}, e.url("g1", "/v1/chat/completions?a=1")},
		{"query", nil, e.url("g1", "/v1/chat/completions?key=sk-group-g1&a=1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.do("POST", tc.url, "", `{"model":"gpt-test","messages":[]}`, tc.hdr...)
			if resp.StatusCode != 200 || !strings.Contains(body, "hello") {
				t.Fatalf("status %d body %s", resp.StatusCode, body)
			}
			c := up.Calls()[len(up.Calls())-1]
			if c.Key != "sk-upstream-1" || c.Path != "/base/v1/chat/completions" || c.Query != "a=1" {
				t.Fatalf("upstream got %+v", c)
			}
			for _, h := range []string{"X-Api-Key", "X-Goog-Api-Key", "Api-Key"} {
				if c.Header.Get(h) != "" {
					t.Fatalf("proxy key leaked upstream in %s", h)
				}
			}
		})
	}

	// Usage and fields land in the request log.
	logs := e.waitLogs(func(l []domain.RequestLog) error {
		if len(l) < 4 {
			return fmt.Errorf("%d logs", len(l))
		}
		return nil
	})
	l := logs[0]
	if l.GroupName != "g1" || l.StatusCode != 200 || !l.IsSuccess || l.RequestType != domain.RequestFinal ||
		l.PromptTokens != 7 || l.CompletionTokens != 3 || l.TotalTokens != 10 || l.Model != "gpt-test" ||
		l.KeyValue != "sk-upstream-1" || l.KeyHash == "" || l.ID == "" || !strings.HasPrefix(l.UpstreamAddr, up.URL+"/base/v1/chat/completions") {
		t.Fatalf("log %+v", l)
	}
	for _, l := range logs {
		if strings.Contains(l.RequestPath, "sk-group") {
			t.Fatalf("proxy key in the logged path %q", l.RequestPath)
		}
	}
}

func TestProxyAuthErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	up := newUpstream(t, nil)
	gid := e.group("a1", groupOpts{upstreams: []string{up.URL}, channel: "anthropic"})
	e.addKeys(gid, "sk-upstream")

	resp, body := e.do("POST", e.url("a1", "/v1/messages"), "", `{}`)
	if resp.StatusCode != 401 || !strings.Contains(body, `"code":"UNAUTHORIZED"`) || !strings.Contains(body, `"type":"authentication_error"`) {
		t.Fatalf("no key: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do("POST", e.url("a1", "/v1/messages"), "sk-wrong", `{}`)
	if resp.StatusCode != 401 {
		t.Fatalf("wrong key: %d %s", resp.StatusCode, body)
	}
	// A valid proxy key of another group cannot tell an unknown group from a group it
	// may not use: both answer the same 401, shaped by the path alone.
	other := e.group("b1", groupOpts{upstreams: []string{up.URL}})
	e.addKeys(other, "sk-upstream-b1")
	for _, path := range []string{"/v1/messages", "/v1/chat/completions", "/v1beta/models/m:generateContent"} {
		unknown, ubody := e.do("POST", e.url("nope", path), "sk-group-b1", `{}`)
		foreign, fbody := e.do("POST", e.url("a1", path), "sk-group-b1", `{}`)
		if unknown.StatusCode != 401 || foreign.StatusCode != 401 || ubody != fbody {
			t.Fatalf("%s: unknown group %d %s, another team's group %d %s", path, unknown.StatusCode, ubody, foreign.StatusCode, fbody)
		}
	}
	resp, body = e.do("POST", e.url("nope", "/v1/messages"), "", `{}`)
	if resp.StatusCode != 401 {
		t.Fatalf("unknown group without a key: %d %s", resp.StatusCode, body)
	}
	// Same for the integration info.
	unknown, ubody := e.do("GET", e.url("nope", "/api/integration/info?key=sk-group-b1"), "", "")
	foreign, fbody := e.do("GET", e.url("a1", "/api/integration/info?key=sk-group-b1"), "", "")
	if unknown.StatusCode != foreign.StatusCode || ubody != fbody {
		t.Fatalf("integration info: unknown group %d %s, another team's group %d %s", unknown.StatusCode, ubody, foreign.StatusCode, fbody)
	}
	if resp, _ := e.do("POST", e.url("b1", "/v1/chat/completions"), "sk-group-b1", `{}`); resp.StatusCode != 200 {
		t.Fatalf("own group: %d", resp.StatusCode)
	}
	if n := len(up.Calls()); n != 1 {
		t.Fatalf("%d upstream calls, want the own group's only", n)
	}
	// A proxy key removed from the group is refused at once.
	if _, err := e.cmd.UpdateGroup(context.Background(), "admin", gid, domain.GroupInput{ProxyKeys: new("sk-other")}); err != nil {
		t.Fatal(err)
	}
	resp, _ = e.do("POST", e.url("a1", "/v1/messages"), "sk-group-a1", `{}`)
	if resp.StatusCode != 401 {
		t.Fatalf("removed key: %d", resp.StatusCode)
	}
	resp, _ = e.do("POST", e.url("a1", "/v1/messages"), "sk-other", `{"model":"m"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("new key: %d", resp.StatusCode)
	}
}

// The failover tables of the issue.
func TestFailoverHalfThePoolRevoked(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
		switch {
		case c.Key == "bad-2":
			jsonError(w, 403, "Your account has been suspended; key "+c.Key)
			return
		case strings.HasPrefix(c.Key, "bad"):
			jsonError(w, 401, "Incorrect API key provided: "+c.Key)
			return
		}
		chatOK(w, "ok")
	})
	gid := e.group("half", groupOpts{upstreams: []string{up.URL}, config: map[string]any{"blacklist_threshold": 2, "max_retries": 5}})
	e.addKeys(gid, "bad-1", "good-1", "bad-2", "good-2", "bad-3", "good-3")

	for i := range 30 {
		resp, body := e.do("POST", e.url("half", "/v1/chat/completions"), "sk-global", `{"model":"m"}`)
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
		if strings.Contains(body, "bad-") {
			t.Fatalf("key leaked: %s", body)
		}
	}
	eventstest.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		for _, k := range []string{"bad-1", "bad-2", "bad-3"} {
			if st := e.key(gid, k); st.Status != domain.KeyInvalid {
				return fmt.Errorf("%s is %v with %d failures", k, st.Status, st.FailureCount)
			}
		}
		for _, k := range []string{"good-1", "good-2", "good-3"} {
			if st := e.key(gid, k); st.Status != domain.KeyActive || st.FailureCount != 0 {
				return fmt.Errorf("%s is %v", k, st.Status)
			}
		}
		return nil
	})
	if lk := e.key(gid, "bad-1"); !strings.Contains(lk.LastError, "****") || strings.Contains(lk.LastError, "bad-1") {
		t.Fatalf("last error not masked: %q", lk.LastError)
	}
	// Blacklisted keys are never used again.
	before := len(up.Calls())
	for range 6 {
		e.do("POST", e.url("half", "/v1/chat/completions"), "sk-global", `{"model":"m"}`)
	}
	for _, c := range up.Calls()[before:] {
		if strings.HasPrefix(c.Key, "bad") {
			t.Fatalf("blacklisted key %s used", c.Key)
		}
	}
	logs := e.waitLogs(func(l []domain.RequestLog) error {
		for _, x := range l {
			if x.RequestType == domain.RequestRetry && x.StatusCode == 401 {
				return nil
			}
		}
		return errors.New("no retry log")
	})
	for _, l := range logs {
		if l.RequestType == domain.RequestRetry && (l.IsSuccess || !strings.Contains(l.ErrorMessage, "****")) {
			t.Fatalf("retry log %+v", l)
		}
	}
}

func TestFailoverRateLimitCooldownThenBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	var limited atomic.Bool
	limited.Store(true)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
		if c.Key == "key-a" && limited.Load() {
			w.Header().Set("Retry-After", "1")
			jsonError(w, 429, "Rate limit reached")
			return
		}
		chatOK(w, "ok")
	})
	gid := e.group("rl", groupOpts{upstreams: []string{up.URL}})
	e.addKeys(gid, "key-a", "key-b")
	for range 4 {
		if resp, body := e.do("POST", e.url("rl", "/v1/chat/completions"), "sk-global", `{}`); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
	var until int64
	eventstest.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		k := e.key(gid, "key-a")
		if k.CooldownUntil == 0 || k.Status != domain.KeyActive || k.FailureCount != 0 {
			return fmt.Errorf("key-a: %+v", k)
		}
		until = k.CooldownUntil
		return nil
	})
	if d := time.Until(time.Unix(0, until)); d > 2*time.Second {
		t.Fatalf("cooldown of %v for Retry-After: 1", d)
	}
	// Resting: only key-b serves.
	before := len(up.Calls())
	for range 4 {
		e.do("POST", e.url("rl", "/v1/chat/completions"), "sk-global", `{}`)
	}
	if n := count(up.keys()[before:], "key-a"); n != 0 {
		t.Fatalf("resting key used %d times", n)
	}
	// Back by itself once the Retry-After has passed.
	limited.Store(false)
	eventstest.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		before := len(up.Calls())
		e.do("POST", e.url("rl", "/v1/chat/completions"), "sk-global", `{}`)
		e.do("POST", e.url("rl", "/v1/chat/completions"), "sk-global", `{}`)
		if count(up.keys()[before:], "key-a") == 0 {
			return errors.New("key-a not back yet")
		}
		return nil
	})
}

func TestFailover500DoesNotBlacklist(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
		jsonError(w, 500, "internal error")
	})
	gid := e.group("five", groupOpts{upstreams: []string{up.URL}, config: map[string]any{"blacklist_threshold": 1, "max_retries": 10}})
	e.addKeys(gid, "k1", "k2")
	for range 5 {
		resp, body := e.do("POST", e.url("five", "/v1/chat/completions"), "sk-global", `{}`)
		if resp.StatusCode != 500 || !strings.Contains(body, "internal error") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
	// A request never tries a key twice: 10 retries over 2 keys are 2 attempts.
	if n := len(up.Calls()); n != 10 {
		t.Fatalf("%d upstream calls, want 10 (one attempt per key)", n)
	}
	// A group of a single key retries it (another upstream may answer).
	one := e.group("five-one", groupOpts{upstreams: []string{up.URL}, config: map[string]any{"blacklist_threshold": 1, "max_retries": 2}})
	e.addKeys(one, "k-one")
	if resp, _ := e.do("POST", e.url("five-one", "/v1/chat/completions"), "sk-global", `{}`); resp.StatusCode != 500 {
		t.Fatalf("single key: %d", resp.StatusCode)
	}
	if n := len(up.Calls()) - 10; n != 3 {
		t.Fatalf("single key: %d upstream calls, want 3", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.h.Flush(ctx)
	e.store.Flush(ctx)
	for _, k := range []string{"k1", "k2", "k-one"} {
		g := gid
		if k == "k-one" {
			g = one
		}
		if st := e.key(g, k); st.Status != domain.KeyActive || st.FailureCount != 0 || st.CooldownUntil != 0 {
			t.Fatalf("%s penalised: %+v", k, st)
		}
	}
}

func TestFailover400IsNotRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
		w.Header().Set("X-Upstream", "yes")
		jsonError(w, 400, "bad request: messages missing")
	})
	gid := e.group("four", groupOpts{upstreams: []string{up.URL}})
	e.addKeys(gid, "k1", "k2", "k3")
	resp, body := e.do("POST", e.url("four", "/v1/chat/completions"), "sk-global", `{}`)
	if resp.StatusCode != 400 || !strings.Contains(body, "messages missing") || resp.Header.Get("X-Upstream") != "yes" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if n := len(up.Calls()); n != 1 {
		t.Fatalf("%d upstream calls, want 1", n)
	}
	e.waitLogs(func(l []domain.RequestLog) error {
		if len(l) != 1 || l[0].StatusCode != 400 || l[0].IsSuccess || l[0].RequestType != domain.RequestFinal {
			return fmt.Errorf("logs %+v", l)
		}
		return nil
	})
}

// Gemini reports a bad key as a 400 "API key not valid": it blames the key, so another key
// is tried even though 400 is not a failover status.
func TestGeminiInvalidKeyIsAnAuthFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
		if c.Key == "bad" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			io.WriteString(w, `{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT"}}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"candidates":[{"content":{"parts":[{"text":"hi"}],"role":"model"}}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":1,"totalTokenCount":5}}`)
	})
	gid := e.group("gem", groupOpts{upstreams: []string{up.URL}, channel: "gemini"})
	e.addKeys(gid, "bad", "good")
	for range 2 {
		resp, body := e.do("POST", e.url("gem", "/v1beta/models/gemini-pro:generateContent"), "", `{"contents":[]}`, "X-Goog-Api-Key", "sk-global")
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
	for _, c := range up.Calls() {
		if c.Query != "key="+c.Key {
			t.Fatalf("gemini key not in the query: %+v", c)
		}
	}
	eventstest.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if k := e.key(gid, "bad"); k.FailureCount == 0 {
			return errors.New("bad key not counted")
		}
		return nil
	})
	logs := e.waitLogs(func(l []domain.RequestLog) error {
		for _, x := range l {
			if x.IsSuccess && x.TotalTokens == 5 && x.Model == "gemini-pro" {
				return nil
			}
		}
		return fmt.Errorf("logs %+v", l)
	})
	for _, l := range logs {
		if strings.Contains(l.UpstreamAddr, "key=") {
			t.Fatalf("key in upstream addr %q", l.UpstreamAddr)
		}
	}
}

func TestTransportFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	reset := newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			conn.Close()
		}
	})
	good := newUpstream(t, nil)
	gid := e.group("tr", groupOpts{upstreams: []string{reset.URL, good.URL}, config: map[string]any{"blacklist_threshold": 1}})
	e.addKeys(gid, "k1")
	for range 4 {
		resp, body := e.do("POST", e.url("tr", "/v1/chat/completions"), "sk-global", `{}`)
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
	if len(reset.Calls()) == 0 {
		t.Fatal("the resetting upstream was never tried")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.h.Flush(ctx)
	e.store.Flush(ctx)
	if k := e.key(gid, "k1"); k.FailureCount != 0 || k.Status != domain.KeyActive {
		t.Fatalf("key penalised for a transport error: %+v", k)
	}
}

func TestSlowHeadersTimeOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	slow := newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	gid := e.group("slow", groupOpts{upstreams: []string{slow.URL}, config: map[string]any{"response_header_timeout": 1, "max_retries": 0}})
	e.addKeys(gid, "k1")
	start := time.Now()
	resp, body := e.do("POST", e.url("slow", "/v1/chat/completions"), "sk-global", `{}`)
	if resp.StatusCode != 500 || !strings.Contains(body, "UPSTREAM_ERROR") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestStreamCutAbortsClientWithoutPenalty(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"part\"}}]}\n\n")
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	gid := e.group("cut", groupOpts{upstreams: []string{up.URL}, config: map[string]any{"blacklist_threshold": 1}})
	e.addKeys(gid, "k1")
	req, _ := http.NewRequest("POST", e.url("cut", "/v1/chat/completions"), strings.NewReader(`{"stream":true}`))
	req.Header.Set("Authorization", "Bearer sk-global")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatalf("client saw a complete stream: %q", b)
	}
	if !strings.Contains(string(b), "part") {
		t.Fatalf("first event lost: %q", b)
	}
	e.waitLogs(func(l []domain.RequestLog) error {
		if len(l) != 1 || l[0].IsSuccess || !strings.Contains(l[0].ErrorMessage, "cut short") || !l[0].IsStream {
			return fmt.Errorf("logs %+v", l)
		}
		return nil
	})
	if k := e.key(gid, "k1"); k.FailureCount != 0 {
		t.Fatalf("key penalised: %+v", k)
	}
}

// Each SSE event reaches the client before the upstream sends the next one.
func TestSSEChunksReachClientOneByOne(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	got := make(chan string)
	const n = 5
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range n {
			fmt.Fprintf(w, "data: {\"choices\":[{\"delta\":{\"content\":\"e%d\"}}]}\n\n", i)
			w.(http.Flusher).Flush()
			// Wait until the client has this event before sending the next.
			select {
			case s := <-got:
				if !strings.Contains(s, fmt.Sprintf("e%d", i)) {
					t.Errorf("client got %q before e%d", s, i)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("event %d did not reach the client", i)
				return
			}
		}
	})
	gid := e.group("sse", groupOpts{upstreams: []string{up.URL}})
	e.addKeys(gid, "k1")
	req, _ := http.NewRequest("POST", e.url("sse", "/v1/chat/completions"), strings.NewReader(`{"stream":true}`))
	req.Header.Set("Authorization", "Bearer sk-global")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("X-Accel-Buffering") != "no" {
		t.Fatalf("headers %v", resp.Header)
	}
	if c := up.Calls()[0]; c.Header.Get("X-Accel-Buffering") != "no" {
		t.Fatal("upstream request lacks X-Accel-Buffering: no")
	}
	sc := bufio.NewScanner(resp.Body)
	i := 0
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "data: ") {
			got <- line
			i++
		}
	}
	if i != n {
		t.Fatalf("got %d events", i)
	}
}

// TestClientDisconnectCancelsUpstream: a client that leaves mid-stream ends the upstream
// request within 100 ms (the upstream records when its request's context ends), and the
// key is not penalised.
func TestClientDisconnectCancelsUpstream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	canceled := make(chan time.Time, 1)
	started := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {}\n\n")
		w.(http.Flusher).Flush()
		close(started)
		<-r.Context().Done()
		canceled <- time.Now()
	})
	gid := e.group("dc", groupOpts{upstreams: []string{up.URL}, config: map[string]any{"blacklist_threshold": 1}})
	e.addKeys(gid, "k1")
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", e.url("dc", "/v1/chat/completions"), strings.NewReader(`{"stream":true}`))
	req.Header.Set("Authorization", "Bearer sk-global")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	<-started
	left := time.Now()
	cancel()
	resp.Body.Close()
	select {
	case at := <-canceled:
		if d := at.Sub(left); d > 100*time.Millisecond {
			t.Fatalf("the upstream request ended %v after the client left", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("upstream request not canceled")
	}
	e.waitLogs(func(l []domain.RequestLog) error {
		if len(l) != 1 || l[0].StatusCode != 499 {
			return fmt.Errorf("logs %+v", l)
		}
		return nil
	})
	if k := e.key(gid, "k1"); k.FailureCount != 0 {
		t.Fatalf("key penalised: %+v", k)
	}
}

func TestAggregateGroups(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	upA := newUpstream(t, nil)
	upB := newUpstream(t, nil)
	a := e.group("mem-a", groupOpts{upstreams: []string{upA.URL}})
	b := e.group("mem-b", groupOpts{upstreams: []string{upB.URL}})
	empty := e.group("mem-empty", groupOpts{upstreams: []string{upA.URL}})
	e.addKeys(a, "ka")
	e.addKeys(b, "kb")
	agg := e.aggregate("agg", "openai", map[uint64]int{a: 3, b: 1, empty: 5})
	_ = agg
	for range 8 {
		resp, body := e.do("POST", e.url("agg", "/v1/chat/completions"), "sk-group-agg", `{"model":"m"}`)
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
	na, nb := len(upA.Calls()), len(upB.Calls())
	if na != 6 || nb != 2 {
		t.Fatalf("member calls a=%d b=%d, want 6 and 2", na, nb)
	}
	logs := e.waitLogs(func(l []domain.RequestLog) error {
		if len(l) != 8 {
			return fmt.Errorf("%d logs", len(l))
		}
		return nil
	})
	for _, l := range logs {
		if l.ParentGroupName != "agg" || (l.GroupName != "mem-a" && l.GroupName != "mem-b") {
			t.Fatalf("log %+v", l)
		}
	}
	// A member's own proxy key does not open the aggregate.
	if resp, _ := e.do("POST", e.url("agg", "/v1/chat/completions"), "sk-group-mem-a", `{}`); resp.StatusCode != 401 {
		t.Fatalf("member key on aggregate: %d", resp.StatusCode)
	}
}

func TestNoKeysAndBodyLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{cfg: proxy.Config{MaxBodyBytes: 100}})
	up := newUpstream(t, nil)
	gid := e.group("nk", groupOpts{upstreams: []string{up.URL}, channel: "gemini"})
	resp, body := e.do("POST", e.url("nk", "/v1beta/models/x:generateContent"), "sk-global", `{}`)
	if resp.StatusCode != 503 || !strings.Contains(body, "NO_KEYS_AVAILABLE") || !strings.Contains(body, `"status":"UNAVAILABLE"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	e.addKeys(gid, "k")
	resp, body = e.do("POST", e.url("nk", "/v1beta/models/x:generateContent"), "sk-global", strings.Repeat("x", 101))
	if resp.StatusCode != 413 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if len(up.Calls()) != 0 {
		t.Fatal("upstream called")
	}
}

func TestConcurrencyLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{cfg: proxy.Config{MaxConcurrentRequests: 1}})
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
		entered <- struct{}{}
		<-release
		chatOK(w, "x")
	})
	gid := e.group("cc", groupOpts{upstreams: []string{up.URL}})
	e.addKeys(gid, "k")
	done := make(chan int)
	go func() {
		resp, _ := e.do("POST", e.url("cc", "/v1/chat/completions"), "sk-global", `{}`)
		done <- resp.StatusCode
	}()
	<-entered
	resp, _ := e.do("POST", e.url("cc", "/v1/chat/completions"), "sk-global", `{}`)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	close(release)
	if s := <-done; s != 200 {
		t.Fatalf("first request: %d", s)
	}
}

func TestTransforms(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
		if strings.HasSuffix(r.URL.Path, "/v1/models") {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"object":"list","data":[{"id":"up-1","object":"model"},{"id":"gpt-4o","object":"model"}]}`)
			return
		}
		chatOK(w, "ok")
	})
	gid := e.group("tf", groupOpts{upstreams: []string{up.URL}, input: func(in *domain.GroupInput) {
		in.ParamOverrides = json.RawMessage(`{"temperature":0.5,"max_tokens":10}`)
		in.ModelRedirectRules = json.RawMessage(`{"alias":"gpt-4o"}`)
		in.HeaderRules = json.RawMessage(`[{"key":"x-group","value":"${GROUP_NAME}/${CLIENT_IP}","action":"set"},{"key":"x-drop","action":"remove"},{"key":"x-key","value":"k=${API_KEY}","action":"set"}]`)
	}})
	e.addKeys(gid, "sk-up")
	resp, body := e.do("POST", e.url("tf", "/v1/chat/completions"), "sk-global", `{"model":"alias","temperature":1,"messages":[]}`, "X-Drop", "1")
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	c := up.Calls()[0]
	var sent map[string]any
	json.Unmarshal([]byte(c.Body), &sent)
	if sent["model"] != "gpt-4o" || sent["temperature"] != 0.5 || sent["max_tokens"] != float64(10) {
		t.Fatalf("body sent %s", c.Body)
	}
	if c.Header.Get("X-Group") != "tf/127.0.0.1" || c.Header.Get("X-Drop") != "" || c.Header.Get("X-Key") != "k=sk-up" {
		t.Fatalf("headers sent %v", c.Header)
	}
	// The log names the model asked for (after overrides, before the redirect).
	e.waitLogs(func(l []domain.RequestLog) error {
		if len(l) != 1 || l[0].Model != "alias" {
			return fmt.Errorf("%+v", l)
		}
		return nil
	})

	// Non-strict: unknown models pass, the list gains the configured names.
	resp, body = e.do("POST", e.url("tf", "/v1/chat/completions"), "sk-global", `{"model":"other"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	resp, body = e.do("GET", e.url("tf", "/v1/models"), "sk-global", "")
	if resp.StatusCode != 200 || !strings.Contains(body, `"up-1"`) || !strings.Contains(body, `"alias"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}

	// Strict: unknown models are refused without an upstream call; the list is the rules'.
	if _, err := e.cmd.UpdateGroup(context.Background(), "admin", gid, domain.GroupInput{ModelRedirectStrict: new(true)}); err != nil {
		t.Fatal(err)
	}
	before := len(up.Calls())
	resp, body = e.do("POST", e.url("tf", "/v1/chat/completions"), "sk-global", `{"model":"other"}`)
	if resp.StatusCode != 400 || !strings.Contains(body, "model 'other' is not configured in redirect rules") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if len(up.Calls()) != before {
		t.Fatal("refused request went upstream")
	}
	resp, body = e.do("GET", e.url("tf", "/v1/models"), "sk-global", "")
	var list struct {
		Data []struct{ ID string } `json:"data"`
	}
	json.Unmarshal([]byte(body), &list)
	if resp.StatusCode != 200 || len(list.Data) != 1 || list.Data[0].ID != "alias" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

func TestGeminiPathRedirectAndModelList(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/v1beta/models") {
			io.WriteString(w, `{"models":[{"name":"models/gemini-a"}],"nextPageToken":"p2"}`)
			return
		}
		io.WriteString(w, `{"candidates":[{"content":{"parts":[{"text":"x"}]}}]}`)
	})
	gid := e.group("gr", groupOpts{upstreams: []string{up.URL}, channel: "gemini", input: func(in *domain.GroupInput) {
		in.ModelRedirectRules = json.RawMessage(`{"short":"gemini-long-name"}`)
		in.ModelRedirectStrict = new(true)
	}})
	e.addKeys(gid, "gk")
	resp, body := e.do("POST", e.url("gr", "/v1beta/models/short:streamGenerateContent?alt=sse"), "sk-global", `{}`)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if c := up.Calls()[0]; c.Path != "/v1beta/models/gemini-long-name:streamGenerateContent" || c.Query != "alt=sse&key=gk" {
		t.Fatalf("call %+v", c)
	}
	resp, body = e.do("POST", e.url("gr", "/v1beta/models/unknown:generateContent"), "sk-global", `{}`)
	if resp.StatusCode != 400 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	resp, body = e.do("GET", e.url("gr", "/v1beta/models"), "sk-global", "")
	if resp.StatusCode != 200 || strings.Contains(body, "nextPageToken") || !strings.Contains(body, `"models/short"`) || strings.Contains(body, "gemini-a") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

func TestAzureAndAnthropicAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	up := newUpstream(t, nil)
	az := e.group("az", groupOpts{upstreams: []string{up.URL}, channel: "azure-openai"})
	an := e.group("an", groupOpts{upstreams: []string{up.URL}, channel: "anthropic"})
	e.addKeys(az, "azure-key")
	e.addKeys(an, "anthropic-key")
	resp, _ := e.do("POST", e.url("az", "/openai/deployments/dep/chat/completions?api-version=2024-10-21"), "", `{}`, "Api-Key", "sk-global")
	if resp.StatusCode != 200 {
		t.Fatalf("azure %d", resp.StatusCode)
	}
	c := up.Calls()[0]
	if c.Header.Get("Api-Key") != "azure-key" || c.Query != "api-version=2024-10-21" || c.Header.Get("Authorization") != "" {
		t.Fatalf("azure call %+v", c)
	}
	resp, _ = e.do("POST", e.url("an", "/v1/messages"), "", `{}`, "X-Api-Key", "sk-global", "Anthropic-Version", "2099-01-01")
	if resp.StatusCode != 200 {
		t.Fatalf("anthropic %d", resp.StatusCode)
	}
	c = up.Calls()[1]
	if c.Header.Get("X-Api-Key") != "anthropic-key" || c.Header.Get("Anthropic-Version") != "2099-01-01" {
		t.Fatalf("anthropic call %+v", c.Header)
	}
	e.do("POST", e.url("an", "/v1/messages"), "", `{}`, "X-Api-Key", "sk-global")
	if c := up.Calls()[2]; c.Header.Get("Anthropic-Version") != "2023-06-01" {
		t.Fatalf("default anthropic-version: %v", c.Header)
	}
}

func TestEmptyAnswerRetry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{cfg: proxy.Config{RetryEmptyAnswer: func(g *projections.GroupView) bool { return g.Name == "empty" }}})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
		if c.Key == "k-empty" {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"id":"x","choices":[]}`)
			return
		}
		chatOK(w, "full")
	})
	gid := e.group("empty", groupOpts{upstreams: []string{up.URL}})
	e.addKeys(gid, "k-empty", "k-full")
	for range 3 {
		resp, body := e.do("POST", e.url("empty", "/v1/chat/completions"), "sk-global", `{}`)
		if resp.StatusCode != 200 || !strings.Contains(body, "full") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
}

func TestUpstreamFinalErrorIsMaskedAndShaped(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
		w.WriteHeader(503)
		io.WriteString(w, "service down for key "+c.Key)
	})
	gid := e.group("mask", groupOpts{upstreams: []string{up.URL}, config: map[string]any{"max_retries": 0}})
	e.addKeys(gid, "sk-secret-upstream-key")
	resp, body := e.do("POST", e.url("mask", "/v1/chat/completions"), "sk-global", `{}`)
	if resp.StatusCode != 503 || strings.Contains(body, "sk-secret-upstream-key") || !strings.Contains(body, "sk-s****-key") ||
		!strings.Contains(body, `"code":"UPSTREAM_ERROR"`) || !strings.Contains(body, `"error":{`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

func TestIntegrationInfo(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.group("ii", groupOpts{upstreams: []string{"http://127.0.0.1:1"}})
	resp, body := e.do("GET", e.url("ii", "/api/integration/info?key=sk-group-ii"), "", "")
	if resp.StatusCode != 200 || !strings.Contains(body, `"channel_type":"openai"`) || !strings.Contains(body, `"code":0`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if resp, _ := e.do("GET", e.url("ii", "/api/integration/info?key=nope"), "", ""); resp.StatusCode != 400 {
		t.Fatalf("%d", resp.StatusCode)
	}
}

func TestRedirectsAreFollowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	other := newUpstream(t, nil)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
		switch r.URL.Path {
		case "/v1/chat/completions":
			http.Redirect(w, r, "/v2/chat/completions", http.StatusTemporaryRedirect)
		case "/v2/chat/completions":
			if c.Body != `{"model":"m"}` {
				jsonError(w, 500, "body lost: "+c.Body)
				return
			}
			http.Redirect(w, r, other.URL+"/v3", http.StatusTemporaryRedirect)
		}
	})
	gid := e.group("rd", groupOpts{upstreams: []string{up.URL}})
	e.addKeys(gid, "sk-redirected")
	resp, body := e.do("POST", e.url("rd", "/v1/chat/completions"), "sk-global", `{"model":"m"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if c := up.Calls(); len(c) != 2 || c[1].Key != "sk-redirected" {
		t.Fatalf("same-host redirect lost the key: %+v", c)
	}
	if c := other.Calls(); len(c) != 1 || c[0].Key != "" || c[0].Body != `{"model":"m"}` {
		t.Fatalf("cross-host redirect: %+v", c)
	}
}

// The transport follows the group's effective proxy_url, rebuilt when it changes.
func TestOutboundProxyFollowsConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	up := newUpstream(t, nil)
	var via atomic.Int32
	fwd := newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
		// A forward proxy: the request line carries the absolute upstream URL.
		if !r.URL.IsAbs() {
			http.Error(w, "not a proxy request", 400)
			return
		}
		via.Add(1)
		out, _ := http.NewRequest(r.Method, r.URL.String(), strings.NewReader(c.Body))
		out.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})
	gid := e.group("px", groupOpts{upstreams: []string{up.URL}})
	e.addKeys(gid, "k")
	if resp, _ := e.do("POST", e.url("px", "/v1/chat/completions"), "sk-global", `{}`); resp.StatusCode != 200 || via.Load() != 0 {
		t.Fatalf("direct: %d via %d", resp.StatusCode, via.Load())
	}
	if _, err := e.cmd.UpdateGroup(context.Background(), "admin", gid, domain.GroupInput{Config: json.RawMessage(`{"proxy_url":"` + fwd.URL + `"}`)}); err != nil {
		t.Fatal(err)
	}
	if resp, _ := e.do("POST", e.url("px", "/v1/chat/completions"), "sk-global", `{}`); resp.StatusCode != 200 || via.Load() != 1 {
		t.Fatalf("through proxy_url: %d via %d", resp.StatusCode, via.Load())
	}
	if n := len(up.Calls()); n != 2 {
		t.Fatalf("%d upstream calls", n)
	}
}

// A gzipped answer goes to the client as it is, and its usage still reaches the log.
func TestGzipAnswerUsage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
		if r.Header.Get("Accept-Encoding") != "gzip" {
			jsonError(w, 500, "accept-encoding "+r.Header.Get("Accept-Encoding"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		chatOK(&headerlessWriter{zw, w}, "zipped")
		zw.Close()
	})
	gid := e.group("gz", groupOpts{upstreams: []string{up.URL}})
	e.addKeys(gid, "k")
	// Go's client asks for gzip itself and unzips the answer.
	resp, body := e.do("POST", e.url("gz", "/v1/chat/completions"), "sk-global", `{}`, "Accept-Encoding", "br, gzip;q=0.8, zstd")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	zr, err := gzip.NewReader(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	if !strings.Contains(string(plain), "zipped") {
		t.Fatalf("%q", plain)
	}
	e.waitLogs(func(l []domain.RequestLog) error {
		if len(l) != 1 || l[0].TotalTokens != 10 {
			return fmt.Errorf("%+v", l)
		}
		return nil
	})
}

// headerlessWriter writes through a compressor but keeps the ResponseWriter's header.
type headerlessWriter struct {
	io.Writer
	w http.ResponseWriter
}

func (h *headerlessWriter) Header() http.Header { return h.w.Header() }
func (h *headerlessWriter) WriteHeader(int)     {}

func TestAggregateWithoutUsableMember(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	up := newUpstream(t, nil)
	m := e.group("lonely", groupOpts{upstreams: []string{up.URL}, channel: "anthropic"})
	e.aggregate("agg-empty", "anthropic", map[uint64]int{m: 1})
	resp, body := e.do("POST", e.url("agg-empty", "/v1/messages"), "sk-global", `{}`)
	if resp.StatusCode != 503 || !strings.Contains(body, "No available sub-groups") || !strings.Contains(body, `"type":"overloaded_error"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

func TestNonJSONBodyPassesUnchanged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	up := newUpstream(t, nil)
	gid := e.group("raw", groupOpts{upstreams: []string{up.URL}, input: func(in *domain.GroupInput) {
		in.ParamOverrides = json.RawMessage(`{"temperature":0}`)
		in.ModelRedirectRules = json.RawMessage(`{"a":"b"}`)
		in.ModelRedirectStrict = new(true)
	}})
	e.addKeys(gid, "k")
	const form = "--x\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nhello\r\n--x--\r\n"
	resp, body := e.do("POST", e.url("raw", "/v1/audio/transcriptions"), "sk-global", form, "Content-Type", "multipart/form-data; boundary=x")
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if c := up.Calls()[0]; c.Body != form || c.Header.Get("Content-Type") != "multipart/form-data; boundary=x" {
		t.Fatalf("%+v", c)
	}
}
