package httpapi_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/httpapi"
	"gpt-load/proxy"
)

type fakePublisher struct{ st events.ReqLogStats }

func (f fakePublisher) Stats() events.ReqLogStats { return f.st }

// nopRecorder drops request logs: the test counts what the metrics saw.
type nopRecorder struct{}

func (nopRecorder) Record(*domain.RequestLog) {}

// TestMetricsCountKnownTraffic sends known traffic through the real proxy and parses
// /metrics with the Prometheus text parser: the counts match, and /metrics needs the
// admin key.
func TestMetricsCountKnownTraffic(t *testing.T) {
	t.Parallel()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(string(body), `"model":"bad"`) {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":{"message":"unknown model"}}`)
			return
		}
		io.WriteString(w, `{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`)
	}))
	defer upstream.Close()
	m := httpapi.NewMetrics()
	m.WatchPublisher(fakePublisher{events.ReqLogStats{Published: 7, Dropped: 1, QueuedBytes: 300}})
	m.WatchDroppedFacts(func() uint64 { return 2 })
	m.WatchWaitingFacts(func() int { return 4 })
	var ph atomic.Pointer[proxy.Handler]
	n := startNode(t, nodeOpts{
		proxy: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ph.Load().ServeHTTP(w, r) }),
		deps:  func(d *httpapi.Deps) { d.Metrics = m },
	})
	h, err := proxy.New(proxy.Config{}, proxy.Deps{Views: n.proj, Facts: n.store, Logs: m.Recorder(nopRecorder{}), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	ph.Store(h)
	m.WatchStore(n.store)
	m.WatchAffinity(func() (uint64, uint64, uint64) {
		st := h.AffinityStats()
		return st.Hits, st.Moved, st.Misses
	})
	var g struct {
		ID uint64 `json:"id"`
	}
	n.do("POST", "/api/groups", `{"name":"metered","channel_type":"openai","test_model":"m","proxy_keys":"sk-proxy-m","config":{"prompt_cache_affinity":true},"upstreams":[{"url":"`+upstream.URL+`","weight":1}]}`).ok(t, &g)
	n.do("POST", "/api/keys/add-multiple", fmt.Sprintf(`{"group_id":%d,"keys_text":"sk-up-1\nsk-up-2\nsk-up-3"}`, g.ID)).ok(t, nil)
	call := func(model string, want int) {
		t.Helper()
		r := n.send("POST", "/proxy/metered/v1/chat/completions", `{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`, "Authorization", "Bearer sk-proxy-m")
		if r.code != want {
			t.Fatalf("proxied %s: %d %s", model, r.code, r.body)
		}
	}
	for range 5 {
		call("ok", 200)
	}
	for range 3 {
		call("bad", 400)
	}
	call("ok-2", 200)
	// One key disabled: an admin change more for the append count.
	n.do("POST", "/api/keys/disable-multiple", fmt.Sprintf(`{"group_id":%d,"keys_text":"sk-up-2"}`, g.ID)).ok(t, nil)

	if r := n.send("GET", "/metrics", nil); r.code != http.StatusUnauthorized {
		t.Fatalf("/metrics without the admin key: %d", r.code)
	}
	r := n.do("GET", "/metrics", nil)
	if r.code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", r.code, r.body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(r.body)))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, r.body)
	}
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		f, ok := fams[name]
		if !ok {
			t.Fatalf("no %s in /metrics", name)
		}
	next:
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue next
				}
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				return float64(m.GetHistogram().GetSampleCount())
			case dto.MetricType_SUMMARY:
				return float64(m.GetSummary().GetSampleCount())
			}
		}
		t.Fatalf("no %s%v in /metrics", name, labels)
		return 0
	}
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"gpt_load_proxy_requests_total", map[string]string{"group": "metered", "channel": "openai", "status": "200"}, 6},
		// One conversation: new at the first call, then found for the 8 others.
		{"gpt_load_prompt_cache_affinity_total", map[string]string{"result": "miss"}, 1},
		{"gpt_load_prompt_cache_affinity_total", map[string]string{"result": "hit"}, 8},
		{"gpt_load_prompt_cache_affinity_total", map[string]string{"result": "moved"}, 0},
		{"gpt_load_proxy_requests_total", map[string]string{"group": "metered", "channel": "openai", "status": "400"}, 3},
		{"gpt_load_proxy_attempts_total", map[string]string{"group": "metered", "status": "200"}, 6},
		{"gpt_load_proxy_request_duration_seconds", map[string]string{"group": "metered", "status": "200"}, 6},
		{"gpt_load_proxy_upstream_duration_seconds", map[string]string{"group": "metered", "channel": "openai", "status": "400"}, 3},
		{"gpt_load_proxy_tokens_total", map[string]string{"group": "metered", "model": "ok", "kind": "prompt"}, 15},
		{"gpt_load_proxy_tokens_total", map[string]string{"group": "metered", "model": "ok", "kind": "completion"}, 20},
		{"gpt_load_proxy_tokens_total", map[string]string{"group": "metered", "model": "ok-2", "kind": "prompt"}, 3},
		{"gpt_load_keys", map[string]string{"group": "metered", "status": "active"}, 3},
		{"gpt_load_keys_resting", map[string]string{"group": "metered", "reason": "disabled"}, 1},
		{"gpt_load_keys_resting", map[string]string{"group": "metered", "reason": "cooldown"}, 0},
		{"gpt_load_event_append_seconds", nil, 4}, // the seeded settings, the group, its keys, the disabling
		{"gpt_load_event_append_conflicts_total", nil, 0},
		{"gpt_load_key_health_facts_dropped_total", nil, 2},
		{"gpt_load_key_health_facts_waiting", nil, 4},
		{"gpt_load_keys", map[string]string{"group": "metered", "status": "invalid"}, 0},
		{"gpt_load_projection_caught_up", nil, 1},
		{"gpt_load_task_running", map[string]string{"type": "KEY_IMPORT"}, 0},
		{"gpt_load_request_logs_published_total", nil, 7},
		{"gpt_load_request_logs_dropped_total", nil, 1},
		{"gpt_load_request_log_queued_bytes", nil, 300},
	}
	for _, c := range checks {
		if got := value(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

// BenchmarkMetricsRecorder is what counting adds to each proxied attempt: compare with
// BenchmarkBareRecorder, the same call without metrics.
func BenchmarkMetricsRecorder(b *testing.B) {
	rec := httpapi.NewMetrics().Recorder(nopRecorder{})
	benchRecord(b, rec)
}

func BenchmarkBareRecorder(b *testing.B) {
	benchRecord(b, nopRecorder{})
}

func benchRecord(b *testing.B, r httpapi.LogRecorder) {
	groups := []string{"a", "b", "c", "d"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r.Record(&domain.RequestLog{GroupName: groups[i%4], StatusCode: 200, RequestType: domain.RequestFinal, DurationMS: 12, PromptTokens: 3, CompletionTokens: 4})
			i++
		}
	})
}

// A client names the model, so the token counter keeps at most 50 models per group and
// counts the rest as "other": the label set stays bounded, the sums stay whole.
func TestMetricsBoundModels(t *testing.T) {
	t.Parallel()
	m := httpapi.NewMetrics()
	rec := m.Recorder(nopRecorder{})
	for i := range 80 {
		rec.Record(&domain.RequestLog{GroupName: "g", Model: fmt.Sprintf("m-%d", i), StatusCode: 200,
			RequestType: domain.RequestFinal, PromptTokens: 1, CompletionTokens: 2})
	}
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	models := map[string]float64{}
	for _, mt := range fams["gpt_load_proxy_tokens_total"].GetMetric() {
		labels := map[string]string{}
		for _, lp := range mt.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		if labels["kind"] == "prompt" {
			models[labels["model"]] += mt.GetCounter().GetValue()
		}
	}
	total := 0.0
	for _, v := range models {
		total += v
	}
	if len(models) != 51 || models["other"] != 30 || total != 80 {
		t.Fatalf("%d model labels, other %v, total %v; want 50 models and other 30 of 80", len(models), models["other"], total)
	}
}
