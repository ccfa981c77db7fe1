package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"gpt-load/events/eventstest"
)

// clusterNode is one of our nodes run inside the test process against a NATS cluster.
type clusterNode struct {
	name   string
	n      *node
	port   int
	cancel context.CancelFunc
	done   chan error // serve's result
	out    *syncBuffer
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
	t.Helper()
	cfg, err := LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, "")
	if err != nil {
		return nil, err
	}
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
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("%s stopped with %v", c.name, err)
		}
	}
}

// startCluster starts count nodes at the same moment, as docker compose up does, and
// fails the test if any of them does not start.
func startCluster(t *testing.T, url string, count int, extra func(i int) map[string]string) []*clusterNode {
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
			nodes[i], errs[i] = startClusterNode(t, envs[i])
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
// the cluster, create or find the streams and consumers, and serve.
func TestClusterNodesStartAtOnce(t *testing.T) {
	t.Parallel()
	c := eventstest.StartCluster(t, 3)
	start := time.Now()
	nodes := startCluster(t, c.URL(), 3, nil)
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
}

func found[T any](_ T, ok bool) bool { return ok }
