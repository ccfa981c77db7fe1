package gptload_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/uptrace/bun"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/events/eventstest"
	"gpt-load/projections"
	"gpt-load/projections/gptload"
	"gpt-load/projections/sqlstore/sqlstoretest"
)

const fixtureKey = "fixture-encryption-key-7Qm2Lx9Vp4"

// fixture copies a gpt-load 1.x fixture database (testdata/gpt-load-1x, made by gpt-load
// v1.4.9 itself) into the test's own directory and returns the copy's path.
func fixture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "gpt-load-1x", name))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// expected is the fixture's expected.json.
type expected struct {
	Settings map[string]string `json:"system_settings_changed_from_default"`
	Groups   []struct {
		ID                  uint64            `json:"id"`
		Name                string            `json:"name"`
		DisplayName         string            `json:"display_name"`
		Description         string            `json:"description"`
		GroupType           string            `json:"group_type"`
		ChannelType         string            `json:"channel_type"`
		Sort                int               `json:"sort"`
		TestModel           string            `json:"test_model"`
		ValidationEndpoint  string            `json:"validation_endpoint"`
		ProxyKeys           string            `json:"proxy_keys"`
		ModelRedirectStrict bool              `json:"model_redirect_strict"`
		Upstreams           []domain.Upstream `json:"upstreams"`
		Config              json.RawMessage   `json:"config"`
		HeaderRules         []struct {
			Key, Value, Action string
		} `json:"header_rules"`
		ModelRedirectRules map[string]string `json:"model_redirect_rules"`
		ParamOverrides     json.RawMessage   `json:"param_overrides"`
		SubGroups          []struct {
			ID     uint64 `json:"sub_group_id"`
			Weight int    `json:"weight"`
		} `json:"sub_groups"`
		Keys []struct {
			ID           uint64 `json:"id"`
			Value        string `json:"key_value"`
			Status       string `json:"status"`
			Notes        string `json:"notes"`
			FailureCount uint32 `json:"failure_count"`
		} `json:"keys"`
	} `json:"groups"`
	RequestLogs struct {
		Count int `json:"count"`
	} `json:"request_logs"`
	HourlyStats []json.RawMessage `json:"group_hourly_stats"`
}

func loadExpected(t testing.TB) expected {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "gpt-load-1x", "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var e expected
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	return e
}

// node is the core of a gpt-load node on a real JetStream server: store, projections,
// commands, and (when asked) a SQL store.
type node struct {
	store  *events.Store
	proj   *projections.Runner
	cmd    *events.Commands
	cipher *events.Cipher
	db     *bun.DB
}

func startNode(t testing.TB, encryptionKey string, db *bun.DB) *node {
	t.Helper()
	js := eventstest.RunServer(t, "").JetStream(t)
	c, err := events.NewCipher(encryptionKey)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := events.OpenStore(ctx, js, events.StoreConfig{Node: "test", Cipher: c}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	seed := domain.DefaultSettings()
	seed.ProxyKeys = "sk-node-admin"
	run := projections.New(st, events.NewSnapshots(t.TempDir(), c), projections.Config{Seed: seed}, zerolog.Nop())
	rctx, rcancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run.Run(rctx) }()
	t.Cleanup(func() { rcancel(); <-done })
	eventstest.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		if !run.CaughtUp() {
			return errors.New("projections not caught up")
		}
		return nil
	})
	n := &node{store: st, proj: run, cmd: events.NewCommands(st, run), cipher: c, db: db}
	if err := n.cmd.SeedSettings(ctx); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *node) target() gptload.Target {
	return gptload.Target{Commands: n.cmd, State: n.proj, Cipher: n.cipher, DB: n.db}
}

func (n *node) lastSeq(t testing.TB) uint64 {
	t.Helper()
	pos, err := n.store.Position(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return pos.LastSeq
}

// run opens dsn and imports it into n.
func run(t testing.TB, n *node, dsn string, o gptload.Options) (gptload.Summary, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	src, err := gptload.Open(ctx, dsn)
	if err != nil {
		return gptload.Summary{}, err
	}
	defer src.Close()
	im, err := gptload.Prepare(ctx, src, n.target(), o)
	if err != nil {
		return gptload.Summary{}, err
	}
	return im.Run(ctx, nil)
}

func mustRun(t testing.TB, n *node, dsn string, o gptload.Options) gptload.Summary {
	t.Helper()
	sum, err := run(t, n, dsn, o)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// checkAgainstExpected compares the node's state with every field of expected.json:
// settings changed from gpt-load's defaults, every group field, members and weights, and
// every key's id, value, status and notes.
func checkAgainstExpected(t *testing.T, n *node, e expected) {
	t.Helper()
	n.proj.Read(func(s *domain.State) {
		vals := s.Settings.Values()
		for k, want := range e.Settings {
			got := vals[k]
			if gs, ok := got.(string); ok && gs != want || !ok && strings.TrimSpace(jsonText(got)) != want {
				t.Errorf("setting %s = %v, want %s", k, got, want)
			}
		}
		if s.NumGroups() != len(e.Groups) {
			t.Errorf("%d groups, want %d", s.NumGroups(), len(e.Groups))
		}
		for _, eg := range e.Groups {
			g, ok := s.Group(eg.ID)
			if !ok {
				t.Errorf("group %d (%s) missing", eg.ID, eg.Name)
				continue
			}
			if g.Name != eg.Name || g.DisplayName != eg.DisplayName || g.Description != eg.Description ||
				string(g.Type) != eg.GroupType || string(g.ChannelType) != eg.ChannelType || g.Sort != eg.Sort ||
				g.TestModel != eg.TestModel || g.ValidationEndpoint != eg.ValidationEndpoint || g.ProxyKeys != eg.ProxyKeys ||
				g.ModelRedirectStrict != eg.ModelRedirectStrict {
				t.Errorf("group %d: %+v\nwant %+v", eg.ID, g, eg)
			}
			if !reflect.DeepEqual(append([]domain.Upstream{}, g.Upstreams...), append([]domain.Upstream{}, eg.Upstreams...)) {
				t.Errorf("group %s upstreams %v, want %v", eg.Name, g.Upstreams, eg.Upstreams)
			}
			if got, want := canon(t, jsonText(g.Config)), canon(t, string(eg.Config)); got != want && !(want == "null" && got == "{}") {
				t.Errorf("group %s config %s, want %s", eg.Name, got, want)
			}
			if got, want := canon(t, nullIfEmpty(g.ParamOverrides)), canon(t, string(eg.ParamOverrides)); got != want {
				t.Errorf("group %s param_overrides %s, want %s", eg.Name, got, want)
			}
			if len(g.HeaderRules) != len(eg.HeaderRules) {
				t.Errorf("group %s header rules %v, want %v", eg.Name, g.HeaderRules, eg.HeaderRules)
			} else {
				for i, h := range eg.HeaderRules {
					if g.HeaderRules[i].Key != h.Key || g.HeaderRules[i].Value != h.Value || g.HeaderRules[i].Action != h.Action {
						t.Errorf("group %s header rule %d %+v, want %+v", eg.Name, i, g.HeaderRules[i], h)
					}
				}
			}
			if len(g.ModelRedirectRules) != len(eg.ModelRedirectRules) || !reflect.DeepEqual(g.ModelRedirectRules, eg.ModelRedirectRules) && len(eg.ModelRedirectRules) > 0 {
				t.Errorf("group %s redirect rules %v, want %v", eg.Name, g.ModelRedirectRules, eg.ModelRedirectRules)
			}
			if len(g.SubGroups) != len(eg.SubGroups) {
				t.Errorf("group %s members %v, want %v", eg.Name, g.SubGroups, eg.SubGroups)
			}
			for i, sg := range eg.SubGroups {
				if i < len(g.SubGroups) && (g.SubGroups[i].GroupID != sg.ID || g.SubGroups[i].Weight != sg.Weight) {
					t.Errorf("group %s member %d = %+v, want %+v", eg.Name, i, g.SubGroups[i], sg)
				}
			}
			ks := s.Keys(eg.ID)
			if ks.Len() != len(eg.Keys) {
				t.Errorf("group %s has %d keys, want %d", eg.Name, ks.Len(), len(eg.Keys))
			}
			for _, ek := range eg.Keys {
				k, ok := s.Key(ek.ID)
				if !ok {
					t.Errorf("key %d (%s) missing", ek.ID, ek.Value)
					continue
				}
				if k.GroupID != eg.ID || k.Value != ek.Value || k.Status.String() != ek.Status || k.Notes != ek.Notes {
					t.Errorf("key %d: group %d %q %s %q, want group %d %q %s %q", ek.ID, k.GroupID, k.Value, k.Status, k.Notes,
						eg.ID, ek.Value, ek.Status, ek.Notes)
				}
				if k.Hash != n.cipher.Hash(ek.Value) {
					t.Errorf("key %d is not hashed under this node's key", ek.ID)
				}
				if k.CreatedAt == 0 || k.UpdatedAt < k.CreatedAt {
					t.Errorf("key %d times %d %d", ek.ID, k.CreatedAt, k.UpdatedAt)
				}
			}
		}
	})
}

func jsonText(v any) string { b, _ := json.Marshal(v); return string(b) }

func nullIfEmpty(b json.RawMessage) string {
	if len(b) == 0 {
		return "null"
	}
	return string(b)
}

// canon re-encodes JSON with sorted keys.
func canon(t testing.TB, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("canon %s: %v", s, err)
	}
	return jsonText(v)
}

// TestImportFixture imports each fixture (plain, and encrypted with its key) into a node
// with and without an ENCRYPTION_KEY of its own, compares everything with expected.json,
// checks that ids born afterwards go above the imported ones, and that a second run
// changes nothing and says so.
func TestImportFixture(t *testing.T) {
	t.Parallel()
	e := loadExpected(t)
	for _, tc := range []struct {
		name, file, theirKey, ourKey string
	}{
		{"plain into plain", "plain.db", "", ""},
		{"plain into sealed", "plain.db", "", "our-node-encryption-key-123456"},
		{"encrypted into plain", "encrypted.db", fixtureKey, ""},
		{"encrypted into other key", "encrypted.db", fixtureKey, "our-node-encryption-key-123456"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := startNode(t, tc.ourKey, nil)
			dsn := fixture(t, tc.file)
			sum := mustRun(t, n, dsn, gptload.Options{EncryptionKey: tc.theirKey})
			if sum.Keys.Active != 94 || sum.Keys.Invalid != 6 || sum.Keys.Renumbered != 0 || len(sum.Groups) != 6 {
				t.Fatalf("summary %+v", sum)
			}
			if len(sum.Settings) != len(e.Settings) {
				t.Errorf("settings changed %v, want those of %v", sum.Settings, e.Settings)
			}
			checkAgainstExpected(t, n, e)

			// Idempotent: a second run writes nothing and says so.
			seq := n.lastSeq(t)
			again := mustRun(t, n, dsn, gptload.Options{EncryptionKey: tc.theirKey})
			if !again.Empty() || n.lastSeq(t) != seq {
				t.Fatalf("second run: %+v, log %d → %d", again, seq, n.lastSeq(t))
			}
			var out bytes.Buffer
			again.Write(&out)
			if !strings.Contains(out.String(), "Nothing to import") || !strings.Contains(out.String(), "6 left alone") {
				t.Errorf("second run says:\n%s", out.String())
			}

			// Ids born afterwards go above the imported ones.
			ctx := context.Background()
			g, err := n.cmd.CreateGroup(ctx, "admin", domain.GroupInput{Name: ptr("after-import"), ChannelType: ptr("openai"),
				TestModel: ptr("m"), Upstreams: json.RawMessage(`[{"url":"https://up.example.com","weight":1}]`)})
			if err != nil {
				t.Fatal(err)
			}
			if g.ID != 7 {
				t.Errorf("first group after the import got id %d, want 7", g.ID)
			}
			if _, err := n.cmd.AddKeys(ctx, "admin", 1, []string{"sk-after-import"}, nil); err != nil {
				t.Fatal(err)
			}
			n.proj.Read(func(s *domain.State) {
				k, ok := s.Keys(1).ByHash(n.cipher.Hash("sk-after-import"))
				if !ok || k.ID != 101 {
					t.Errorf("first key after the import: %+v, %v; want id 101", k, ok)
				}
			})
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestImportChecksTheKeyFirst: a wrong, missing or needless encryption key is found on a
// sample before anything is written, and the message says which.
func TestImportChecksTheKeyFirst(t *testing.T) {
	t.Parallel()
	n := startNode(t, "", nil)
	seq := n.lastSeq(t)
	for _, tc := range []struct {
		file, key string
		want      error
		says      string
	}{
		{"encrypted.db", "not-the-key-it-ran-with", gptload.ErrKeyWrong, "not the ENCRYPTION_KEY gpt-load ran with"},
		{"encrypted.db", "", gptload.ErrKeyMissing, "are encrypted"},
		{"plain.db", fixtureKey, gptload.ErrKeyNotNeeded, "not encrypted"},
	} {
		_, err := run(t, n, fixture(t, tc.file), gptload.Options{EncryptionKey: tc.key})
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s with key %q: %v, want %v", tc.file, tc.key, err, tc.want)
		}
	}
	if got := n.lastSeq(t); got != seq {
		t.Errorf("the log moved from %d to %d", seq, got)
	}
}

// TestDryRunWritesNothing: a dry run reports what it would import and leaves the log and
// the SQL tables as they were.
func TestDryRunWritesNothing(t *testing.T) {
	t.Parallel()
	db := sqlstoretest.Migrated(t, sqlstoretest.DSN(t, "sqlite"))
	n := startNode(t, "", db)
	seq := n.lastSeq(t)
	sum := mustRun(t, n, fixture(t, "plain.db"), gptload.Options{DryRun: true, WithLogs: true})
	if !sum.DryRun || sum.Keys.Active != 94 || sum.Keys.Invalid != 6 || len(sum.Groups) != 6 || sum.Logs.RequestLogs != 16 || len(sum.Settings) != 7 {
		t.Fatalf("dry run summary %+v %+v", sum, sum.Logs)
	}
	if got := n.lastSeq(t); got != seq {
		t.Errorf("a dry run moved the log from %d to %d", seq, got)
	}
	for _, table := range []string{"request_logs", "group_hourly_stats", "key_usage"} {
		if c := sqlstoretest.Count(t, db, table); c != 0 {
			t.Errorf("a dry run wrote %d rows into %s", c, table)
		}
	}
	var out bytes.Buffer
	sum.Write(&out)
	if !strings.Contains(out.String(), "Dry run") || !strings.Contains(out.String(), "100 imported (94 active, 6 invalid)") {
		t.Errorf("dry run says:\n%s", out.String())
	}
}

// TestImportWithLogs brings request logs, hourly stats and key usage into SQL, with key
// values sealed under this node's key and hashes of this node, once.
func TestImportWithLogs(t *testing.T) {
	t.Parallel()
	e := loadExpected(t)
	db := sqlstoretest.Migrated(t, sqlstoretest.DSN(t, "sqlite"))
	n := startNode(t, "our-node-encryption-key-123456", db)
	dsn := fixture(t, "encrypted.db")
	sum := mustRun(t, n, dsn, gptload.Options{EncryptionKey: fixtureKey, WithLogs: true})
	if sum.Logs == nil || sum.Logs.RequestLogs != e.RequestLogs.Count || sum.Logs.HourlyStats != len(e.HourlyStats) || sum.Logs.KeyUsage == 0 {
		t.Fatalf("logs summary %+v", sum.Logs)
	}
	if c := sqlstoretest.Count(t, db, "request_logs"); c != int64(e.RequestLogs.Count) {
		t.Errorf("%d request logs, want %d", c, e.RequestLogs.Count)
	}
	// Every log's key opens with our key and hashes as ours.
	var rows []struct {
		KeyValue  string `bun:"key_value"`
		KeyHash   string `bun:"key_hash"`
		GroupName string `bun:"group_name"`
	}
	if err := db.NewSelect().Table("request_logs").Column("key_value", "key_hash", "group_name").Scan(context.Background(), &rows); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		v, err := n.cipher.Decrypt(r.KeyValue)
		if err != nil || !strings.HasPrefix(v, "sk-fixture-") || n.cipher.Hash(v).String() != r.KeyHash {
			t.Errorf("log of %s: key %q opens as %q (%v), hash %s", r.GroupName, r.KeyValue, v, err, r.KeyHash)
		}
	}
	// Hourly stats per group as gpt-load counted them.
	var stats []struct {
		GroupID uint64 `bun:"group_id"`
		S       int64  `bun:"success_count"`
		F       int64  `bun:"failure_count"`
	}
	if err := db.NewSelect().Table("group_hourly_stats").Column("group_id", "success_count", "failure_count").Scan(context.Background(), &stats); err != nil {
		t.Fatal(err)
	}
	got := map[uint64][2]int64{}
	for _, s := range stats {
		c := got[s.GroupID]
		got[s.GroupID] = [2]int64{c[0] + s.S, c[1] + s.F}
	}
	want := map[uint64][2]int64{1: {5, 2}, 2: {2, 0}, 3: {0, 1}, 4: {0, 1}, 6: {2, 0}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("hourly stats %v, want %v", got, want)
	}
	// Key usage under our ids and hashes.
	var usage []struct {
		KeyID uint64 `bun:"key_id"`
		Hash  string `bun:"key_hash"`
		N     int64  `bun:"request_count"`
	}
	if err := db.NewSelect().Table("key_usage").Column("key_id", "key_hash", "request_count").Scan(context.Background(), &usage); err != nil {
		t.Fatal(err)
	}
	n.proj.Read(func(s *domain.State) {
		for _, u := range usage {
			k, ok := s.Key(u.KeyID)
			if !ok || k.Hash.String() != u.Hash {
				t.Errorf("key usage row for key %d does not match the key", u.KeyID)
			}
		}
	})
	// Once: a second run writes nothing.
	again := mustRun(t, n, dsn, gptload.Options{EncryptionKey: fixtureKey, WithLogs: true})
	if !again.Empty() || again.Logs.Read != e.RequestLogs.Count {
		t.Errorf("second run: %+v %+v", again, again.Logs)
	}
	if c := sqlstoretest.Count(t, db, "request_logs"); c != int64(e.RequestLogs.Count) {
		t.Errorf("%d request logs after the second run", c)
	}
}

// TestOverwrite replaces a group that exists here: without --overwrite it is left alone,
// with it, it takes gpt-load's fields and keys.
func TestOverwrite(t *testing.T) {
	t.Parallel()
	n := startNode(t, "", nil)
	ctx := context.Background()
	mine, err := n.cmd.CreateGroup(ctx, "admin", domain.GroupInput{Name: ptr("gemini"), ChannelType: ptr("openai"),
		TestModel: ptr("mine"), Upstreams: json.RawMessage(`[{"url":"https://mine.example.com","weight":1}]`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.cmd.AddKeys(ctx, "admin", mine.ID, []string{"sk-mine-1", "sk-mine-2"}, nil); err != nil {
		t.Fatal(err)
	}
	dsn := fixture(t, "plain.db")
	sum := mustRun(t, n, dsn, gptload.Options{})
	var gem domain.ImportedGroupReport
	for _, g := range sum.Groups {
		if g.Name == "gemini" {
			gem = g
		}
	}
	if gem.Outcome != domain.ImportExists || gem.ID != mine.ID || sum.Keys.LeftAlone != 20 || sum.Keys.Imported() != 80 {
		t.Fatalf("without overwrite: %+v, keys %+v", gem, sum.Keys)
	}
	n.proj.Read(func(s *domain.State) {
		if g, _ := s.GroupByName("gemini"); g.TestModel != "mine" || s.Keys(g.ID).Len() != 2 {
			t.Errorf("the group here changed: %+v", g)
		}
	})
	sum = mustRun(t, n, dsn, gptload.Options{Overwrite: true})
	n.proj.Read(func(s *domain.State) {
		g, _ := s.GroupByName("gemini")
		if g.ID != 3 || g.TestModel != "gemini-2.5-flash" || s.Keys(g.ID).Len() != 20 {
			t.Errorf("after overwrite: %+v, %d keys", g, s.Keys(g.ID).Len())
		}
		if _, ok := s.Keys(g.ID).ByHash(n.cipher.Hash("sk-mine-1")); ok {
			t.Error("the replaced group's own keys are still there")
		}
		if k, ok := s.Key(45); !ok || k.Value != "sk-fixture-gemini-0005" || k.Notes != "free tier 备注 ✓" {
			t.Errorf("key 45: %+v", k)
		}
	})
}

// sortedKeys is for stable error messages.
func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var _ = io.Discard
var _ = sortedKeys
