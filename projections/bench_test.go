package projections_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"gpt-load/domain"
	"gpt-load/events"
)

// BenchmarkAdminCommand is the latency of one admin command, end to end: decide on the
// projected state, append with its guard, wait until the local projection shows it.
func BenchmarkAdminCommand(b *testing.B) {
	js, _ := embeddedJS(b)
	n := startNode(b, js, nodeOpts{})
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH", Subjects: []string{"gl.bench.>"}, Storage: jetstream.FileStorage}); err != nil {
		b.Fatal(err)
	}
	g, err := n.cmd.CreateGroup(ctx, events.ActorAdmin, standardGroup("bench"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := n.cmd.AddKeys(ctx, events.ActorAdmin, g.ID, []string{"sk-1"}, nil); err != nil {
		b.Fatal(err)
	}
	var keyID uint64
	n.proj.Read(func(s *domain.State) { s.Keys(g.ID).Each(func(k *domain.Key) bool { keyID = k.ID; return false }) })
	// The baseline: one synchronous JetStream publish of a small message, on the same
	// server, the floor under any command that must be durable before it returns.
	b.Run("baseline-publish", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := js.Publish(ctx, "gl.bench.baseline", []byte(`{"group_id":1,"key_id":1}`)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("update-group", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			sort := i
			if _, err := n.cmd.UpdateGroup(ctx, events.ActorAdmin, g.ID, domain.GroupInput{Sort: &sort}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("key-notes", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if err := n.cmd.SetKeyNotes(ctx, events.ActorAdmin, keyID, fmt.Sprint("note ", i)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("add-1000-keys", func(b *testing.B) {
		keys := make([]string, 1000)
		for i := 0; i < b.N; i++ {
			for j := range keys {
				keys[j] = fmt.Sprintf("sk-%d-%d", i, j)
			}
			if _, err := n.cmd.AddKeys(ctx, events.ActorAdmin, g.ID, keys, nil); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "keys/s")
	})
}

// BenchmarkAdminCommandParallel is the throughput of admin commands issued concurrently on
// different aggregates (the keys of different groups), as several admins or scripts would.
func BenchmarkAdminCommandParallel(b *testing.B) {
	js, _ := embeddedJS(b)
	n := startNode(b, js, nodeOpts{})
	ctx := context.Background()
	const groups = 16
	ids := make(chan uint64, groups)
	for i := 0; i < groups; i++ {
		g, err := n.cmd.CreateGroup(ctx, events.ActorAdmin, standardGroup(fmt.Sprint("p", i)))
		if err != nil {
			b.Fatal(err)
		}
		n.cmd.AddKeys(ctx, events.ActorAdmin, g.ID, []string{fmt.Sprint("sk-", i)}, nil)
		var keyID uint64
		n.proj.Read(func(s *domain.State) { s.Keys(g.ID).Each(func(k *domain.Key) bool { keyID = k.ID; return false }) })
		ids <- keyID
	}
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		keyID := <-ids
		i := 0
		for pb.Next() {
			i++
			if err := n.cmd.SetKeyNotes(ctx, events.ActorAdmin, keyID, fmt.Sprint("note ", i)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commands/s")
}

// BenchmarkReplay is the replay speed of small events (key-health facts): a fresh runner
// reads b.N events from the start of the log.
func BenchmarkReplay(b *testing.B) {
	js, _ := embeddedJS(b)
	n := startNode(b, js, nodeOpts{})
	ctx := context.Background()
	g, _ := n.cmd.CreateGroup(ctx, events.ActorAdmin, standardGroup("replay"))
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprint("sk-", i)
	}
	n.cmd.AddKeys(ctx, events.ActorAdmin, g.ID, keys, nil)
	first := n.proj.Applied()
	for i := 0; i < b.N; i++ {
		var f domain.Fact = domain.KeySucceeded{GroupID: g.ID, KeyID: first + uint64(i%1000)}
		if i%3 == 0 {
			f = domain.KeyFailed{GroupID: g.ID, KeyID: uint64(1 + i%1000), Kind: domain.FailureRateLimit, Status: 429, RetryUntil: time.Unix(0, 0)}
		}
		if _, err := n.store.Append(ctx, events.ActorProxy, 0, f); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	replayer := startNode(b, js, nodeOpts{})
	took := time.Since(start)
	b.StopTimer()
	if replayer.proj.Applied() < first+uint64(b.N) {
		b.Fatalf("replayed to %d, want %d", replayer.proj.Applied(), first+uint64(b.N))
	}
	b.ReportMetric(float64(b.N)/took.Seconds(), "events/s")
}
