package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"gpt-load/events"
	"gpt-load/events/eventstest"
	"gpt-load/projections/sqlstore"
)

// TestRequestLogsSurviveSIGKILL kills the node with SIGKILL while clients keep it busy,
// starts it again on the same DATA_DIR, and compares the request logs in SQLite with the
// records in GL_REQLOG: every record the stream took is in SQL exactly once, and the
// hourly stats and key usage agree with the rows.
func TestRequestLogsSurviveSIGKILL(t *testing.T) {
	t.Parallel()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`)
	}))
	defer upstream.Close()

	dir := t.TempDir()
	port, natsPort := freePort(t), freePort(t)
	env := []string{"PORT=" + strconv.Itoa(port), "HOST=127.0.0.1", "AUTH_KEY=" + e2eAdminKey,
		"NATS_LISTEN=127.0.0.1:" + strconv.Itoa(natsPort)}
	p := startProc(t, dir, env...)
	p.waitHealthy(t)
	var g struct {
		ID uint64 `json:"id"`
	}
	api(t, p, "POST", "/api/groups", `{"name":"logs","channel_type":"openai","test_model":"m","proxy_keys":"sk-proxy-logs","upstreams":[{"url":"`+upstream.URL+`","weight":1}]}`, &g)
	api(t, p, "POST", "/api/keys/add-multiple", fmt.Sprintf(`{"group_id":%d,"keys_text":"sk-up-1\nsk-up-2"}`, g.ID), nil)

	// Load from 16 clients until the kill.
	var answered atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for range 16 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/proxy/logs/v1/chat/completions", port),
					strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
				req.Header.Set("Authorization", "Bearer sk-proxy-logs")
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					answered.Add(1)
				}
			}
		})
	}
	for answered.Load() < 2000 {
		select {
		case err := <-p.exited:
			t.Fatalf("gpt-load exited under load: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	p.cmd.Process.Kill()
	<-p.exited
	p.exited <- nil // for the cleanup
	close(stop)
	wg.Wait()

	p2 := startProc(t, dir, env...)
	p2.waitHealthy(t)
	// Records the proxy held in memory, not yet acknowledged by the stream, die with the
	// process: the promise covers what the stream took.
	ids := streamRecordIDs(t, natsPort)
	if len(ids) < 1000 {
		t.Fatalf("the stream holds %d records; %d requests were answered before the kill", len(ids), answered.Load())
	}
	db, err := sqlstore.Open(t.Context(), filepath.Join(dir, "data", "gpt-load.db"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	eventstest.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		n, err := db.NewSelect().Table("request_logs").Count(t.Context())
		if err != nil || n != int64(len(ids)) {
			return fmt.Errorf("request_logs holds %d rows (%v), the stream %d records", n, err, len(ids))
		}
		return nil
	})
	var rowIDs []string
	if err := db.NewSelect().Table("request_logs").Column("id").Scan(t.Context(), &rowIDs); err != nil {
		t.Fatal(err)
	}
	for _, id := range rowIDs {
		if _, ok := ids[id]; !ok {
			t.Fatalf("row %s is not a record of the stream", id)
		}
	}
	var final, success, counted, used int64
	if err := db.NewRaw("SELECT COUNT(*) FROM request_logs WHERE request_type = 'final'").Scan(t.Context(), &final); err != nil {
		t.Fatal(err)
	}
	if err := db.NewRaw("SELECT COUNT(*) FROM request_logs WHERE is_success").Scan(t.Context(), &success); err != nil {
		t.Fatal(err)
	}
	if err := db.NewRaw("SELECT COALESCE(SUM(success_count + failure_count), 0) FROM group_hourly_stats").Scan(t.Context(), &counted); err != nil {
		t.Fatal(err)
	}
	if err := db.NewRaw("SELECT COALESCE(SUM(request_count), 0) FROM key_usage").Scan(t.Context(), &used); err != nil {
		t.Fatal(err)
	}
	if counted != final || used != success {
		t.Errorf("hourly stats count %d requests for %d final rows; key usage %d for %d successful rows", counted, final, used, success)
	}
	h := p2.waitHealthy(t)
	if rl, ok := h["request_logs"].(map[string]any); !ok || rl["sql"] != "ok" {
		t.Errorf("/health request_logs = %v", h["request_logs"])
	}
	t.Logf("%d requests answered before SIGKILL, %d records in the stream, all in SQL once", answered.Load(), len(ids))
	if int64(len(ids)) > answered.Load()+16 {
		t.Errorf("more records (%d) than answered requests (%d) and requests in flight", len(ids), answered.Load())
	}
}

// streamRecordIDs reads every record of GL_REQLOG through the node's NATS listener.
func streamRecordIDs(t *testing.T, natsPort int) map[string]struct{} {
	t.Helper()
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", natsPort))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, events.ReqLogStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]struct{}{}
	for left := info.NumPending; left > 0; {
		batch, err := cons.Fetch(int(min(left, 256)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			left--
			recs, _, err := events.DecodeRequestLogs(m.Headers(), m.Data())
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				ids[r.ID] = struct{}{}
			}
		}
		if err := batch.Error(); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}
