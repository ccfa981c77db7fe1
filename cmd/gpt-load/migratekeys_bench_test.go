package main

import (
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"gpt-load/events"
)

// BenchmarkMigrateKeys measures gpt-load migrate-keys --from K1 --to K2 on a data
// directory of 1,000,000 keys in 100 groups (BENCH_KEYS for another count), sealed with
// K1. Beside it, as a baseline of the same run on the same machine, it times one fold of
// the log with K1 (what a node without a snapshot does at start): the migration reads
// the log once like that, then writes and reads back the re-sealed state.
//
//	go test -run '^$' -bench MigrateKeys -benchtime 1x ./cmd/gpt-load
func BenchmarkMigrateKeys(b *testing.B) {
	const groups = 100
	dir, _, total := benchSetup(b)
	data := filepath.Join(dir, "data")
	prep := time.Now()
	fillDataDirWith(b, data, groups, total/groups, map[string]string{"ENCRYPTION_KEY": rkKey1})
	b.Logf("prepared %d keys sealed with K1 in %v", total, time.Since(prep).Round(time.Millisecond))
	cfg, err := LoadConfig(lookupMap(withNode(map[string]string{"DATA_DIR": data, "AUTH_KEY": benchAdminKey})), "")
	if err != nil {
		b.Fatal(err)
	}
	from, to := rkKey1, rkKey2
	for i := 0; i < b.N; i++ {
		var fold time.Duration
		openLog(b, data, from, func(_ jetstream.JetStream, store *events.Store) {
			start := time.Now()
			if _, _, err := store.Fold(context.Background(), seedSettings(cfg)); err != nil {
				b.Fatal(err)
			}
			fold = time.Since(start)
		})
		start := time.Now()
		if err := runMigrateKeys(context.Background(), cfg, from, to, io.Discard, io.Discard, nil); err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		b.ReportMetric(took.Seconds(), "s-to-rotate")
		b.ReportMetric(float64(total)/took.Seconds(), "keys/s")
		b.ReportMetric(fold.Seconds(), "s-fold-baseline")
		b.ReportMetric(took.Seconds()/fold.Seconds(), "rotate/fold")
		from, to = to, from
	}
}
