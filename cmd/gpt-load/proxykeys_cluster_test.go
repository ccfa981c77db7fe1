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
	"testing"
	"time"
)

// scaledClock runs speed times faster than the wall clock from a fixed start, so that
// minutes of limits pass in seconds while the nodes' rounds (Interval / speed of wall
// time) keep their ratio to them.
type scaledClock struct {
	origin time.Time
	start  time.Time
	speed  int64
}

func (c *scaledClock) Now() time.Time {
	return c.origin.Add(time.Duration(int64(time.Since(c.start)) * c.speed))
}

// TestClusterSharesAProxyKeyRPM sends 200 requests a minute of a key limited to 60 RPM to
// three nodes, unevenly (50%, 30%, 20%): once the first minute's bursts are spent, the
// cluster as a whole admits 57 to 63 a minute. Time runs 10 times faster: a node's round
// of reports and rebalancing is 1/10 s of wall time, a second of the limits' clock.
func TestClusterSharesAProxyKeyRPM(t *testing.T) {
	t.Parallel()
	clock := &scaledClock{origin: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC), start: time.Now(), speed: limitSpeed}
	nodes, _, _ := tunedClusterWithGroup(t, "rpm-shared", "sk-legacy", nil, func(c *Config) {
		c.Limits = LimitsTuning{Interval: time.Second / limitSpeed, Now: clock.Now}
	})
	checkSharedRPM(t, clock, nodes, []int{0, 0, 0, 0, 0, 1, 1, 1, 2, 2})
}

// TestOneNodeProxyKeyRPM is the same demand on a single node with its embedded NATS: it
// hears nobody and owns the whole limit.
func TestOneNodeProxyKeyRPM(t *testing.T) {
	t.Parallel()
	clock := &scaledClock{origin: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC), start: time.Now(), speed: limitSpeed}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	}))
	t.Cleanup(upstream.Close)
	n, err := startTunedNode(t, map[string]string{
		"NODE_NAME": "solo", "DATA_DIR": t.TempDir(), "HOST": "127.0.0.1",
		"PORT": strconv.Itoa(freePort(t)), "AUTH_KEY": e2eAdminKey,
	}, func(c *Config) { c.Limits = LimitsTuning{Interval: time.Second / limitSpeed, Now: clock.Now} })
	if err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, 30*time.Second, n)
	var g struct {
		ID uint64 `json:"id"`
	}
	api(t, n.api(), "POST", "/api/groups", `{"name":"rpm-shared","channel_type":"openai","test_model":"m","upstreams":[{"url":"`+upstream.URL+`","weight":1}]}`, &g)
	api(t, n.api(), "POST", "/api/keys/add-multiple", fmt.Sprintf(`{"group_id":%d,"keys_text":"sk-up-1"}`, g.ID), nil)
	checkSharedRPM(t, clock, []*clusterNode{n}, []int{0})
}

// limitSpeed is how much faster than the wall clock the limits' clock runs in these tests.
const limitSpeed = 10

// checkSharedRPM creates a key of 60 RPM and sends it 200 requests a minute of the limits'
// clock for four minutes, request i to nodes[spread[i%len(spread)]]; every minute after
// the first must admit 57 to 63.
func checkSharedRPM(t *testing.T, clock *scaledClock, nodes []*clusterNode, spread []int) {
	t.Helper()
	const speed = limitSpeed
	var key struct {
		ID  uint64 `json:"id"`
		Key string `json:"key"`
	}
	api(t, nodes[0].api(), "POST", "/api/proxy-keys", `{"name":"shared","rpm":60}`, &key)
	if !strings.HasPrefix(key.Key, "sk-gl-") {
		t.Fatalf("create answered key %q", key.Key)
	}

	const minutes = 4
	perMinute := make([]int, minutes)
	perNode := make([]int, len(nodes))
	var mu sync.Mutex
	var wg sync.WaitGroup
	begin := clock.Now()
	interval := time.Minute / 200 // in the limits' clock
	client := &http.Client{Timeout: 10 * time.Second}
	for i := 0; ; i++ {
		at := begin.Add(time.Duration(i) * interval)
		if at.Sub(begin) >= minutes*time.Minute {
			break
		}
		if d := at.Sub(clock.Now()) / speed; d > 0 {
			time.Sleep(d)
		}
		n := spread[i%len(spread)]
		wg.Go(func() {
			req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/proxy/rpm-shared/v1/chat/completions", nodes[n].port),
				strings.NewReader(`{"model":"m","messages":[]}`))
			req.Header.Set("Authorization", "Bearer "+key.Key)
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			// Counted in the minute it was answered: a request the load held up is admitted
			// by the clock of its arrival, not of its schedule.
			answered := clock.Now()
			resp.Body.Close()
			switch resp.StatusCode {
			case 200:
				mu.Lock()
				perMinute[min(int(answered.Sub(begin)/time.Minute), minutes-1)]++
				perNode[n]++
				mu.Unlock()
			case http.StatusTooManyRequests:
			default:
				t.Errorf("node %d answered %d", n+1, resp.StatusCode)
			}
		})
	}
	wg.Wait()
	t.Logf("admitted per minute %v, per node %v (machine shared with other work)", perMinute, perNode)
	for m, n := range perMinute[1:] {
		if n < 57 || n > 63 {
			t.Errorf("minute %d: the cluster admitted %d, want 57..63", m+2, n)
		}
	}

	// The admin object shows when the key was last used, from any node.
	var list []struct {
		ID         uint64     `json:"id"`
		Source     string     `json:"source"`
		LastUsedAt *time.Time `json:"last_used_at"`
	}
	api(t, nodes[len(nodes)-1].api(), "GET", "/api/proxy-keys", "", &list)
	if len(list) == 0 || list[0].ID != key.ID || list[0].LastUsedAt == nil {
		b, _ := json.Marshal(list)
		t.Errorf("list: %s", b)
	}
}
