package eventstest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Cluster is a JetStream cluster of in-process servers on loopback, for tests of what a
// replicated stream does differently (conflict code 10164, leader moves).
type Cluster struct {
	Servers []*server.Server
	URLs    []string
}

// RunCluster starts size servers (3 for a quorum; never 2) clustered over loopback routes,
// each with its store in a temporary directory, and waits for a JetStream meta leader.
func RunCluster(t testing.TB, size int) *Cluster {
	t.Helper()
	c := StartCluster(t, size)
	// A cluster without a meta leader answers JetStream requests with errors; wait for one.
	js := c.JetStream(t)
	CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err
	})
	return c
}

// StartCluster starts size servers like RunCluster but returns as soon as they accept
// client connections, before JetStream has elected a meta leader: the state of a cluster
// whose servers and clients are started at the same moment (docker compose up).
func StartCluster(t testing.TB, size int) *Cluster {
	t.Helper()
	// Draw every port first, holding the listeners until all are drawn, so no two collide.
	var ls []net.Listener
	port := func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		return l.Addr().(*net.TCPAddr).Port
	}
	clientPorts, routePorts := make([]int, size), make([]int, size)
	var routes []*url.URL
	for i := 0; i < size; i++ {
		clientPorts[i], routePorts[i] = port(), port()
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", routePorts[i])})
	}
	for _, l := range ls {
		l.Close()
	}
	c := &Cluster{}
	for i := 0; i < size; i++ {
		o := &server.Options{
			ServerName: fmt.Sprintf("node-%d", i), Host: "127.0.0.1", Port: clientPorts[i],
			JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
			Cluster: server.ClusterOpts{Name: "gl-test", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:  routes,
		}
		s, err := server.NewServer(o)
		if err != nil {
			t.Fatalf("cluster node %d: %v", i, err)
		}
		go s.Start()
		c.Servers = append(c.Servers, s)
		c.URLs = append(c.URLs, fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i]))
	}
	t.Cleanup(func() {
		for _, s := range c.Servers {
			s.Shutdown()
			s.WaitForShutdown()
		}
	})
	for i, s := range c.Servers {
		if !s.ReadyForConnections(30 * time.Second) {
			t.Fatalf("cluster node %d not ready", i)
		}
	}
	return c
}

// URL is the client URL listing every server, as NATS_URL would.
func (c *Cluster) URL() string { return strings.Join(c.URLs, ",") }

// JetStream connects to every node of the cluster (the client fails over among them).
func (c *Cluster) JetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	return jetStream(t)(nats.Connect(c.URL(), nats.MaxReconnects(-1)))
}
