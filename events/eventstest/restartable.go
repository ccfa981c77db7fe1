package eventstest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"gpt-load/events/embedded"
)

// Restartable is a JetStream server in this process on a fixed loopback port and store
// directory, standing in for an external NATS server that a test stops and starts again
// where it was.
type Restartable struct {
	t    testing.TB
	dir  string
	addr string
	srv  *embedded.Server
}

// StartRestartable starts a Restartable on a free port; it stops when the test ends.
func StartRestartable(t testing.TB) *Restartable {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &Restartable{t: t, dir: t.TempDir(), addr: ln.Addr().String()}
	ln.Close()
	n.Start()
	t.Cleanup(n.Stop)
	return n
}

// URL is the server's client URL, the same across restarts.
func (n *Restartable) URL() string { return "nats://" + n.addr }

// Start starts the server again on its port and store.
func (n *Restartable) Start() {
	n.t.Helper()
	srv, err := embedded.Start(embedded.Config{Name: "restartable", DataDir: n.dir, Listen: n.addr}, zerolog.Nop())
	if err != nil {
		n.t.Fatal(err)
	}
	n.srv = srv
}

// Stop stops the server; its store stays for the next Start.
func (n *Restartable) Stop() {
	if n.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n.srv.Close(ctx)
	n.srv = nil
}
