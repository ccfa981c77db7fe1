package events_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"gpt-load/events"
	"gpt-load/events/embedded"
)

// TestOpenStoreTooSmall: a request-log bound the server's storage cannot reserve stops the
// start at once with an error naming REQLOG_MAX_BYTES, rather than retrying forever as if
// the cluster were not ready.
func TestOpenStoreTooSmall(t *testing.T) {
	t.Parallel()
	srv, err := embedded.Start(embedded.Config{Name: "small", DataDir: t.TempDir(), MaxStore: 8 << 20}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(context.Background()) })
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err = events.OpenStore(ctx, js, events.StoreConfig{ReqLogMaxBytes: 64 << 20}, zerolog.Nop())
	if err == nil || !strings.Contains(err.Error(), "REQLOG_MAX_BYTES") {
		t.Fatalf("OpenStore on a store too small: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("gave up after %v", d)
	}
	if _, err := events.OpenStore(ctx, js, events.StoreConfig{ReqLogMaxBytes: 2 << 20}, zerolog.Nop()); err != nil {
		t.Fatalf("a bound that fits: %v", err)
	}
}
