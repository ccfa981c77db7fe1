package projections_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"gpt-load/events"
	"gpt-load/events/eventstest"
	"gpt-load/projections"
)

// A burst of added keys is packed once it has been quiet, without changing the state or
// what the pools serve; changes below the burst size are left alone.
func TestBurstIsPackedOnceQuiet(t *testing.T) {
	t.Parallel()
	js, snaps := embeddedJS(t)
	n := startNode(t, js, nodeOpts{snapDir: snaps, snapshot: projections.Config{
		BurstSize: 300, SettleAfter: 50 * time.Millisecond, SettleAgain: 50 * time.Millisecond,
	}})
	ctx := context.Background()
	g, err := n.cmd.CreateGroup(ctx, events.ActorAdmin, standardGroup("burst"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.cmd.AddKeys(ctx, events.ActorAdmin, g.ID, keyValues("small", 10), nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // four settle delays: nothing may happen
	if s := n.proj.Settles(); s != 0 {
		t.Fatalf("%d settles after 10 keys, want none below the burst size", s)
	}
	for i := range 5 {
		if _, err := n.cmd.AddKeys(ctx, events.ActorAdmin, g.ID, keyValues(fmt.Sprint("b", i), 100), nil); err != nil {
			t.Fatal(err)
		}
	}
	before := n.encoded(t)
	eventstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if s := n.proj.Settles(); s != 1 {
			return fmt.Errorf("%d settles, want 1", s)
		}
		return nil
	})
	if after := n.encoded(t); string(after) != string(before) {
		t.Fatal("packing changed the state")
	}
	grp, _ := n.proj.View().Group(g.ID)
	seen := map[uint64]bool{}
	for range 2000 {
		k, ok := grp.Pick(time.Now().UnixNano())
		if !ok {
			t.Fatal("no key after packing")
		}
		seen[k.ID] = true
	}
	if len(seen) != 510 {
		t.Fatalf("the pool serves %d keys after packing, want 510", len(seen))
	}
}

func keyValues(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("sk-%s-%04d", prefix, i)
	}
	return out
}
