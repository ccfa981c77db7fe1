package projections_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/projections"
)

// randomCommands runs n random admin commands and health facts on node, the way a busy
// admin and a proxy would, including ones the domain refuses. It calls between after
// each step.
func randomCommands(t *testing.T, rng *rand.Rand, node func() *testNode, n int, between func(i int)) {
	t.Helper()
	ctx := context.Background()
	names := []string{"a", "b", "c", "d", "e"}
	keyPool := make([]string, 60)
	for i := range keyPool {
		keyPool[i] = fmt.Sprintf("sk-%03d", i)
	}
	pickKeys := func() []string {
		out := make([]string, 1+rng.IntN(12))
		for i := range out {
			out[i] = keyPool[rng.IntN(len(keyPool))]
		}
		return out
	}
	// snapshotOf lists group ids and some key ids of the current state.
	ids := func(nd *testNode) (groups []uint64, keys [][2]uint64) {
		nd.proj.Read(func(s *domain.State) {
			for _, g := range s.Groups() {
				groups = append(groups, g.ID)
				if ks := s.Keys(g.ID); ks != nil {
					ks.Each(func(k *domain.Key) bool {
						keys = append(keys, [2]uint64{g.ID, k.ID})
						return len(keys) < 200
					})
				}
			}
		})
		return groups, keys
	}
	for i := 0; i < n; i++ {
		nd := node()
		groups, keys := ids(nd)
		anyGroup := func() uint64 {
			if len(groups) == 0 {
				return 99
			}
			return groups[rng.IntN(len(groups))]
		}
		var err error
		switch op := rng.IntN(16); {
		case op < 2:
			in := standardGroup(names[rng.IntN(len(names))])
			if rng.IntN(4) == 0 {
				in = domain.GroupInput{Name: in.Name, ChannelType: str("openai"), GroupType: str("aggregate")}
			}
			_, err = nd.cmd.CreateGroup(ctx, events.ActorAdmin, in)
		case op == 2:
			cfg := json.RawMessage(fmt.Sprintf(`{"blacklist_threshold":%d}`, rng.IntN(4)))
			sort := rng.IntN(5)
			_, err = nd.cmd.UpdateGroup(ctx, events.ActorAdmin, anyGroup(), domain.GroupInput{Config: cfg, Sort: &sort})
		case op == 3 && rng.IntN(3) == 0:
			err = nd.cmd.DeleteGroup(ctx, events.ActorAdmin, anyGroup())
		case op <= 6:
			_, err = nd.cmd.AddKeys(ctx, events.ActorAdmin, anyGroup(), pickKeys(), nil)
		case op == 7:
			_, err = nd.cmd.RemoveKeys(ctx, events.ActorAdmin, anyGroup(), pickKeys(), nil)
		case op == 8:
			_, err = nd.cmd.RestoreKeys(ctx, events.ActorAdmin, anyGroup(), pickKeys())
		case op == 9:
			scope := []domain.KeyScope{domain.ScopeAll, domain.ScopeInvalid}[rng.IntN(2)]
			if scope == domain.ScopeAll && rng.IntN(3) != 0 {
				scope = domain.ScopeInvalid
			}
			_, err = nd.cmd.ClearKeys(ctx, events.ActorAdmin, anyGroup(), scope)
		case op == 10:
			err = nd.cmd.UpdateSettings(ctx, events.ActorAdmin, map[string]json.RawMessage{
				"blacklist_threshold": json.RawMessage(fmt.Sprint(rng.IntN(4))),
			})
		case op == 11:
			err = nd.cmd.AddSubGroups(ctx, events.ActorAdmin, anyGroup(), []domain.SubGroup{{GroupID: anyGroup(), Weight: rng.IntN(10)}})
		case op == 12 && len(keys) > 0:
			k := keys[rng.IntN(len(keys))]
			if rng.IntN(2) == 0 {
				err = nd.cmd.SetKeyNotes(ctx, events.ActorAdmin, k[1], fmt.Sprintf("note %d", i))
			} else {
				_, err = nd.cmd.SetKeysDisabled(ctx, events.ActorAdmin, k[0], []uint64{k[1]}, rng.IntN(3) != 0)
			}
		case len(keys) > 0:
			k := keys[rng.IntN(len(keys))]
			var f domain.Fact
			switch rng.IntN(5) {
			case 0, 1:
				f = domain.KeyFailed{GroupID: k[0], KeyID: k[1], Kind: domain.FailureAuth, Status: 401, Message: "bad key"}
			case 2:
				f = domain.KeyFailed{GroupID: k[0], KeyID: k[1], Kind: domain.FailureRateLimit, Status: 429,
					RetryUntil: time.Date(2026, 1, 1, 0, 0, rng.IntN(60), 0, time.UTC)}
			case 3:
				f = domain.KeySucceeded{GroupID: k[0], KeyID: k[1]}
			default:
				f = domain.KeyValidated{GroupID: k[0], KeyID: k[1], Valid: rng.IntN(2) == 0}
			}
			err = nd.cmd.RecordHealth(ctx, events.ActorProxy, f)
		}
		switch domain.ErrorCode(err) {
		case "", domain.EINVALID, domain.ENOTFOUND, domain.EDUPLICATE:
		default:
			t.Fatalf("step %d: %v", i, err)
		}
		between(i)
	}
}

// TestSnapshotPlusTailEqualsFullReplay is a property test: for random command sequences,
// a node restarted from a snapshot taken at a random point, replaying only the tail, ends
// in exactly the state of a node that replays the whole log, and of the node that lived
// through it all (restarted on the way from its own snapshots).
func TestSnapshotPlusTailEqualsFullReplay(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, seed*7919))
			js, _ := embeddedJS(t)
			live := nodeOpts{snapDir: t.TempDir(), snapshot: projections.Config{SnapshotEvery: 5, SnapshotInterval: time.Nanosecond}}
			a := startNode(t, js, live)
			saved := filepath.Join(t.TempDir(), "saved")
			cutAt := 30 + rng.IntN(100)
			randomCommands(t, rng, func() *testNode { return a }, 200, func(i int) {
				switch {
				case i == cutAt:
					// Keep the snapshot as it is now; the log goes on past it.
					copyFile(t, filepath.Join(live.snapDir, "state.snap"), filepath.Join(saved, "state.snap"))
				case rng.IntN(25) == 0:
					a.stop(t)
					a = startNode(t, js, live)
				}
			})
			want := a.encoded(t)
			checkPools(t, a)
			info, err := events.NewSnapshots(saved, nil).Load(func(events.SnapshotInfo, io.Reader) error { return nil })
			if err != nil && info.Seq == 0 {
				t.Fatalf("saved snapshot: %v", err)
			}
			if applied := a.proj.Applied(); info.Seq == 0 || info.Seq >= applied || applied < 60 {
				t.Fatalf("saved snapshot covers %d of %d events: the tail would prove nothing", info.Seq, applied)
			}
			full := startNode(t, js, nodeOpts{})
			if got := full.encoded(t); string(got) != string(want) {
				t.Fatal("full replay differs from the live state")
			}
			tail := startNode(t, js, nodeOpts{snapDir: saved})
			if got := tail.encoded(t); string(got) != string(want) {
				t.Fatal("snapshot + tail differs from the live state")
			}
			checkPools(t, full)
			checkPools(t, tail)
		})
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatalf("copy snapshot: %v", err)
	}
	defer src.Close()
	os.MkdirAll(filepath.Dir(to), 0o700)
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
}

// checkPools checks that every group's lock-free pool holds exactly the group's active
// keys, in id order, however it got there (appends, in-place flips, rebuilds).
func checkPools(t *testing.T, n *testNode) {
	t.Helper()
	v := n.proj.View()
	n.proj.Read(func(s *domain.State) {
		for _, g := range s.Groups() {
			gv, ok := v.Group(g.ID)
			if !ok {
				t.Fatalf("group %d missing from the view", g.ID)
			}
			var want []uint64
			if ks := s.Keys(g.ID); ks != nil {
				ks.Each(func(k *domain.Key) bool {
					if k.Selectable() {
						want = append(want, k.ID)
					}
					return true
				})
			}
			got := gv.Pool().SelectableIDs()
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("group %d: pool holds %v, active keys are %v", g.ID, got, want)
			}
		}
	})
}
