package tasks_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"gpt-load/events/eventstest"
	"gpt-load/httpapi/tasks"
)

// TestKVSlotAcrossNodes runs the slot of two nodes on one 3-server cluster: a task begun
// on one is seen and refused on the other, two nodes beginning at once get one slot, a
// running task stays running while its node renews it, and the task of a node that
// stopped renewing is shown failed once its lease has run out, freeing the slot.
func TestKVSlotAcrossNodes(t *testing.T) {
	t.Parallel()
	c := eventstest.RunCluster(t, 3)
	const lease = time.Second
	open := func(node string) *tasks.KV {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		kv, err := tasks.OpenKV(ctx, c.JetStream(t), tasks.KVConfig{Node: node, Replicas: 3, Lease: lease}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(kv.Close)
		return kv
	}
	a, b := open("a"), open("b")
	ctx := context.Background()
	running := func(id string) tasks.Status {
		return tasks.Status{ID: id, TaskType: tasks.KeyImport, IsRunning: true, Total: 10, GroupName: "g", StartedAt: time.Now()}
	}

	// Begun on a, seen and refused on b, finished on a, then free for b.
	t1 := running("t1")
	if err := a.Begin(ctx, t1); err != nil {
		t.Fatal(err)
	}
	// b's read may be served by a replica that has not applied a's write yet.
	seen := func(what string, ok func(tasks.Status) bool) {
		t.Helper()
		eventstest.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
			st, err := b.Current(ctx)
			if err != nil || !ok(st) {
				return fmt.Errorf("b sees %s as %+v (%v)", what, st, err)
			}
			return nil
		})
	}
	seen("a's task", func(st tasks.Status) bool { return st.IsRunning && st.ID == "t1" && st.Total == 10 })
	if err := b.Begin(ctx, running("t2")); !errors.Is(err, tasks.ErrBusy) {
		t.Fatalf("b began while a runs: %v", err)
	}
	if err := b.Update(ctx, running("t1")); !errors.Is(err, tasks.ErrNotOwner) {
		t.Fatalf("b updated a's task: %v", err)
	}
	// a renews its running task: after three lease times it still runs.
	time.Sleep(3 * lease)
	if st, _ := b.Current(ctx); !st.IsRunning {
		t.Fatalf("a's renewed task shown as %+v", st)
	}
	t1.Processed = 10
	end := time.Now()
	t1.IsRunning, t1.FinishedAt = false, &end
	if err := a.Update(ctx, t1); err != nil {
		t.Fatal(err)
	}
	seen("the finished task", func(st tasks.Status) bool {
		return !st.IsRunning && st.ID == "t1" && st.Processed == 10 && st.Error == ""
	})

	// Two nodes beginning at once: exactly one gets the slot, each time.
	for round := range 5 {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		ids := make([]string, 2)
		for i, s := range []*tasks.KV{a, b} {
			ids[i] = fmt.Sprintf("race-%d-%d", round, i)
			wg.Go(func() { errs[i] = s.Begin(ctx, running(ids[i])) })
		}
		wg.Wait()
		won := -1
		for i, err := range errs {
			switch {
			case err == nil && won < 0:
				won = i
			case err == nil:
				t.Fatalf("round %d: both nodes began a task", round)
			case !errors.Is(err, tasks.ErrBusy):
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if won < 0 {
			t.Fatalf("round %d: neither node began", round)
		}
		st := running(ids[won])
		now := time.Now()
		st.IsRunning, st.FinishedAt = false, &now
		if err := []*tasks.KV{a, b}[won].Update(ctx, st); err != nil {
			t.Fatal(err)
		}
	}

	// b's node dies with a task running: a shows it failed once the lease has run out,
	// and may begin the next.
	if err := b.Begin(ctx, running("orphan")); err != nil {
		t.Fatal(err)
	}
	b.Close()
	died := time.Now()
	eventstest.CheckFor(t, 3*lease, 20*time.Millisecond, func() error {
		st, err := a.Current(ctx)
		if err != nil {
			return err
		}
		if st.IsRunning {
			return errors.New("the dead node's task still runs")
		}
		if st.ID != "orphan" || !strings.Contains(st.Error, "node b stopped") || st.FinishedAt == nil {
			return fmt.Errorf("the dead node's task is shown as %+v", st)
		}
		return nil
	})
	t.Logf("task of a dead node shown failed %v after its last renewal stopped (lease %v)", time.Since(died).Round(time.Millisecond), lease)
	if err := a.Begin(ctx, running("next")); err != nil {
		t.Fatalf("slot not free after the dead node's task failed: %v", err)
	}
}
