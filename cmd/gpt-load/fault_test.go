package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/uptrace/bun"

	"gpt-load/events/eventstest"
	"gpt-load/projections/sqlstore"
	"gpt-load/projections/sqlstore/sqlstoretest"
)

// faultUpstream answers every chat completion at once.
func faultUpstream(t *testing.T) string {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`)
	}))
	t.Cleanup(up.Close)
	return up.URL
}

// faultLoad keeps a node busy with proxied requests to one group and admin writes (new
// groups) until halt, counting the requests answered in full and the writes acknowledged.
type faultLoad struct {
	port     int
	group    string
	upstream string

	stop      chan struct{}
	wg        sync.WaitGroup
	completed atomic.Int64 // proxied requests answered 200 and read to the end
	failed    atomic.Int64 // proxied requests that got an error or another status
	refused   atomic.Int64 // admin writes not acknowledged

	mu    sync.Mutex
	acked []string // groups whose creation was acknowledged
}

// startFaultLoad creates group on the node at port (proxy key "sk-proxy-<group>", one
// upstream key) and starts clients proxy clients and one admin writer.
func startFaultLoad(t *testing.T, port int, group, upstream string, clients int) *faultLoad {
	t.Helper()
	p := &proc{port: port}
	var g struct {
		ID uint64 `json:"id"`
	}
	api(t, p, "POST", "/api/groups", `{"name":"`+group+`","channel_type":"openai","test_model":"m","proxy_keys":"sk-proxy-`+group+`","upstreams":[{"url":"`+upstream+`","weight":1}]}`, &g)
	api(t, p, "POST", "/api/keys/add-multiple", fmt.Sprintf(`{"group_id":%d,"keys_text":"sk-up-1\nsk-up-2"}`, g.ID), nil)
	l := &faultLoad{port: port, group: group, upstream: upstream, stop: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second}
	for range clients {
		l.wg.Go(func() {
			for !l.halted() {
				req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/proxy/%s/v1/chat/completions", port, group),
					strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
				req.Header.Set("Authorization", "Bearer sk-proxy-"+group)
				resp, err := client.Do(req)
				if err != nil {
					l.failed.Add(1)
					l.pause()
					continue
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode == http.StatusOK {
					l.completed.Add(1)
				} else {
					l.failed.Add(1)
					l.pause()
				}
			}
		})
	}
	l.wg.Go(func() {
		for i := 0; !l.halted(); i++ {
			name := fmt.Sprintf("%s-w-%d", group, i)
			req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/api/groups", port),
				strings.NewReader(`{"name":"`+name+`","channel_type":"openai","test_model":"m","upstreams":[{"url":"`+upstream+`","weight":1}]}`))
			req.Header.Set("Authorization", "Bearer "+e2eAdminKey)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if err == nil && resp.StatusCode == http.StatusOK {
				l.mu.Lock()
				l.acked = append(l.acked, name)
				l.mu.Unlock()
			} else {
				l.refused.Add(1)
				l.pause()
			}
		}
	})
	return l
}

func (l *faultLoad) halted() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

// pause waits a little after a failure, so a node that is down is not hammered.
func (l *faultLoad) pause() {
	select {
	case <-l.stop:
	case <-time.After(20 * time.Millisecond):
	}
}

func (l *faultLoad) halt() {
	close(l.stop)
	l.wg.Wait()
}

func (l *faultLoad) ackedGroups() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.acked...)
}

// waitFor waits until cond holds, failing the test with its last error after within.
func (l *faultLoad) waitFor(t *testing.T, within time.Duration, cond func() error) {
	t.Helper()
	eventstest.CheckFor(t, within, 10*time.Millisecond, cond)
}

// checkAcknowledgedGroups fails the test unless the node at port knows every group whose
// creation was acknowledged.
func checkAcknowledgedGroups(t *testing.T, port int, acked []string) {
	t.Helper()
	var groups []struct {
		Name string `json:"name"`
	}
	api(t, &proc{port: port}, "GET", "/api/groups", "", &groups)
	have := map[string]bool{}
	for _, g := range groups {
		have[g.Name] = true
	}
	var lost []string
	for _, name := range acked {
		if !have[name] {
			lost = append(lost, name)
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d of %d acknowledged admin writes lost: %v", len(lost), len(acked), lost)
	}
}

// finalLogs counts the final request logs of group in SQL.
func finalLogs(ctx context.Context, db *bun.DB, group string) (int64, error) {
	var n int64
	err := db.NewRaw("SELECT COUNT(*) FROM request_logs WHERE group_name = ? AND request_type = 'final'", group).Scan(ctx, &n)
	return n, err
}

// TestSIGKILLLosesNoAcknowledgedWrite kills the service with SIGKILL under proxy load and
// admin writes, starts it again on the same DATA_DIR, and checks that every acknowledged
// admin write is there and counts the request logs of completed requests in SQL: only the
// records the proxy still held unacknowledged at the kill may be missing.
func TestSIGKILLLosesNoAcknowledgedWrite(t *testing.T) {
	t.Parallel()
	up := faultUpstream(t)
	dir := t.TempDir()
	port, natsPort := freePort(t), freePort(t)
	env := []string{"PORT=" + strconv.Itoa(port), "HOST=127.0.0.1", "AUTH_KEY=" + e2eAdminKey,
		"NATS_LISTEN=127.0.0.1:" + strconv.Itoa(natsPort)}
	p := startProc(t, dir, env...)
	p.waitHealthy(t)
	l := startFaultLoad(t, port, "kill", up, 8)
	l.waitFor(t, 60*time.Second, func() error {
		if n, a := l.completed.Load(), len(l.ackedGroups()); n < 1000 || a < 20 {
			return fmt.Errorf("%d requests completed, %d writes acknowledged", n, a)
		}
		return nil
	})
	// Completed requests of the last 100 ms: their logs may still be in the
	// proxy's hands (5 ms batches, then the acknowledgement).
	recentFrom := l.completed.Load()
	<-time.After(100 * time.Millisecond)
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	p.exited <- nil // for the cleanup
	l.halt()
	completed, recent, acked := l.completed.Load(), l.completed.Load()-recentFrom, l.ackedGroups()

	p2 := startProc(t, dir, env...)
	p2.waitHealthy(t)
	checkAcknowledgedGroups(t, port, acked)
	inStream := len(streamRecordIDs(t, natsPort))
	db, err := sqlstore.Open(t.Context(), filepath.Join(dir, "data", "gpt-load.db"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rows int64
	l.waitFor(t, 60*time.Second, func() error {
		rows, err = finalLogs(t.Context(), db, "kill")
		if err != nil || rows < int64(inStream) {
			return fmt.Errorf("%d final logs in SQL (%v), %d records in the stream", rows, err, inStream)
		}
		return nil
	})
	lost := max(completed-rows, 0)
	t.Logf("SIGKILL: %d requests completed (%d in the last 100 ms), %d failed; %d admin writes acknowledged, 0 lost; %d request logs in SQL, %d logs of completed requests lost",
		completed, recent, l.failed.Load(), len(acked), rows, lost)
	if lost > recent {
		t.Fatalf("%d logs of completed requests lost, more than the %d requests completed in the last 100 ms before the kill", lost, recent)
	}
}

// TestNATSRestartInExternalMode stops the service's external NATS server under load for a
// few seconds and starts it again on the same port and store: the service recovers without
// help, no acknowledged admin write is lost, and the logs of all completed requests reach
// SQL (the process did not die, so none may be missing).
func TestNATSRestartInExternalMode(t *testing.T) {
	t.Parallel()
	up := faultUpstream(t)
	ns := eventstest.StartRestartable(t)
	port := freePort(t)
	p := startProc(t, t.TempDir(), "PORT="+strconv.Itoa(port), "HOST=127.0.0.1", "AUTH_KEY="+e2eAdminKey,
		"NATS_URL="+ns.URL(), "DATA_DIR=data")
	p.waitHealthy(t)
	l := startFaultLoad(t, port, "natsgone", up, 4)
	l.waitFor(t, 60*time.Second, func() error {
		if n, a := l.completed.Load(), len(l.ackedGroups()); n < 300 || a < 10 {
			return fmt.Errorf("%d requests completed, %d writes acknowledged", n, a)
		}
		return nil
	})
	ns.Stop()
	down := l.completed.Load()
	<-time.After(3 * time.Second)
	servedWhileDown := l.completed.Load() - down
	ns.Start()
	ackedBefore := len(l.ackedGroups())
	// Recovery: admin writes are acknowledged again, without anyone's help.
	l.waitFor(t, 60*time.Second, func() error {
		if a := len(l.ackedGroups()); a < ackedBefore+5 {
			return fmt.Errorf("%d admin writes acknowledged since NATS came back", a-ackedBefore)
		}
		return nil
	})
	l.halt()
	completed, acked := l.completed.Load(), l.ackedGroups()
	checkAcknowledgedGroups(t, port, acked)
	db, err := sqlstore.Open(t.Context(), filepath.Join(p.dir, "data", "gpt-load.db"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rows int64
	l.waitFor(t, 60*time.Second, func() error {
		rows, err = finalLogs(t.Context(), db, "natsgone")
		if err != nil || rows < completed {
			return fmt.Errorf("%d final logs in SQL (%v) for %d completed requests", rows, err, completed)
		}
		return nil
	})
	t.Logf("NATS restart: %d requests completed (%d while NATS was down), %d failed; %d admin writes acknowledged (%d refused), 0 lost; %d logs in SQL, 0 lost",
		completed, servedWhileDown, l.failed.Load(), len(acked), l.refused.Load(), rows)
}

// TestSQLOutage cuts the service off its PostgreSQL database for a few seconds under load:
// the proxy keeps answering, admin writes (which live in the event log) keep being
// acknowledged, and once the database is back every completed request's log reaches it,
// without help.
func TestSQLOutage(t *testing.T) {
	t.Parallel()
	dsn := sqlstoretest.DSN(t, "postgres")
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cut := sqlstoretest.NewCutProxy(t, u.Host)
	u.Host = cut.Addr
	up := faultUpstream(t)
	port := freePort(t)
	p := startProc(t, t.TempDir(), "PORT="+strconv.Itoa(port), "HOST=127.0.0.1", "AUTH_KEY="+e2eAdminKey,
		"DATABASE_DSN="+u.String())
	p.waitHealthy(t)
	l := startFaultLoad(t, port, "sqlgone", up, 4)
	l.waitFor(t, 60*time.Second, func() error {
		if n := l.completed.Load(); n < 300 {
			return fmt.Errorf("%d requests completed", n)
		}
		return nil
	})
	cut.Cut()
	down, ackedDown := l.completed.Load(), len(l.ackedGroups())
	<-time.After(3 * time.Second)
	servedWhileDown, ackedWhileDown := l.completed.Load()-down, len(l.ackedGroups())-ackedDown
	cut.Restore()
	l.waitFor(t, 10*time.Second, func() error {
		if n := l.completed.Load(); n < down+servedWhileDown+100 {
			return errors.New("waiting for traffic after the database came back")
		}
		return nil
	})
	l.halt()
	completed, acked := l.completed.Load(), l.ackedGroups()
	checkAcknowledgedGroups(t, port, acked)
	db := sqlstoretest.Open(t, dsn)
	var rows int64
	l.waitFor(t, 90*time.Second, func() error {
		rows, err = finalLogs(t.Context(), db, "sqlgone")
		if err != nil || rows < completed {
			return fmt.Errorf("%d final logs in SQL (%v) for %d completed requests", rows, err, completed)
		}
		return nil
	})
	t.Logf("SQL outage: %d requests completed (%d while the database was cut), %d failed; %d admin writes acknowledged (%d while cut), 0 lost; %d logs in SQL, 0 lost",
		completed, servedWhileDown, l.failed.Load(), len(acked), ackedWhileDown, rows)
	if servedWhileDown == 0 {
		t.Error("the proxy answered nothing while the database was cut")
	}
	p.stop(t, 30*time.Second)
}

// TestDiskFull runs the service on a small tmpfs DATA_DIR and fills it: admin writes fail
// with an error rather than a hang or a crash, nothing acknowledged is lost, and once space
// returns the service starts again on the same DATA_DIR with everything acknowledged and
// takes writes.
// The request-log stream is bounded to 8 MiB so the server can reserve it on 64 MiB. It
// needs root (mount -t tmpfs) and skips elsewhere.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs for DATA_DIR (needs root): %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	up := faultUpstream(t)
	port := freePort(t)
	env := []string{"PORT=" + strconv.Itoa(port), "HOST=127.0.0.1", "AUTH_KEY=" + e2eAdminKey, "DATA_DIR=" + dir, "REQLOG_MAX_BYTES=8MiB"}
	p := startProc(t, t.TempDir(), env...)
	p.waitHealthy(t)
	l := startFaultLoad(t, port, "full", up, 2)
	l.waitFor(t, 60*time.Second, func() error {
		if a := len(l.ackedGroups()); a < 10 {
			return fmt.Errorf("%d writes acknowledged", a)
		}
		return nil
	})
	// Fill the disk.
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()
	refusedAt := l.refused.Load()
	l.waitFor(t, 60*time.Second, func() error {
		if n := l.refused.Load() - refusedAt; n < 3 {
			return fmt.Errorf("%d admin writes refused since the disk filled", n)
		}
		return nil
	})
	// The refusal is a clear error, not a hang.
	start := time.Now()
	code, body := adminRequest(t, port, e2eAdminKey, "POST", "/api/groups", `{"name":"full-while-full","channel_type":"openai","test_model":"m","upstreams":[{"url":"`+up+`","weight":1}]}`)
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "event log") || time.Since(start) > 15*time.Second {
		t.Fatalf("an admin write on a full disk: %d after %v: %s", code, time.Since(start), body)
	}
	select {
	case err := <-p.exited:
		t.Fatalf("the service exited when the disk filled: %v", err)
	default:
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// The request-log database takes writes again by itself, and no log was parked for
	// its lack of space.
	var rl map[string]any
	l.waitFor(t, 30*time.Second, func() error {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", port))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var h struct {
			RequestLogs map[string]any `json:"request_logs"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
			return err
		}
		if rl = h.RequestLogs; rl["sql"] != "ok" {
			return fmt.Errorf("/health request_logs %v", rl)
		}
		return nil
	})
	if rl["parked_records"] != 0.0 {
		t.Fatalf("request logs parked while the disk was full: %v", rl)
	}
	// The embedded JetStream store keeps the
	// write error of its stream until the server starts again (nats-server's file store),
	// so the node is restarted once space has returned.
	l.halt()
	acked := l.ackedGroups()
	checkAcknowledgedGroups(t, port, acked)
	stopCode := p.stop(t, 60*time.Second)
	p2 := startProc(t, t.TempDir(), env...)
	p2.waitHealthy(t)
	checkAcknowledgedGroups(t, port, acked)
	api(t, p2, "POST", "/api/groups", `{"name":"full-after","channel_type":"openai","test_model":"m","upstreams":[{"url":"`+up+`","weight":1}]}`, nil)
	t.Logf("disk full: %d admin writes acknowledged, 0 lost; %d refused; %d requests completed, %d failed; a write on the full disk: %d %s; exit code of the stop %d",
		len(acked), l.refused.Load(), l.completed.Load(), l.failed.Load(), code, body, stopCode)
}
