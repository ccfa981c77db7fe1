package projections_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/events/eventstest"
)

func TestReadYourWrites(t *testing.T) {
	t.Parallel()
	js, _ := embeddedJS(t)
	n := startNode(t, js, nodeOpts{})
	ctx := context.Background()

	g, err := n.cmd.CreateGroup(ctx, events.ActorAdmin, standardGroup("openai"))
	if err != nil {
		t.Fatal(err)
	}
	if g.ID != 1 || g.Name != "openai" || g.CreatedAt.IsZero() {
		t.Fatalf("created group %+v", g)
	}
	// Visible at once, to consistent readers and to the lock-free view.
	gv, ok := n.proj.View().GroupByName("openai")
	if !ok || gv.ID != g.ID || gv.Effective.MaxRetries != domain.DefaultSettings().MaxRetries {
		t.Fatalf("view after create: %+v, %v", gv, ok)
	}
	rep, err := n.cmd.AddKeys(ctx, events.ActorAdmin, g.ID, []string{"sk-a", "sk-b", "sk-a", "sk-c"}, nil)
	if err != nil || rep.Added != 3 || rep.Ignored != 1 {
		t.Fatalf("AddKeys = %+v, %v", rep, err)
	}
	gv, _ = n.proj.View().GroupByName("openai")
	if n := len(gv.Pool().SelectableIDs()); n != 3 {
		t.Fatalf("pool has %d keys right after AddKeys, want 3", n)
	}
	seen := map[string]int{}
	for i := 0; i < 30; i++ {
		k, ok := gv.Pick(time.Now().UnixNano())
		if !ok {
			t.Fatal("no key picked")
		}
		seen[k.Value]++
	}
	if len(seen) != 3 || seen["sk-a"] != 10 {
		t.Fatalf("round robin picked %v, want each key 10 times", seen)
	}

	// A settings change is in force for the very next read.
	if err := n.cmd.UpdateSettings(ctx, events.ActorAdmin, map[string]json.RawMessage{"max_retries": json.RawMessage("7")}); err != nil {
		t.Fatal(err)
	}
	gv, _ = n.proj.View().GroupByName("openai")
	if gv.Effective.MaxRetries != 7 {
		t.Fatalf("effective max_retries = %d after the settings change, want 7", gv.Effective.MaxRetries)
	}

	// Health facts take effect for the next pick: three auth failures blacklist sk-a.
	var idA uint64
	n.proj.Read(func(s *domain.State) {
		k, _ := s.Keys(g.ID).ByHash(n.store.Cipher().Hash("sk-a"))
		idA = k.ID
	})
	for i := 0; i < 3; i++ {
		if err := n.cmd.RecordHealth(ctx, events.ActorProxy, domain.KeyFailed{GroupID: g.ID, KeyID: idA, Kind: domain.FailureAuth, Status: 401}); err != nil {
			t.Fatal(err)
		}
	}
	gv, _ = n.proj.View().GroupByName("openai")
	for i := 0; i < 10; i++ {
		if k, _ := gv.Pick(time.Now().UnixNano()); k.ID == idA {
			t.Fatal("a blacklisted key was picked")
		}
	}
	// A rate limit rests a key until its Retry-After, and it comes back by itself.
	var idB uint64
	n.proj.Read(func(s *domain.State) {
		k, _ := s.Keys(g.ID).ByHash(n.store.Cipher().Hash("sk-b"))
		idB = k.ID
	})
	until := time.Now().Add(time.Hour)
	if err := n.cmd.RecordHealth(ctx, events.ActorProxy, domain.KeyFailed{GroupID: g.ID, KeyID: idB, Kind: domain.FailureRateLimit, Status: 429, RetryUntil: until}); err != nil {
		t.Fatal(err)
	}
	gv, _ = n.proj.View().GroupByName("openai")
	for i := 0; i < 10; i++ {
		if k, _ := gv.Pick(time.Now().UnixNano()); k.ID == idB {
			t.Fatal("a cooling key was picked")
		}
	}
	if k, _ := gv.Pick(until.Add(time.Second).UnixNano()); k.Value == "" {
		t.Fatal("no key after the cooldown ended")
	}
}

func TestConcurrentCreateSameNameOnTwoNodes(t *testing.T) {
	t.Parallel()
	js, _ := embeddedJS(t)
	testConcurrentCreate(t, startNode(t, js, nodeOpts{}), startNode(t, js, nodeOpts{}))
}

// TestConcurrentCreateOnReplicatedStreams races two nodes on a 3-node cluster with
// 3-replica streams: there, concurrent guarded appends are refused with 10164 while the
// other proposal is in flight, and 10071 otherwise; both must read as a conflict.
func TestConcurrentCreateOnReplicatedStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	t.Parallel()
	c := eventstest.RunCluster(t, 3)
	a := startNode(t, c.JetStream(t), nodeOpts{replicas: 3})
	b := startNode(t, c.JetStream(t), nodeOpts{replicas: 3})
	testConcurrentCreate(t, a, b)
}

func testConcurrentCreate(t *testing.T, a, b *testNode) {
	ctx := context.Background()
	const names = 20
	var wg sync.WaitGroup
	errs := make([][2]error, names)
	for i := 0; i < names; i++ {
		for j, n := range []*testNode{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i][j] = n.cmd.CreateGroup(ctx, events.ActorAdmin, standardGroup(fmt.Sprintf("g-%d", i)))
			}()
		}
	}
	wg.Wait()
	for i, e := range errs {
		won := 0
		for _, err := range e {
			switch domain.ErrorCode(err) {
			case "":
				won++
			case domain.EDUPLICATE:
			default:
				t.Errorf("name %d: unexpected error %v", i, err)
			}
		}
		if won != 1 {
			t.Errorf("name g-%d created %d times (errors %v), want exactly once", i, won, e)
		}
	}
	// Both nodes converge on the same state, with distinct ids.
	eventstest.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if string(a.encoded(t)) != string(b.encoded(t)) {
			return fmt.Errorf("nodes differ")
		}
		return nil
	})
	ids := map[uint64]bool{}
	a.proj.Read(func(s *domain.State) {
		for _, g := range s.Groups() {
			ids[g.ID] = true
		}
	})
	if len(ids) != names {
		t.Fatalf("%d distinct group ids, want %d", len(ids), names)
	}
}

func TestRestartKeepsState(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	snaps := dir + "/snapshots"
	srv := eventstest.RunServer(t, dir)
	n := startNode(t, srv.JetStream(t), nodeOpts{snapDir: snaps})
	ctx := context.Background()
	g, err := n.cmd.CreateGroup(ctx, events.ActorAdmin, standardGroup("keep"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.cmd.AddKeys(ctx, events.ActorAdmin, g.ID, []string{"k1", "k2", "k3"}, nil); err != nil {
		t.Fatal(err)
	}
	before := n.encoded(t)
	n.stop(t)
	if _, err := os.Stat(snaps + "/state.snap"); err != nil {
		t.Fatalf("no snapshot after a clean stop: %v", err)
	}
	ctxc, cancel := context.WithTimeout(ctx, 10*time.Second)
	srv.Close(ctxc)
	cancel()

	// The same data directory, a new server: from the snapshot, then without it.
	srv2 := eventstest.RunServer(t, dir)
	js2 := srv2.JetStream(t)
	n2 := startNode(t, js2, nodeOpts{snapDir: snaps})
	if after := n2.encoded(t); string(after) != string(before) {
		t.Fatal("state after restart from snapshot differs")
	}
	n2.stop(t)
	n3 := startNode(t, js2, nodeOpts{}) // empty snapshot dir: full replay
	if after := n3.encoded(t); string(after) != string(before) {
		t.Fatal("state after full replay differs")
	}
	if _, ok := n3.groupByName("keep"); !ok {
		t.Fatal("group lost")
	}
}

// TestSnapshotOfAnotherStreamIsIgnored pairs a snapshot with a stream that is at least as
// long as the snapshot says, so that only the stream identity can tell them apart.
func TestSnapshotOfAnotherStreamIsIgnored(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	snaps := t.TempDir()
	js1, _ := embeddedJS(t)
	n1 := startNode(t, js1, nodeOpts{snapDir: snaps})
	if _, err := n1.cmd.CreateGroup(ctx, events.ActorAdmin, standardGroup("old")); err != nil {
		t.Fatal(err)
	}
	n1.stop(t)
	var snapSeq uint64
	if _, err := events.NewSnapshots(snaps, nil).Load(func(info events.SnapshotInfo, body io.Reader) error {
		snapSeq = info.Seq
		_, err := io.Copy(io.Discard, body)
		return err
	}); err != nil {
		t.Fatalf("no snapshot of the first stream: %v", err)
	}

	// A new stream (say, a wiped NATS store filled again) that has grown past the
	// snapshot's sequence: only the identity check keeps the old state out.
	js2, _ := embeddedJS(t)
	n0 := startNode(t, js2, nodeOpts{})
	for i := 0; ; i++ {
		pos, err := n0.store.Position(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if pos.LastSeq > snapSeq {
			break
		}
		if _, err := n0.cmd.CreateGroup(ctx, events.ActorAdmin, standardGroup(fmt.Sprintf("new-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	n0.stop(t)
	n2 := startNode(t, js2, nodeOpts{snapDir: snaps})
	if _, ok := n2.groupByName("old"); ok {
		t.Fatal("state of another stream was loaded from its snapshot")
	}
	if _, err := os.Stat(snaps + "/state.snap"); !os.IsNotExist(err) {
		t.Fatalf("the snapshot of another stream was kept: %v", err)
	}
	if _, ok := n2.groupByName("new-0"); !ok {
		t.Fatal("the stream's own group is missing")
	}
}

// A snapshot sealed with a key that is no longer ENCRYPTION_KEY is a cache the node cannot
// open: it is deleted and the state rebuilt from the log.
func TestSnapshotOfRetiredKeyIsDiscarded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	snaps := t.TempDir()
	js, _ := embeddedJS(t)
	retired, err := events.NewCipher("the-retired-encryption-key")
	if err != nil {
		t.Fatal(err)
	}
	now, err := events.NewCipher("the-encryption-key-now")
	if err != nil {
		t.Fatal(err)
	}
	n1 := startNode(t, js, nodeOpts{snapDir: snaps, cipher: now})
	if _, err := n1.cmd.CreateGroup(ctx, events.ActorAdmin, standardGroup("kept")); err != nil {
		t.Fatal(err)
	}
	before := n1.encoded(t)
	n1.stop(t)
	// The snapshot of this very log, as a node still running with the retired key wrote it.
	info, err := events.NewSnapshots(snaps, now).Load(func(_ events.SnapshotInfo, body io.Reader) error {
		_, err := io.Copy(io.Discard, body)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := events.NewSnapshots(snaps, retired).Save(info, func(w io.Writer) error {
		_, err := w.Write([]byte("state sealed with the retired key"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	n2 := startNode(t, js, nodeOpts{snapDir: snaps, cipher: now})
	if _, err := os.Stat(snaps + "/state.snap"); !os.IsNotExist(err) {
		t.Fatalf("the snapshot sealed with the retired key was kept: %v", err)
	}
	if after := n2.encoded(t); string(after) != string(before) {
		t.Fatal("the state rebuilt from the log differs")
	}
}

func TestSeedSettingsOnce(t *testing.T) {
	t.Parallel()
	js, _ := embeddedJS(t)
	seed := domain.DefaultSettings()
	seed.ProxyKeys, seed.AppURL = "from-auth-key", "http://localhost:3001"
	n := startNode(t, js, nodeOpts{seed: &seed})
	ctx := context.Background()
	if err := n.cmd.SeedSettings(ctx); err != nil {
		t.Fatal(err)
	}
	// A later start with another AUTH_KEY does not change what the log says.
	seed2 := seed
	seed2.ProxyKeys = "another-auth-key"
	n2 := startNode(t, js, nodeOpts{seed: &seed2})
	if err := n2.cmd.SeedSettings(ctx); err != nil {
		t.Fatal(err)
	}
	n2.proj.Read(func(s *domain.State) {
		if s.Settings.ProxyKeys != "from-auth-key" || !s.SettingsSeeded {
			t.Errorf("proxy_keys = %q after a second seed, want the first", s.Settings.ProxyKeys)
		}
	})
}
