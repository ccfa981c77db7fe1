package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"gpt-load/domain"
	"gpt-load/events/eventstest"
)

// rawUpstream is a fake provider at the TCP level: it reads each request's head and hands
// the connection to serve, which may answer anything or nothing.
func rawUpstream(t *testing.T, serve func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				serve(c)
			})
		}
	})
	return "http://" + ln.Addr().String()
}

// reset closes a connection with a TCP reset rather than an orderly close.
func reset(c net.Conn) {
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
}

// waitClosed holds a connection open until the peer closes it (or 30 s pass).
func waitClosed(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	io.Copy(io.Discard, c)
}

// settleGoroutines waits until the goroutines are back to at most before (plus a small
// margin for the runtime's own), and fails with a dump otherwise.
func settleGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before+2 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestUpstreamFaults: whatever breaks on the upstream's side, the client gets a clear
// error in its provider's shape (or, once the answer is under way, an answer ended
// abnormally), the key is not blamed (DESIGN.md: connection errors and timeouts suspect
// the upstream, not the key), and nothing is left running.
// Not parallel: it counts goroutines.
func TestUpstreamFaults(t *testing.T) {
	e := newEnv(t, envOpts{})
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for _, tc := range []struct {
		name   string
		stream bool
		serve  func(c net.Conn)
		// status is what the client sees (API.md 7.6: 500 for a transport error); 200 means
		// the answer started and must then end abnormally (a read error on the client's side).
		status int
		// inLog is part of the request log's error message.
		inLog string
	}{
		{"reset before headers", false, reset, 500, "reset"},
		{"headers that never come", false, waitClosed, 500, "timed out"},
		{"slow loris: header bytes trickled", false, func(c net.Conn) {
			for _, b := range []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n") {
				if _, err := c.Write([]byte{b}); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}, 500, "timed out"},
		{"mid-stream cut", true, func(c net.Conn) {
			fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
			chunk := "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"par\"}}]}\n\n"
			fmt.Fprintf(c, "%x\r\n%s\r\n", len(chunk), chunk)
			time.Sleep(50 * time.Millisecond)
			reset(c)
		}, 200, "cut short"},
		{"gzip that is not gzip", false, func(c net.Conn) {
			body := "this is not gzip at all"
			fmt.Fprintf(c, "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		}, 401, ""},
		{"10 MB error body", false, func(c net.Conn) {
			const size = 10 << 20
			fmt.Fprintf(c, "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", size)
			fmt.Fprint(c, `{"error":{"message":"`)
			c.Write([]byte(strings.Repeat("x", size-len(`{"error":{"message":""}}`))))
			fmt.Fprint(c, `"}}`)
		}, 500, "xxx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := rawUpstream(t, tc.serve)
			name := "fault-" + strings.NewReplacer(" ", "-", ":", "").Replace(strings.ToLower(tc.name))
			gid := e.group(name, groupOpts{upstreams: []string{up}, config: map[string]any{
				"max_retries": 0, "request_timeout": 1, "response_header_timeout": 1, "blacklist_threshold": 1,
			}})
			e.addKeys(gid, "sk-fault-"+name)
			before := runtime.NumGoroutine()
			body := `{"model":"gpt-test","messages":[]}`
			if tc.stream {
				body = `{"model":"gpt-test","messages":[],"stream":true}`
			}
			start := time.Now()
			req, _ := http.NewRequest("POST", e.url(name, "/v1/chat/completions"), strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer sk-global")
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("the client waited %v", d)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %.300s", resp.StatusCode, tc.status, got)
			}
			if tc.status == 200 {
				if rerr == nil {
					t.Fatalf("a cut answer ended as if whole: %q", got)
				}
			} else {
				var shape struct {
					Error struct {
						Message string `json:"message"`
					} `json:"error"`
				}
				if rerr != nil || json.Unmarshal(got, &shape) != nil || shape.Error.Message == "" {
					t.Fatalf("not an OpenAI-shaped error (%v): %.300s", rerr, got)
				}
				if len(got) > 256<<10 { // the upstream body is read up to 64 KiB
					t.Fatalf("%d bytes relayed of an error body", len(got))
				}
			}
			logs := e.waitLogs(func(l []domain.RequestLog) error {
				for _, r := range l {
					if r.GroupName == name {
						return nil
					}
				}
				return errors.New("no log of the request yet")
			})
			for _, r := range logs {
				if r.GroupName == name && (r.IsSuccess || !strings.Contains(strings.ToLower(r.ErrorMessage), tc.inLog)) {
					t.Fatalf("log: success %v, error %q, want it to name %q", r.IsSuccess, r.ErrorMessage, tc.inLog)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := e.h.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if err := e.run.WaitFor(ctx, mustLastSeq(t, e)); err != nil {
				t.Fatal(err)
			}
			k := e.key(gid, "sk-fault-"+name)
			switch {
			case tc.status == 401:
				// An authentication failure counts, whatever its body: the key is out.
				if k.Status != domain.KeyInvalid {
					t.Fatalf("key after a 401: %+v", k)
				}
			case k.Status != domain.KeyActive || k.FailureCount != 0 || k.CooldownUntil != 0:
				t.Fatalf("the key was blamed for the upstream's fault: %+v", k)
			}
			settleGoroutines(t, before)
		})
	}
}

func mustLastSeq(t *testing.T, e *env) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pos, err := e.store.Position(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return pos.LastSeq
}

// connectRestartable dials the server over TCP and keeps reconnecting. Publishes are not buffered
// while it is away (ReconnectBufSize -1): an outage longer than the client's buffer
// behaves so, and the proxy must not count on the buffer.
func connectRestartable(n *eventstest.Restartable) func(t testing.TB) *nats.Conn {
	return func(t testing.TB) *nats.Conn {
		nc, err := nats.Connect(n.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond), nats.ReconnectBufSize(-1))
		if err != nil {
			t.Fatal(err)
		}
		return nc
	}
}

// TestHealthFactsSurviveNATSRestart: a cooldown and a blacklisting the proxy saw while
// NATS was down reach the log once NATS is back, without anyone's help, so every node's
// projection has them; the node's own projection follows the log again too.
func TestHealthFactsSurviveNATSRestart(t *testing.T) {
	t.Parallel()
	ns := eventstest.StartRestartable(t)
	e := newEnv(t, envOpts{connect: connectRestartable(ns)})
	limited := newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
		w.Header().Set("Retry-After", "3600")
		jsonError(w, 429, "Rate limit reached")
	})
	refused := newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
		jsonError(w, 401, "Incorrect API key provided")
	})
	cool := e.group("cool", groupOpts{upstreams: []string{limited.URL}, config: map[string]any{"max_retries": 0}})
	e.addKeys(cool, "sk-cool")
	black := e.group("black", groupOpts{upstreams: []string{refused.URL}, config: map[string]any{"max_retries": 0, "blacklist_threshold": 1}})
	e.addKeys(black, "sk-black")

	ns.Stop()
	if resp, body := e.do("POST", e.url("cool", "/v1/chat/completions"), "sk-global", `{}`); resp.StatusCode != 429 {
		t.Fatalf("rate-limited key: %d %s", resp.StatusCode, body)
	}
	if resp, body := e.do("POST", e.url("black", "/v1/chat/completions"), "sk-global", `{}`); resp.StatusCode != 401 {
		t.Fatalf("refused key: %d %s", resp.StatusCode, body)
	}
	// The facts wait while NATS is away (several rounds fail), and land once it is back.
	eventstest.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if n := e.h.WaitingFacts(); n != 2 {
			return fmt.Errorf("%d facts waiting, want 2", n)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // let a few publish rounds fail
	ns.Start()
	eventstest.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		if n := e.h.WaitingFacts(); n != 0 {
			return fmt.Errorf("%d facts still waiting", n)
		}
		c, b := e.key(cool, "sk-cool"), e.key(black, "sk-black")
		if c.CooldownUntil < time.Now().Add(50*time.Minute).UnixNano() {
			return fmt.Errorf("the cooldown did not reach the projection: %+v", c)
		}
		if b.Status != domain.KeyInvalid {
			return fmt.Errorf("the blacklisting did not reach the projection: %+v", b)
		}
		return nil
	})
	// Another node reading the log from the start has them too.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs, err := e.store.Read(ctx, 1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var failed int
	for _, ev := range evs {
		if _, ok := ev.Fact.(domain.KeyFailed); ok {
			failed++
		}
	}
	if failed != 2 {
		t.Fatalf("%d KeyFailed in the log, want 2 (one each, deduplicated)", failed)
	}
	if d := e.h.DroppedFacts(); d != 0 {
		t.Fatalf("%d facts dropped", d)
	}
}
