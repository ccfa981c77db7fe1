package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"gpt-load/events/eventstest"
	"gpt-load/projections/sqlstore"
)

// clusterNode is one of our nodes run inside the test process against a NATS cluster.
type clusterNode struct {
	name   string
	n      *node
	port   int
	cancel context.CancelFunc
	done   chan error // serve's result
	out    *syncBuffer
	killed bool // its NATS connection was cut: its stop may fail
}

// kill cuts the node's connection to NATS, as the loss of its machine does for the
// cluster: it renews no lease, writes nothing, and its end is not graceful.
func (c *clusterNode) kill() {
	c.killed = true
	c.n.nc.Close()
}

// api is the node as the admin API helpers of this package see it.
func (c *clusterNode) api() *proc { return &proc{port: c.port} }

// clusterEnv is the configuration of node i of a cluster on url: its own data directory,
// three replicas, and the extra variables.
func clusterEnv(t *testing.T, url string, i int, extra map[string]string) map[string]string {
	env := map[string]string{
		"NODE_NAME": fmt.Sprintf("gl-%d", i), "DATA_DIR": t.TempDir(), "HOST": "127.0.0.1",
		"PORT": strconv.Itoa(freePort(t)), "AUTH_KEY": e2eAdminKey,
		"NATS_URL": url, "NATS_REPLICAS": "3", "LOG_LEVEL": "info",
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// startClusterNode starts a node with env and serves it until the test ends (or stop).
// It returns the error of a start that failed.
func startClusterNode(t *testing.T, env map[string]string) (*clusterNode, error) {
	return startTunedNode(t, env, nil)
}

// startTunedNode is startClusterNode with tune applied to the configuration read from env.
func startTunedNode(t *testing.T, env map[string]string, tune func(c *Config)) (*clusterNode, error) {
	t.Helper()
	cfg, err := LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, "")
	if err != nil {
		return nil, err
	}
	if tune != nil {
		tune(&cfg)
	}
	return startClusterNodeWith(t, cfg)
}

// startClusterNodeWith is startClusterNode with a configuration already loaded.
func startClusterNodeWith(t *testing.T, cfg Config) (*clusterNode, error) {
	t.Helper()
	out := &syncBuffer{}
	log := zerolog.New(out).With().Timestamp().Str("node", cfg.NodeName).Logger()
	ctx, cancel := context.WithCancel(context.Background())
	n, err := startNode(ctx, cfg, log)
	if err != nil {
		cancel()
		if t.Failed() || testing.Verbose() {
			t.Logf("%s output:\n%s", cfg.NodeName, out.String())
		}
		return nil, err
	}
	c := &clusterNode{name: cfg.NodeName, n: n, port: cfg.Port, cancel: cancel, done: make(chan error, 1), out: out}
	go func() { c.done <- n.serve(ctx) }()
	t.Cleanup(func() {
		c.stop(t)
		if t.Failed() || os.Getenv("CLUSTER_TEST_LOGS") != "" {
			t.Logf("%s output:\n%s", c.name, c.out.String())
		}
	})
	return c, nil
}

// stop shuts the node down gracefully and waits for it; a second call does nothing.
func (c *clusterNode) stop(t *testing.T) {
	t.Helper()
	c.cancel()
	if err, ok := <-c.done; ok {
		close(c.done)
		if err != nil && !errors.Is(err, context.Canceled) && !c.killed {
			t.Errorf("%s stopped with %v", c.name, err)
		}
	}
}

// startCluster starts count nodes at the same moment, as docker compose up does, and
// fails the test if any of them does not start.
func startCluster(t *testing.T, url string, count int, extra func(i int) map[string]string) []*clusterNode {
	t.Helper()
	return startTunedCluster(t, url, count, extra, nil)
}

// startTunedCluster is startCluster with tune applied to each node's configuration.
func startTunedCluster(t *testing.T, url string, count int, extra func(i int) map[string]string, tune func(c *Config)) []*clusterNode {
	t.Helper()
	nodes := make([]*clusterNode, count)
	errs := make([]error, count)
	envs := make([]map[string]string, count)
	for i := range count {
		var x map[string]string
		if extra != nil {
			x = extra(i)
		}
		envs[i] = clusterEnv(t, url, i+1, x)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range count {
		wg.Go(func() {
			<-start
			nodes[i], errs[i] = startTunedNode(t, envs[i], tune)
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("nodes started at once on a fresh cluster: %v", err)
	}
	return nodes
}

// waitHealthy waits until /health of every node answers 200.
func waitHealthy(t *testing.T, within time.Duration, nodes ...*clusterNode) {
	t.Helper()
	for _, c := range nodes {
		eventstest.CheckFor(t, within, 20*time.Millisecond, func() error {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", c.port))
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: /health answers %d", c.name, resp.StatusCode)
			}
			return nil
		})
	}
}

// TestClusterNodesStartAtOnce starts three nodes at the same moment as the three servers
// of a fresh NATS cluster, before it has a JetStream meta leader: every node must wait for
// the cluster, create or find the streams and consumers, and serve. Node 3 is IS_SLAVE:
// it serves, but never leads.
func TestClusterNodesStartAtOnce(t *testing.T) {
	t.Parallel()
	c := eventstest.StartCluster(t, 3)
	start := time.Now()
	nodes := startCluster(t, c.URL(), 3, func(i int) map[string]string {
		if i == 2 {
			return map[string]string{"IS_SLAVE": "true", "LEADER_LEASE": "1s"}
		}
		return map[string]string{"LEADER_LEASE": "1s"}
	})
	waitHealthy(t, 60*time.Second, nodes...)
	t.Logf("three nodes healthy %v after the cluster's servers accepted connections", time.Since(start).Round(time.Millisecond))

	// A change made on node 1 is in force on node 3.
	var g struct {
		ID uint64 `json:"id"`
	}
	api(t, nodes[0].api(), "POST", "/api/groups", `{"name":"at-once","channel_type":"openai","test_model":"m","upstreams":[{"url":"http://127.0.0.1:1","weight":1}]}`, &g)
	eventstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if v := nodes[2].n.proj.View(); v == nil || !found(v.GroupByName("at-once")) {
			return errors.New("node 3 does not know the group created on node 1")
		}
		return nil
	})

	// One of nodes 1 and 2 leads; when it stops, the other takes over.
	var l *clusterNode
	eventstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if l = leaderOf(nodes); l == nil {
			return errors.New("no single leader")
		}
		return nil
	})
	if l == nodes[2] {
		t.Fatal("the IS_SLAVE node leads")
	}
	l.stop(t)
	other := nodes[0]
	if l == nodes[0] {
		other = nodes[1]
	}
	eventstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !other.n.lease.Leading() {
			return fmt.Errorf("%s does not lead after %s stopped", other.name, l.name)
		}
		return nil
	})
	// With both candidates gone, the IS_SLAVE node is alone: it still does not lead.
	other.stop(t)
	time.Sleep(2 * time.Second) // two leases
	if nodes[2].n.lease.Leading() || nodes[2].n.lease.Leader() != "" {
		t.Fatalf("IS_SLAVE node: leading %v, sees leader %q", nodes[2].n.lease.Leading(), nodes[2].n.lease.Leader())
	}
}

func found[T any](_ T, ok bool) bool { return ok }

// adminDo calls the admin API of node c and returns the status and the raw body.
func adminDo(t *testing.T, c *clusterNode, method, path, body string) (int, []byte) {
	t.Helper()
	return adminRequest(t, c.port, e2eAdminKey, method, path, body)
}

type taskStatus struct {
	TaskType  string `json:"task_type"`
	IsRunning bool   `json:"is_running"`
	GroupName string `json:"group_name"`
	Processed int    `json:"processed"`
	Total     int    `json:"total"`
	Error     string `json:"error"`
}

func (c *clusterNode) task(t *testing.T) taskStatus {
	t.Helper()
	var st taskStatus
	api(t, c.api(), "GET", "/api/tasks/status", "", &st)
	return st
}

// leaderOf returns the node that holds the lease among nodes; nil when none or several.
func leaderOf(nodes []*clusterNode) *clusterNode {
	var l *clusterNode
	for _, c := range nodes {
		if c.n.lease.Leading() {
			if l != nil {
				return nil
			}
			l = c
		}
	}
	return l
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// TestClusterOfThreeNodes runs three nodes on a 3-server cluster and walks what a
// cluster promises: admin changes in force everywhere (and how fast), one winner when
// two nodes create the same group, one task slot for all, one leader that is replaced
// within its lease when it dies, and a task of the dead node marked failed.
func TestClusterOfThreeNodes(t *testing.T) {
	t.Parallel()
	slow := &gate{}
	slow.close()
	slow.reset()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.Header.Get("Authorization"), "sk-slow") {
			select { // a validation that lasts until the test lets it go
			case <-slow.wait():
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	}))
	t.Cleanup(upstream.Close)
	t.Cleanup(slow.close) // before the upstream closes: it waits for held requests

	c := eventstest.RunCluster(t, 3)
	const lease = 2 * time.Second
	nodes := startCluster(t, c.URL(), 3, func(int) map[string]string {
		return map[string]string{"LEADER_LEASE": lease.String()}
	})
	waitHealthy(t, 60*time.Second, nodes...)

	// One leader, named alike by every node's /health.
	var leader *clusterNode
	eventstest.CheckFor(t, 3*lease, 10*time.Millisecond, func() error {
		if leader = leaderOf(nodes); leader == nil {
			return errors.New("no single leader")
		}
		for _, n := range nodes {
			var h struct {
				Leader struct {
					Node string `json:"node"`
					Self bool   `json:"self"`
				} `json:"leader"`
			}
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", n.port))
			if err != nil {
				return err
			}
			json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if h.Leader.Node != leader.name || h.Leader.Self != (n == leader) {
				return fmt.Errorf("%s's /health names leader %+v, want %s", n.name, h.Leader, leader.name)
			}
		}
		return nil
	})

	// An admin change on node 1 is in force on node 3: measure the delay.
	var g struct {
		ID uint64 `json:"id"`
	}
	api(t, nodes[0].api(), "POST", "/api/groups", `{"name":"prop","channel_type":"openai","test_model":"m","proxy_keys":"sk-proxy-prop","upstreams":[{"url":"`+upstream.URL+`","weight":1}]}`, &g)
	var delays []time.Duration
	for i := range 40 {
		desc := fmt.Sprintf("change %d", i)
		start := time.Now()
		api(t, nodes[0].api(), "PUT", fmt.Sprintf("/api/groups/%d", g.ID), fmt.Sprintf(`{"description":%q}`, desc), nil)
		for {
			if v := nodes[2].n.proj.View(); v != nil {
				if gv, ok := v.Group(g.ID); ok && gv.Group.Description == desc {
					break
				}
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("change %d not in force on node 3 after 5 s", i)
			}
			time.Sleep(200 * time.Microsecond)
		}
		delays = append(delays, time.Since(start))
	}
	// A figure, not a check: timings on a shared machine under the race detector vary.
	t.Logf("admin change on node 1 in force on node 3 (write + propagation): p50 %v, p99 %v, max %v over %d changes",
		percentile(delays, 0.5), percentile(delays, 0.99), slices.Max(delays), len(delays))

	// Two nodes create the same group name at once: exactly one succeeds.
	codes := make([]int, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			codes[i], _ = adminDo(t, nodes[i+1], "POST", "/api/groups", `{"name":"twice","channel_type":"openai","test_model":"m","upstreams":[{"url":"`+upstream.URL+`","weight":1}]}`)
		})
	}
	wg.Wait()
	if slices.Sort(codes); codes[0] != http.StatusOK || codes[1] == http.StatusOK {
		t.Fatalf("two nodes creating the same group: %v, want one 200 and one refusal", codes)
	}

	// A task started on node 1 is seen on node 2 and refused on node 3 while it runs;
	// node 2 sees it finish.
	api(t, nodes[0].api(), "POST", "/api/keys/add-multiple", fmt.Sprintf(`{"group_id":%d,"keys_text":"sk-slow-1\nsk-slow-2"}`, g.ID), nil)
	api(t, nodes[0].api(), "POST", "/api/keys/validate-group", fmt.Sprintf(`{"group_id":%d}`, g.ID), nil)
	// A read may be served by a replica of the bucket that has not applied the write yet
	// (KV reads are direct gets): it is in step within milliseconds.
	eventstest.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		if st := nodes[1].task(t); !st.IsRunning || st.TaskType != "KEY_VALIDATION" || st.GroupName != "prop" || st.Total != 2 {
			return fmt.Errorf("node 2 sees the task of node 1 as %+v", st)
		}
		return nil
	})
	if code, body := adminDo(t, nodes[2], "POST", "/api/keys/validate-group", fmt.Sprintf(`{"group_id":%d}`, g.ID)); code == http.StatusOK {
		t.Fatalf("node 3 started a second task while node 1's runs: %d %s", code, body)
	}
	slow.close()
	eventstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if st := nodes[1].task(t); st.IsRunning || st.Processed != 2 || st.Error != "" {
			return fmt.Errorf("node 2 sees %+v", st)
		}
		return nil
	})

	// The leader dies (its connection to NATS is cut, as when its machine goes) while it
	// runs a task: another node takes over within the lease, and the task ends failed.
	slow.reset()
	api(t, leader.api(), "POST", "/api/keys/validate-group", fmt.Sprintf(`{"group_id":%d}`, g.ID), nil)
	rest := slices.DeleteFunc(slices.Clone(nodes), func(n *clusterNode) bool { return n == leader })
	died := time.Now()
	leader.kill()
	var next *clusterNode
	eventstest.CheckFor(t, 3*lease, 10*time.Millisecond, func() error {
		if next = leaderOf(rest); next == nil {
			return errors.New("no new leader")
		}
		return nil
	})
	failover := time.Since(died)
	t.Logf("leader %s died; %s leads %v later (lease %v)", leader.name, next.name, failover.Round(time.Millisecond), lease)
	if failover > 2*lease {
		t.Errorf("failover took %v, more than the lease %v and a campaign tick", failover, lease)
	}
	eventstest.CheckFor(t, 3*lease, 20*time.Millisecond, func() error {
		st := rest[0].task(t)
		if st.IsRunning || !strings.Contains(st.Error, leader.name) {
			return fmt.Errorf("the dead leader's task is shown as %+v", st)
		}
		return nil
	})
	t.Logf("the dead node's task shown failed %v after it died", time.Since(died).Round(time.Millisecond))
	if code, body := adminDo(t, rest[1], "POST", "/api/keys/validate-group", fmt.Sprintf(`{"group_id":%d}`, g.ID)); code != http.StatusOK {
		t.Fatalf("slot not free after the dead node's task: %d %s", code, body)
	}
	slow.close()
}

// gate holds requests back until it is closed; reset closes it again for the next ones.
type gate struct {
	mu     sync.Mutex
	ch     chan struct{}
	closed bool
}

func (g *gate) wait() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ch == nil {
		g.ch = make(chan struct{})
	}
	return g.ch
}

func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ch == nil {
		g.ch = make(chan struct{})
	}
	if !g.closed {
		close(g.ch)
		g.closed = true
	}
}

func (g *gate) reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ch, g.closed = make(chan struct{}), false
}

// clusterWithGroup starts a 3-server cluster, three nodes on it (extra: their own
// variables) and an upstream answering chat completions, and creates a group of two keys
// named name with proxyKey, in force on every node when it returns.
func clusterWithGroup(t *testing.T, name, proxyKey string, extra func(i int) map[string]string) ([]*clusterNode, *eventstest.Cluster, string) {
	t.Helper()
	return tunedClusterWithGroup(t, name, proxyKey, extra, nil)
}

// tunedClusterWithGroup is clusterWithGroup with tune applied to each node's configuration.
func tunedClusterWithGroup(t *testing.T, name, proxyKey string, extra func(i int) map[string]string, tune func(c *Config)) ([]*clusterNode, *eventstest.Cluster, string) {
	t.Helper()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	}))
	t.Cleanup(upstream.Close)
	c := eventstest.RunCluster(t, 3)
	nodes := startTunedCluster(t, c.URL(), 3, extra, tune)
	waitHealthy(t, 60*time.Second, nodes...)
	var g struct {
		ID uint64 `json:"id"`
	}
	api(t, nodes[0].api(), "POST", "/api/groups", `{"name":"`+name+`","channel_type":"openai","test_model":"m","proxy_keys":"`+proxyKey+`","upstreams":[{"url":"`+upstream.URL+`","weight":1}]}`, &g)
	api(t, nodes[0].api(), "POST", "/api/keys/add-multiple", fmt.Sprintf(`{"group_id":%d,"keys_text":"sk-up-1\nsk-up-2"}`, g.ID), nil)
	for _, n := range nodes {
		eventstest.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
			if v := n.n.proj.View(); v != nil {
				if gv, ok := v.Group(g.ID); ok && gv.Pool().Len() == 2 {
					return nil
				}
			}
			return fmt.Errorf("%s has not the group's keys yet", n.name)
		})
	}
	return nodes, c, upstream.URL
}

// TestClusterRequestLogsOnceInPostgres loads three nodes that share one PostgreSQL
// database (a database of the test's own): every answered request has exactly one row,
// though all three nodes' projectors read the same durable consumer.
func TestClusterRequestLogsOnceInPostgres(t *testing.T) {
	t.Parallel()
	dsn := freshPostgres(t, "")
	nodes, _, _ := clusterWithGroup(t, "load", "sk-proxy-load", func(int) map[string]string {
		return map[string]string{"DATABASE_DSN": dsn}
	})

	const perClient, clients = 100, 12
	var answered atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 30 * time.Second}
	for i := range clients {
		port := nodes[i%len(nodes)].port
		wg.Go(func() {
			for range perClient {
				req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/proxy/load/v1/chat/completions", port),
					strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
				req.Header.Set("Authorization", "Bearer sk-proxy-load")
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					answered.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if answered.Load() != perClient*clients {
		t.Fatalf("%d of %d requests answered", answered.Load(), perClient*clients)
	}
	db, err := sqlstore.Open(t.Context(), dsn, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rows, ids int64
	eventstest.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if err := db.NewRaw("SELECT COUNT(*), COUNT(DISTINCT id) FROM request_logs").Scan(t.Context(), &rows, &ids); err != nil {
			return err
		}
		if rows < answered.Load() {
			return fmt.Errorf("%d rows for %d answered requests", rows, answered.Load())
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond) // a duplicate would arrive after the last original
	if err := db.NewRaw("SELECT COUNT(*), COUNT(DISTINCT id) FROM request_logs").Scan(t.Context(), &rows, &ids); err != nil {
		t.Fatal(err)
	}
	var written uint64
	var by []string
	for _, n := range nodes {
		w := n.n.sqllog.Stats().Written
		written += w
		by = append(by, fmt.Sprintf("%s %d", n.name, w))
	}
	t.Logf("%d requests over three nodes: %d rows, %d distinct; written by %s", answered.Load(), rows, ids, strings.Join(by, ", "))
	if rows != answered.Load() || ids != rows {
		t.Fatalf("%d answered requests have %d rows (%d distinct ids): want one row each", answered.Load(), rows, ids)
	}
}

// TestClusterSurvivesNATSServerLoss stops the NATS server that leads the event stream
// while clients load all three nodes with proxied requests and admin changes: the proxy
// keeps answering, admin changes resume after the stream elects a new leader, and every
// change that was acknowledged (200) is in force on every node.
func TestClusterSurvivesNATSServerLoss(t *testing.T) {
	t.Parallel()
	nodes, c, upstreamURL := clusterWithGroup(t, "survive", "sk-proxy-s", nil)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var proxied, proxyFailed atomic.Int64
	client := &http.Client{Timeout: 30 * time.Second}
	for i := range 6 {
		port := nodes[i%3].port
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/proxy/survive/v1/chat/completions", port),
					strings.NewReader(`{"model":"m","messages":[]}`))
				req.Header.Set("Authorization", "Bearer sk-proxy-s")
				resp, err := client.Do(req)
				if err != nil {
					proxyFailed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					proxied.Add(1)
				} else {
					proxyFailed.Add(1)
				}
			}
		})
	}
	var mu sync.Mutex
	var acked []string
	var adminFailed atomic.Int64
	for i := range 3 {
		n := nodes[i]
		wg.Go(func() {
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("g-%d-%d", i, j)
				code, _ := adminDo(t, n, "POST", "/api/groups", `{"name":"`+name+`","channel_type":"openai","test_model":"m","upstreams":[{"url":"`+upstreamURL+`","weight":1}]}`)
				if code == http.StatusOK {
					mu.Lock()
					acked = append(acked, name)
					mu.Unlock()
				} else {
					adminFailed.Add(1)
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
	time.Sleep(2 * time.Second)
	before, beforeFailed := proxied.Load(), proxyFailed.Load()
	victim := -1
	for i, s := range c.Servers {
		if s.JetStreamIsStreamLeader("$G", "GL_EVENTS") {
			victim = i
		}
	}
	if victim < 0 {
		t.Fatal("no server leads GL_EVENTS")
	}
	stopped := time.Now()
	c.Servers[victim].Shutdown()
	time.Sleep(6 * time.Second)
	mu.Lock()
	ackedAt := len(acked)
	mu.Unlock()
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("NATS server %d (leader of GL_EVENTS) stopped: proxied %d before, %d after; failed proxied requests %d before, %d after; admin changes acknowledged %d, refused %d",
		victim, before, proxied.Load()-before, beforeFailed, proxyFailed.Load()-beforeFailed, len(acked), adminFailed.Load())
	if proxied.Load()-before < 100 {
		t.Errorf("the proxy answered only %d requests after the NATS server stopped", proxied.Load()-before)
	}
	if len(acked) <= ackedAt {
		t.Errorf("no admin change acknowledged in the 2 s that followed the first %v after the loss", time.Since(stopped).Round(time.Second))
	}
	for _, n := range nodes {
		eventstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			v := n.n.proj.View()
			for _, name := range acked {
				if _, ok := v.GroupByName(name); !ok {
					return fmt.Errorf("%s lacks the acknowledged group %s", n.name, name)
				}
			}
			return nil
		})
	}
}
