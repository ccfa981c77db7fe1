package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"gpt-load/events"
	"gpt-load/events/embedded"
	"gpt-load/events/eventstest"
)

// openLog opens the event log of dataDir (no node running) with key, and hands it to f.
func openLog(t testing.TB, dataDir, key string, f func(js jetstream.JetStream, store *events.Store)) {
	t.Helper()
	srv, err := embedded.Start(embedded.Config{Name: "node-1", DataDir: dataDir}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := events.OpenStore(ctx, js, events.StoreConfig{Node: "node-1", Cipher: mustCipher(t, key)}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	f(js, store)
}

// stateBytes is the state the log of dataDir folds to when read with key, encoded with the
// key hashes of hashKey and the log position left out: two logs give the same bytes when
// they hold the same groups, keys (ids, statuses, failure counts, cooldowns), settings and
// id counters.
func stateBytes(t *testing.T, dataDir, key, hashKey string) []byte {
	t.Helper()
	var out bytes.Buffer
	openLog(t, dataDir, key, func(_ jetstream.JetStream, store *events.Store) {
		st, _, err := store.Fold(context.Background(), seedSettings(Config{}))
		if err != nil {
			t.Fatalf("fold the log with key %q: %v", key, err)
		}
		if err := st.Rekey(mustCipher(t, hashKey).Hash); err != nil {
			t.Fatal(err)
		}
		st.Seq = 0
		if err := st.Encode(&out); err != nil {
			t.Fatal(err)
		}
	})
	return out.Bytes()
}

// populate makes a DATA_DIR through the binary with key: a group with a proxy key and a
// header rule, keys that serve, fail (blacklisted) and cool down, and request logs.
func populate(t *testing.T, dir, key string) {
	t.Helper()
	upstream := rekeyUpstream(t)
	env := []string{"PORT=" + strconv.Itoa(freePort(t)), "HOST=127.0.0.1", "ENCRYPTION_KEY=" + key}
	n := startRekeyNode(t, dir, env)
	gid := n.seedGroup(t, upstream.URL)
	for range 8 {
		if code := n.proxy(t); code != 200 {
			t.Fatalf("proxied call: %d", code)
		}
	}
	n.waitCounted(t, gid, 8)
	n.stop(t, 20*time.Second)
}

// TestMigrateKeysResumesAfterAnyStep stops a migration after each of its steps in turn
// (as a crash or an interrupt would) and checks that the node refuses to start on the
// half-migrated data, that a rerun with the same flags finishes, and that the state comes
// out the same, ids, failure counts and cooldowns included. A migration given the wrong
// --from changes nothing.
func TestMigrateKeysResumesAfterAnyStep(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	populate(t, dir, rkKey1)
	cfg, err := LoadConfig(lookupMap(withNode(map[string]string{"DATA_DIR": dataDir})), "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	want := stateBytes(t, dataDir, rkKey1, rkKey1)

	// The wrong --from: refused before anything changes.
	var out, errOut strings.Builder
	err = runMigrateKeys(ctx, cfg, rkKey2, "another-key-entirely-0000", &out, &errOut, nil)
	if err == nil || !strings.Contains(err.Error(), "nothing was changed") || !strings.Contains(err.Error(), mustCipher(t, rkKey1).KeyID()) {
		t.Fatalf("migration with the wrong --from: %v", err)
	}
	if got := stateBytes(t, dataDir, rkKey1, rkKey1); !bytes.Equal(got, want) {
		t.Fatal("a refused migration changed the log")
	}

	from, to := rkKey1, rkKey2
	steps := []migrateStep{stepVerified, stepStaged, stepRetired, stepCopied, stepReqLog, stepSQL, stepAdminKey}
	for _, stop := range steps {
		errStop := errors.New("stopped at " + string(stop))
		err := runMigrateKeys(ctx, cfg, from, to, io.Discard, io.Discard, func(s migrateStep) error {
			if s == stop {
				return errStop
			}
			return nil
		})
		if !errors.Is(err, errStop) {
			t.Fatalf("migration meant to stop at %s: %v", stop, err)
		}
		openLog(t, dataDir, to, func(js jetstream.JetStream, store *events.Store) {
			err := checkDataKey(ctx, js, store)
			if stop == stepVerified {
				// Nothing changed: the new key does not open the old data.
				if err == nil || !strings.Contains(err.Error(), "migrate-keys") {
					t.Errorf("after stopping at %s the new key was accepted: %v", stop, err)
				}
				return
			}
			if !errors.Is(err, errKeyMigrationPending) {
				t.Errorf("after stopping at %s a node would start: %v", stop, err)
			}
		})
		out.Reset()
		if err := runMigrateKeys(ctx, cfg, from, to, &out, io.Discard, nil); err != nil {
			t.Fatalf("rerun after stopping at %s: %v", stop, err)
		}
		if stop != stepVerified && !strings.Contains(out.String(), "resuming") {
			t.Errorf("the rerun after %s did not resume:\n%s", stop, out.String())
		}
		openLog(t, dataDir, to, func(js jetstream.JetStream, store *events.Store) {
			if err := checkDataKey(ctx, js, store); err != nil {
				t.Errorf("after the rerun past %s the node refuses the new key: %v", stop, err)
			}
		})
		if got := stateBytes(t, dataDir, to, rkKey1); !bytes.Equal(got, want) {
			t.Fatalf("the state changed across a migration stopped at %s and resumed", stop)
		}
		from, to = to, from
	}
	// The request logs in SQL still open, every one, with the key now in force.
	if _, err := readAdminKey(dataDir, mustCipher(t, from), mustCipher(t, from)); err != nil {
		t.Fatalf("admin key file: %v", err)
	}
	vals := sealedSQLValues(t, dataDir)
	if len(vals) == 0 {
		t.Fatal("no sealed request log in SQL")
	}
	c := mustCipher(t, from)
	for _, v := range vals {
		if _, err := c.Decrypt(v); err != nil {
			t.Fatalf("request log value does not open with the key in force: %v", err)
		}
	}
}

// An upload a crash left in the spool is removed when the node starts again; nothing else
// of DATA_DIR is touched.
func TestCleanSpool(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	spool := filepath.Join(dataDir, spoolDirName)
	if err := os.MkdirAll(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	left := filepath.Join(spool, "gpt-load-import-123.db")
	other := filepath.Join(dataDir, "gpt-load-import-keep.db")
	for _, f := range []string{left, left + "-wal", other} {
		if err := os.WriteFile(f, []byte("sk-left-behind"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := cleanSpool(dataDir)
	if err != nil || got != spool {
		t.Fatalf("cleanSpool = %q, %v", got, err)
	}
	for _, f := range []string{left, left + "-wal"} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s survived the start: %v", f, err)
		}
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("a file outside the spool was removed: %v", err)
	}
}

// On a three-node cluster (external NATS, streams with three replicas), migrate-keys run
// with a node's own configuration re-seals the shared log: every node, restarted with the
// new key, shows the same state, and the old key is refused.
func TestMigrateKeysOnACluster(t *testing.T) {
	t.Parallel()
	nodes, _, _ := clusterWithGroup(t, "rkc", rkProxy, func(int) map[string]string {
		return map[string]string{"ENCRYPTION_KEY": rkKey1}
	})
	api(t, nodes[0].api(), "PUT", "/api/keys/1/notes", `{"notes":"kept across the rotation"}`, nil)
	// The group's last validation is left out: a node that becomes the leader at its start
	// validates a group that never was, an event of its own after the rotation.
	picture := func(c *clusterNode) string {
		lines := strings.Split((&rekeyNode{proc: c.api(), admin: e2eAdminKey}).picture(t), "\n")
		return strings.Join(slices.DeleteFunc(lines, func(l string) bool { return strings.Contains(l, `"last_validated_at"`) }), "\n")
	}
	eventstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if picture(nodes[2]) != picture(nodes[0]) {
			return errors.New("the nodes disagree")
		}
		return nil
	})
	before := picture(nodes[0])
	// Run from another machine while the nodes serve: refused, naming the running leader.
	elsewhere := nodes[0].n.cfg
	elsewhere.DataDir = t.TempDir()
	if err := runMigrateKeys(context.Background(), elsewhere, rkKey1, rkKey2, io.Discard, io.Discard, nil); err == nil ||
		!strings.Contains(err.Error(), "is running") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("migrate-keys while the cluster runs: %v", err)
	}
	cfgs := make([]Config, len(nodes))
	for i, c := range nodes {
		cfgs[i] = c.n.cfg
		c.stop(t)
	}
	var out strings.Builder
	if err := runMigrateKeys(context.Background(), cfgs[0], rkKey1, rkKey2, &out, io.Discard, nil); err != nil {
		t.Fatalf("migrate-keys: %v\n%s", err, out.String())
	}
	old := cfgs[1]
	old.EncryptionKey = rkKey1
	if _, err := startClusterNodeWith(t, old); err == nil || !strings.Contains(err.Error(), "migrate-keys") {
		t.Fatalf("a node with the old key: %v", err)
	}
	for i, cfg := range cfgs {
		cfg.EncryptionKey = rkKey2
		c, err := startClusterNodeWith(t, cfg)
		if err != nil {
			t.Fatalf("node %d with the new key: %v", i+1, err)
		}
		waitHealthy(t, 60*time.Second, c)
		if after := picture(c); after != before {
			t.Fatalf("node %d after the rotation: %s", i+1, lineDiff(before, after))
		}
	}
}

// The command line of migrate-keys follows gpt-load's: no flags print the usage and exit
// 0; the same key on both sides, an empty key or a stray argument exit 2 and change
// nothing; help lists the command.
func TestMigrateKeysCommandLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		code int
		says string
	}{
		{nil, 0, "Usage: gpt-load migrate-keys"},
		{[]string{"--help"}, 0, "Usage: gpt-load migrate-keys"},
		{[]string{"--from", "same-key-on-both-sides", "--to", "same-key-on-both-sides"}, 2, "the same key"},
		{[]string{"--to", ""}, 2, "--to is empty"},
		{[]string{"--from", ""}, 2, "--from is empty"},
		{[]string{"--to", "k", "stray"}, 2, "nothing may follow"},
		{[]string{"--bogus"}, 2, "flag provided but not defined"},
	} {
		code, out := runSubcommand(t, dir, nil, append([]string{"migrate-keys"}, c.args...)...)
		if code != c.code || !strings.Contains(out, c.says) {
			t.Errorf("migrate-keys %q: exit %d, %q; want exit %d saying %q", c.args, code, out, c.code, c.says)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
		t.Errorf("a refused command line touched DATA_DIR: %v", err)
	}
	if code, out := runSubcommand(t, dir, nil, "help"); code != 0 || !strings.Contains(out, "migrate-keys [--from OLD] [--to NEW]") {
		t.Errorf("help: %d %s", code, out)
	}
}
