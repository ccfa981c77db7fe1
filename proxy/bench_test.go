package proxy_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"gpt-load/proxy"
)

// BenchmarkPick is key selection as a request does it: the group's lock-free round robin,
// this node's short exclusions and the request's tried keys. BENCH_KEYS_MAX raises the
// largest pool (default 100,000; 1,000,000 takes a minute to load).
func BenchmarkPick(b *testing.B) {
	e := newEnv(b, envOpts{})
	largest := 100_000
	if v, err := strconv.Atoi(os.Getenv("BENCH_KEYS_MAX")); err == nil && v > 0 {
		largest = v
	}
	for _, n := range []int{10, 1000, 100_000, 1_000_000} {
		if n > largest {
			continue
		}
		name := fmt.Sprintf("pick%d", n)
		gid := e.group(name, groupOpts{upstreams: []string{"http://127.0.0.1:1"}})
		keys := make([]string, n)
		for i := range keys {
			keys[i] = fmt.Sprintf("sk-%s-%d", name, i)
		}
		e.addKeys(gid, keys...)
		gv, _ := e.run.View().Group(gid)
		now := time.Now().UnixNano()
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := proxy.Pick(e.h, gv, now); !ok {
					b.Fatal("no key")
				}
			}
		})
		b.Run(fmt.Sprintf("keys=%d/parallel", n), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, ok := proxy.Pick(e.h, gv, now); !ok {
						b.Fatal("no key")
					}
				}
			})
		})
	}
}

// memUpstream answers every request in memory: the request path without network.
type memUpstream struct {
	stream bool
}

const (
	memJSON = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-test","choices":[{"index":0,"message":{"role":"assistant","content":"hello there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}`
)

var memSSE = func() string {
	var b strings.Builder
	for i := range 10 {
		fmt.Fprintf(&b, "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tok%d \"}}]}\n\n", i)
	}
	b.WriteString("data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":10,\"total_tokens\":15}}\n\ndata: [DONE]\n\n")
	return b.String()
}()

func (m memUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	body, ct := memJSON, "application/json"
	if m.stream {
		body, ct = memSSE, "text/event-stream"
	}
	resp := &http.Response{
		StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {ct}}, Body: io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)), Request: r,
	}
	if m.stream {
		resp.ContentLength = -1
	}
	return resp, nil
}

// BenchmarkRequestPath is one proxied request end to end in process, request log
// included: routing, proxy-key check, body read, key pick, upstream request built and
// answered by an in-memory round tripper, response relayed into a recorder; "affinity" is
// plain with prompt_cache_affinity on (one conversation, found every time).
func BenchmarkRequestPath(b *testing.B) {
	for _, name := range []string{"plain", "stream", "affinity"} {
		stream := name == "stream"
		b.Run(name, func(b *testing.B) {
			e := newEnv(b, envOpts{cfg: proxy.Config{
				MaxConcurrentRequests: 1 << 20,
				Transport:             func() http.RoundTripper { return memUpstream{stream: stream} },
			}})
			gid := e.group("bench", groupOpts{upstreams: []string{"http://upstream.invalid"},
				config: map[string]any{"prompt_cache_affinity": name == "affinity"}})
			keys := make([]string, 100)
			for i := range keys {
				keys[i] = fmt.Sprint("sk-bench-", i)
			}
			e.addKeys(gid, keys...)
			body := []byte(`{"model":"gpt-test","messages":[{"role":"user","content":"hello"}]}`)
			if stream {
				body = []byte(`{"model":"gpt-test","stream":true,"messages":[{"role":"user","content":"hello"}]}`)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := httptest.NewRequest("POST", "/proxy/bench/v1/chat/completions", bytes.NewReader(body))
					req.Header.Set("Authorization", "Bearer sk-global")
					req.Header.Set("Content-Type", "application/json")
					w := httptest.NewRecorder()
					e.h.ServeHTTP(w, req)
					if w.Code != 200 {
						b.Fatalf("%d %s", w.Code, w.Body)
					}
				}
			})
			b.StopTimer()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := e.logs.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkPickExclusions is a pick followed by a local exclusion of the picked key while
// 10,000 keys of the group are excluded (a 429 storm seen by one node).
func BenchmarkPickExclusions(b *testing.B) {
	e := newEnv(b, envOpts{})
	const n, excluded = 20_000, 10_000
	gid := e.group("storm", groupOpts{upstreams: []string{"http://127.0.0.1:1"}})
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("sk-storm-%d", i)
	}
	e.addKeys(gid, keys...)
	gv, _ := e.run.View().Group(gid)
	now := time.Now().UnixNano()
	for range excluded {
		k, ok := proxy.Pick(e.h, gv, now)
		if !ok {
			b.Fatal("no key")
		}
		proxy.Exclude(e.h, k, now+int64(time.Hour))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		k, ok := proxy.Pick(e.h, gv, now)
		if !ok {
			b.Fatal("no key")
		}
		proxy.Exclude(e.h, k, now) // over at once: the key stays in rotation
	}
}
