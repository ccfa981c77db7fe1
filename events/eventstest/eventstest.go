// Package eventstest starts real NATS servers for tests, like net/http/httptest does for
// HTTP: an embedded JetStream server in a temporary directory, or the external server named
// by TEST_NATS_URL. For _test.go files only.
package eventstest

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"gpt-load/events"
	"gpt-load/events/embedded"
)

// Server is an embedded server for one test.
type Server struct {
	*embedded.Server
	Dir string
}

// RunServer starts an embedded JetStream server with its store in dir (a new temporary
// directory when dir is ""). It is shut down when the test ends.
func RunServer(t testing.TB, dir string) *Server {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	srv, err := embedded.Start(embedded.Config{Name: "test", DataDir: dir}, zerolog.Nop())
	if err != nil {
		t.Fatalf("start embedded NATS: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Close(ctx)
	})
	return &Server{Server: srv, Dir: dir}
}

// JetStream connects in-process and returns a JetStream context; the connection closes
// when the test ends.
func (s *Server) JetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	return jetStream(t)(s.Connect())
}

// jetStream returns a function that turns a connection attempt into a JetStream context
// whose connection closes when the test ends.
func jetStream(t testing.TB) func(*nats.Conn, error) jetstream.JetStream {
	return func(nc *nats.Conn, err error) jetstream.JetStream {
		t.Helper()
		if err != nil {
			t.Fatalf("connect to NATS: %v", err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
}

// External connects to the NATS server whose URL is in the environment variable env
// (TEST_NATS_URL) and removes the service's streams there, so the test starts from an empty
// log; it skips the test when the variable is unset. The server must be one dedicated to
// tests.
func External(t testing.TB, env string) jetstream.JetStream {
	t.Helper()
	url := os.Getenv(env)
	if url == "" {
		t.Skipf("%s is not set: skipping the test against an external NATS server", env)
	}
	js := jetStream(t)(nats.Connect(url, nats.Timeout(5*time.Second)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, name := range []string{events.EventsStream, events.ReqLogStream} {
		if err := js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Fatalf("delete stream %s on %s: %v", name, env, err)
		}
	}
	return js
}

// CheckFor calls f until it returns nil or total has passed, sleeping between calls; then
// it fails the test with f's last error.
func CheckFor(t testing.TB, total, sleep time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(sleep)
	}
	t.Fatalf("condition not met within %v: %v", total, err)
}
