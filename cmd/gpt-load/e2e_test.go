package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const e2eAdminKey = "e2e-admin-key-Str0ng-0123456789"

// adminRequest calls the admin API on port with adminKey and a JSON body, and returns the
// status and the raw body.
func adminRequest(t *testing.T, port int, adminKey, method, path, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", port, path), strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

// adminData is adminRequest that wants a 200 and decodes the envelope's data into out
// (if not nil).
func adminData(t *testing.T, port int, adminKey, method, path, body string, out any) {
	t.Helper()
	code, raw := adminRequest(t, port, adminKey, method, path, body)
	if code != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, path, code, raw)
	}
	if out != nil {
		var env struct {
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(raw, &env); err != nil || json.Unmarshal(env.Data, out) != nil {
			t.Fatalf("%s %s: cannot decode %s", method, path, raw)
		}
	}
}

// api calls the admin API of p and decodes the envelope's data into out (if not nil).
func api(t *testing.T, p *proc, method, path, body string, out any) {
	t.Helper()
	code, raw := adminRequest(t, p.port, e2eAdminKey, method, path, body)
	if code != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, path, code, raw)
	}
	if out != nil {
		var env struct {
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(raw, &env); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(env.Data, out); err != nil {
			t.Fatalf("%s %s data: %v (%s)", method, path, err, raw)
		}
	}
}

// TestProxyThroughTheBinary drives the real binary as a user would: a group and its keys
// through the admin API, then a proxied request that reaches a fake upstream with an
// upstream key; a slow request in flight when SIGTERM arrives still completes.
func TestProxyThroughTheBinary(t *testing.T) {
	t.Parallel()
	var seen atomic.Value
	var slowStarted atomic.Bool
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.Header.Get("Authorization"))
		if strings.Contains(r.URL.RawQuery, "slow=1") {
			slowStarted.Store(true)
			time.Sleep(1500 * time.Millisecond)
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	}))
	defer upstream.Close()

	p := startProc(t, t.TempDir(), "PORT="+strconv.Itoa(freePort(t)), "HOST=127.0.0.1", "AUTH_KEY="+e2eAdminKey)
	p.waitHealthy(t)
	var g struct {
		ID uint64 `json:"id"`
	}
	api(t, p, "POST", "/api/groups", `{"name":"e2e","channel_type":"openai","test_model":"m","proxy_keys":"sk-proxy-e2e","upstreams":[{"url":"`+upstream.URL+`","weight":1}]}`, &g)
	api(t, p, "POST", "/api/keys/add-multiple", fmt.Sprintf(`{"group_id":%d,"keys_text":"sk-upstream-1"}`, g.ID), nil)

	call := func(query string) (int, string) {
		req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/proxy/e2e/v1/chat/completions%s", p.port, query),
			strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer sk-proxy-e2e")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := call(""); code != 200 || !strings.Contains(body, "chatcmpl-1") {
		t.Fatalf("proxied call: %d %s", code, body)
	}
	if got := seen.Load(); got != "Bearer sk-upstream-1" {
		t.Fatalf("upstream saw Authorization %q, want the upstream key", got)
	}

	// SIGTERM while a request is in flight: it completes, then the node exits 0.
	result := make(chan int, 1)
	go func() { code, _ := call("?slow=1"); result <- code }()
	for !slowStarted.Load() {
		time.Sleep(5 * time.Millisecond)
	}
	if code := p.stop(t, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if code := <-result; code != 200 {
		t.Fatalf("the in-flight request ended with %d during shutdown, want 200", code)
	}
}

// TestRetryEmptyAnswerSetting checks the wiring of the group setting retry_empty_response:
// an upstream key that answers 200 with no choices is retried with another key.
func TestRetryEmptyAnswerSetting(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") == "Bearer sk-empty" {
			io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[]}`)
			return
		}
		io.WriteString(w, `{"id":"full","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}]}`)
	}))
	defer upstream.Close()
	p := startProc(t, t.TempDir(), "PORT="+strconv.Itoa(freePort(t)), "HOST=127.0.0.1", "AUTH_KEY="+e2eAdminKey)
	p.waitHealthy(t)
	var g struct {
		ID uint64 `json:"id"`
	}
	api(t, p, "POST", "/api/groups", `{"name":"empty","channel_type":"openai","test_model":"m","proxy_keys":"sk-p",
		"config":{"retry_empty_response":true},"upstreams":[{"url":"`+upstream.URL+`","weight":1}]}`, &g)
	api(t, p, "POST", "/api/keys/add-multiple", fmt.Sprintf(`{"group_id":%d,"keys_text":"sk-empty,sk-full"}`, g.ID), nil)
	for i := 0; i < 4; i++ {
		req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/proxy/empty/v1/chat/completions", p.port),
			strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer sk-p")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), `"full"`) {
			t.Fatalf("call %d: %d %s: an empty answer was not retried", i, resp.StatusCode, b)
		}
	}
}

// TestPromptCacheAffinitySetting checks the wiring of the group setting
// prompt_cache_affinity: the turns of one conversation reach one key, and /metrics counts
// the lookups.
func TestPromptCacheAffinitySetting(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]int{}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get("Authorization")]++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}]}`)
	}))
	defer upstream.Close()
	p := startProc(t, t.TempDir(), "PORT="+strconv.Itoa(freePort(t)), "HOST=127.0.0.1", "AUTH_KEY="+e2eAdminKey)
	p.waitHealthy(t)
	var g struct {
		ID uint64 `json:"id"`
	}
	api(t, p, "POST", "/api/groups", `{"name":"sticky","channel_type":"openai","test_model":"m","proxy_keys":"sk-p",
		"config":{"prompt_cache_affinity":true},"upstreams":[{"url":"`+upstream.URL+`","weight":1}]}`, &g)
	api(t, p, "POST", "/api/keys/add-multiple", fmt.Sprintf(`{"group_id":%d,"keys_text":"sk-1,sk-2,sk-3,sk-4,sk-5"}`, g.ID), nil)
	send := func(method, path, key, body string) string {
		req, _ := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", p.port, path), strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		return string(b)
	}
	msgs := `{"role":"system","content":"be brief"},{"role":"user","content":"hi"}`
	for i := 0; i < 4; i++ {
		send("POST", "/proxy/sticky/v1/chat/completions", "sk-p", `{"model":"m","messages":[`+msgs+`]}`)
		msgs += `,{"role":"assistant","content":"hi"},{"role":"user","content":"more"}`
	}
	if len(seen) != 1 {
		t.Fatalf("one conversation used keys %v", seen)
	}
	m := send("GET", "/metrics", e2eAdminKey, "")
	for _, want := range []string{`gpt_load_prompt_cache_affinity_total{result="hit"} 3`, `gpt_load_prompt_cache_affinity_total{result="miss"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
