package embedded

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// The store is forced to disk as often as the configuration says, not at nats-server's
// default of every two minutes.
func TestSyncIntervalReachesTheStore(t *testing.T) {
	for _, cfg := range []Config{
		{SyncInterval: 250 * time.Millisecond},
		{SyncInterval: time.Second, SyncAlways: true},
	} {
		cfg.Name, cfg.DataDir = "sync-test", t.TempDir()
		srv, err := Start(cfg, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		js := srv.srv.JetStreamConfig()
		srv.Close(context.Background())
		if js == nil || js.SyncInterval != cfg.SyncInterval || js.SyncAlways != cfg.SyncAlways {
			t.Fatalf("JetStream runs with %+v, want sync every %s (always: %v)", js, cfg.SyncInterval, cfg.SyncAlways)
		}
	}
}
