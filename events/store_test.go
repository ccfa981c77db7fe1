package events_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/events/eventstest"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func openStore(t *testing.T, js jetstream.JetStream, cfg events.StoreConfig) *events.Store {
	t.Helper()
	if cfg.Node == "" {
		cfg.Node = "n1"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := events.OpenStore(ctx, js, cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// follow reads every event currently in the log.
func follow(t *testing.T, st *events.Store, after uint64) []events.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pos, err := st.Position(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []events.Event
	if pos.LastSeq <= after {
		return nil
	}
	errDone := errors.New("done")
	err = st.Follow(ctx, after, func(ev events.Event, pending uint64) error {
		out = append(out, ev)
		if pending == 0 {
			return errDone
		}
		return nil
	})
	if !errors.Is(err, errDone) {
		t.Fatalf("follow: %v", err)
	}
	return out
}

func group(id uint64, name string) domain.Group {
	return domain.Group{ID: id, Name: name, Type: domain.GroupStandard, ChannelType: domain.ChannelOpenAI,
		Upstreams: []domain.Upstream{{URL: "https://up.example", Weight: 1}}, TestModel: "m",
		ModelRedirectRules: map[string]string{}, HeaderRules: []domain.HeaderRule{}}
}

func TestAppendFollowEnvelope(t *testing.T) {
	t.Parallel()
	js := eventstest.RunServer(t, "").JetStream(t)
	st := openStore(t, js, events.StoreConfig{Node: "node-a", Now: func() time.Time { return t0 }})
	ctx := context.Background()

	seq1, err := st.Append(ctx, events.ActorAdmin, 0, domain.GroupCreated{Group: group(1, "g1")})
	if err != nil {
		t.Fatal(err)
	}
	hash := events.NewCipherMust(t, "").Hash("sk-1")
	seq2, err := st.Append(ctx, events.ActorAdmin, 0, domain.KeysAdded{GroupID: 1, Keys: []domain.NewKey{{Value: "sk-1", Hash: hash}}})
	if err != nil {
		t.Fatal(err)
	}
	seq3, err := st.Append(ctx, events.ActorProxy, 0, domain.KeyFailed{GroupID: 1, KeyID: 1, Kind: domain.FailureAuth, Status: 401})
	if err != nil {
		t.Fatal(err)
	}
	if seq1 != 1 || seq2 != 2 || seq3 != 3 {
		t.Fatalf("sequences %d %d %d, want 1 2 3", seq1, seq2, seq3)
	}
	evs := follow(t, st, 0)
	if len(evs) != 3 {
		t.Fatalf("got %d events, want 3", len(evs))
	}
	want := []struct{ typ, subject, actor string }{
		{"group.created", "gl.groups.group_created", "admin"},
		{"keys.added", "gl.keys.1.keys_added", "admin"},
		{"key.failed", "gl.health.1.key_failed", "proxy"},
	}
	for i, w := range want {
		ev := evs[i]
		if ev.Type != w.typ || ev.Subject != w.subject || ev.Meta.Actor != w.actor || ev.Meta.Node != "node-a" ||
			ev.Schema != 1 || ev.ID == "" || !ev.Meta.Time.Equal(t0) || ev.Meta.Seq != uint64(i+1) {
			t.Errorf("event %d = %+v, want type %s subject %s actor %s", i, ev, w.typ, w.subject, w.actor)
		}
	}
	if kf := evs[2].Fact.(domain.KeyFailed); kf.Kind != domain.FailureAuth || kf.Status != 401 {
		t.Errorf("decoded fact %+v", kf)
	}
	if ka := evs[1].Fact.(domain.KeysAdded); ka.Keys[0].Value != "sk-1" || ka.Keys[0].Hash != hash {
		t.Errorf("decoded keys %+v", ka)
	}
	// Following from the middle starts after the given sequence.
	if tail := follow(t, st, 2); len(tail) != 1 || tail[0].Meta.Seq != 3 {
		t.Errorf("follow after 2 = %+v", tail)
	}
}

func TestAppendConflict(t *testing.T) {
	t.Parallel()
	js := eventstest.RunServer(t, "").JetStream(t)
	testConflict(t, openStore(t, js, events.StoreConfig{}))
}

// testConflict checks optimistic concurrency per aggregate; it runs on every server kind.
func testConflict(t *testing.T, st *events.Store) {
	ctx := context.Background()
	seq, err := st.Append(ctx, events.ActorAdmin, 0, domain.GroupCreated{Group: group(1, "g1")})
	if err != nil {
		t.Fatal(err)
	}
	// A second writer that decided on the empty log loses.
	if _, err := st.Append(ctx, events.ActorAdmin, 0, domain.GroupCreated{Group: group(1, "other")}); !errors.Is(err, events.ErrConflict) {
		t.Fatalf("stale append: err = %v, want ErrConflict", err)
	}
	// The writer that saw the latest version wins.
	if _, err := st.Append(ctx, events.ActorAdmin, seq, domain.GroupCreated{Group: group(2, "g2")}); err != nil {
		t.Fatalf("append at the current version: %v", err)
	}
	// Aggregates are independent: keys of group 1 have no events yet.
	kseq, err := st.Append(ctx, events.ActorAdmin, 0, domain.KeysRemoved{GroupID: 1, KeyIDs: []uint64{1}})
	if err != nil {
		t.Fatalf("first keys event: %v", err)
	}
	if _, err := st.Append(ctx, events.ActorAdmin, 0, domain.KeysRemoved{GroupID: 1, KeyIDs: []uint64{2}}); !errors.Is(err, events.ErrConflict) {
		t.Fatalf("stale keys append: %v, want ErrConflict", err)
	}
	if _, err := st.Append(ctx, events.ActorAdmin, 0, domain.KeysRemoved{GroupID: 2, KeyIDs: []uint64{2}}); err != nil {
		t.Fatalf("other group's keys: %v", err)
	}
	// Health facts are never guarded.
	for i := 0; i < 2; i++ {
		if _, err := st.Append(ctx, events.ActorProxy, 0, domain.KeySucceeded{GroupID: 1, KeyID: 1}); err != nil {
			t.Fatalf("health fact %d: %v", i, err)
		}
	}
	got, err := st.LastSeq(ctx, domain.Aggregate{Kind: domain.AggKeys, GroupID: 1})
	if err != nil || got != kseq {
		t.Fatalf("LastSeq(keys of 1) = %d, %v; want %d", got, err, kseq)
	}
	if got, err := st.LastSeq(ctx, domain.Aggregate{Kind: domain.AggSettings}); err != nil || got != 0 {
		t.Fatalf("LastSeq(settings) = %d, %v; want 0", got, err)
	}
}

func TestAppendDeduplicatesRetriedPublish(t *testing.T) {
	t.Parallel()
	js := eventstest.RunServer(t, "").JetStream(t)
	var n atomic.Int64
	st := openStore(t, js, events.StoreConfig{NewID: func() string {
		// The first two appends reuse one id, as a publish retried after a lost ack would.
		if n.Add(1) <= 2 {
			return "same-id"
		}
		return "id-" + time.Now().String()
	}})
	ctx := context.Background()
	s1, err := st.Append(ctx, events.ActorProxy, 0, domain.KeySucceeded{GroupID: 1, KeyID: 1})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := st.Append(ctx, events.ActorProxy, 0, domain.KeySucceeded{GroupID: 1, KeyID: 1})
	if err != nil {
		t.Fatal(err)
	}
	if s1 != s2 {
		t.Fatalf("duplicate publish got sequence %d, first %d: not deduplicated", s2, s1)
	}
	s3, err := st.Append(ctx, events.ActorProxy, 0, domain.KeySucceeded{GroupID: 1, KeyID: 1})
	if err != nil || s3 != s1+1 {
		t.Fatalf("next append: seq %d err %v", s3, err)
	}
	if evs := follow(t, st, 0); len(evs) != 2 {
		t.Fatalf("log holds %d events, want 2", len(evs))
	}
}

func TestOpenStoreIsIdempotent(t *testing.T) {
	t.Parallel()
	js := eventstest.RunServer(t, "").JetStream(t)
	st := openStore(t, js, events.StoreConfig{})
	if _, err := st.Append(context.Background(), events.ActorAdmin, 0, domain.GroupCreated{Group: group(1, "g1")}); err != nil {
		t.Fatal(err)
	}
	st2 := openStore(t, js, events.StoreConfig{ReqLogMaxAge: time.Hour})
	if evs := follow(t, st2, 0); len(evs) != 1 {
		t.Fatalf("after reopening: %d events, want 1", len(evs))
	}
	info, err := js.Stream(context.Background(), events.ReqLogStream)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.CachedInfo().Config.MaxAge; got != time.Hour {
		t.Fatalf("request-log MaxAge = %v, want the updated 1h", got)
	}
	cfg, _ := js.Stream(context.Background(), events.EventsStream)
	c := cfg.CachedInfo().Config
	if !c.DenyDelete || !c.DenyPurge || c.MaxAge != 0 || c.Storage != jetstream.FileStorage {
		t.Fatalf("events stream config %+v: must keep everything on file", c)
	}
}

func TestEncryptedKeyValues(t *testing.T) {
	t.Parallel()
	srv := eventstest.RunServer(t, "")
	js := srv.JetStream(t)
	c := events.NewCipherMust(t, "a-long-and-proper-encryption-key")
	st := openStore(t, js, events.StoreConfig{Cipher: c})
	ctx := context.Background()
	const secret = "sk-very-secret-upstream-key-0001"
	if _, err := st.Append(ctx, events.ActorAdmin, 0, domain.KeysAdded{GroupID: 1, Keys: []domain.NewKey{{Value: secret, Hash: c.Hash(secret)}}}); err != nil {
		t.Fatal(err)
	}
	raw, err := js.Stream(ctx, events.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := raw.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(msg.Data, []byte(secret)) || bytes.Contains(msg.Data, []byte("sk-very")) {
		t.Fatalf("the stored event holds the key in clear: %s", msg.Data)
	}
	evs := follow(t, st, 0)
	if got := evs[0].Fact.(domain.KeysAdded).Keys[0].Value; got != secret {
		t.Fatalf("decrypted value %q", got)
	}
	// A node with another key, or none, must refuse to read rather than project garbage.
	for name, other := range map[string]*events.Cipher{
		"other key": events.NewCipherMust(t, "another-encryption-key-entirely"),
		"no key":    events.NewCipherMust(t, ""),
	} {
		st2 := openStore(t, js, events.StoreConfig{Cipher: other})
		ctx2, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := st2.Follow(ctx2, 0, func(events.Event, uint64) error { return nil })
		cancel()
		if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "ENCRYPTION_KEY") {
			t.Errorf("%s: follow error = %v, want a decryption error naming ENCRYPTION_KEY", name, err)
		}
	}
}

func TestFollowStopsOnUnknownEvent(t *testing.T) {
	t.Parallel()
	js := eventstest.RunServer(t, "").JetStream(t)
	st := openStore(t, js, events.StoreConfig{})
	ctx := context.Background()
	msg := jetstreamMsg("gl.groups.group_renamed_in_future", "group.renamed_in_future")
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := st.Follow(ctx2, 0, func(events.Event, uint64) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "unknown type") {
		t.Fatalf("follow = %v, want an unknown-type error", err)
	}
}

func TestRead(t *testing.T) {
	t.Parallel()
	js := eventstest.RunServer(t, "").JetStream(t)
	st := openStore(t, js, events.StoreConfig{})
	ctx := context.Background()
	for i := 1; i <= 5; i++ {
		if _, err := st.Append(ctx, events.ActorProxy, 0, domain.KeySucceeded{GroupID: 1, KeyID: uint64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := st.Read(ctx, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 || evs[0].Meta.Seq != 2 || evs[2].Meta.Seq != 4 || evs[2].Fact.(domain.KeySucceeded).KeyID != 4 {
		t.Fatalf("Read(2, 3) = %+v", evs)
	}
}

// TestExternalNATS runs the conflict suite against a separately running server
// (TEST_NATS_URL), reached over TCP as a cluster node reaches its servers.
func TestExternalNATS(t *testing.T) {
	js := eventstest.External(t, "TEST_NATS_URL")
	st := openStore(t, js, events.StoreConfig{})
	testConflict(t, st)
	if evs := follow(t, st, 0); len(evs) != 6 {
		t.Fatalf("external log holds %d events, want 6", len(evs))
	}
}

func jetstreamMsg(subject, typ string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Header.Set("Gl-Type", typ)
	m.Header.Set("Gl-Schema", "1")
	m.Header.Set("Gl-Time", t0.Format(time.RFC3339Nano))
	m.Data = []byte(`{}`)
	return m
}

// TestRefusesOldServer checks that a server too old to enforce subject-filter expectations
// (TEST_NATS_LEGACY_URL, e.g. a distribution's 2.9 package) is refused with a clear error,
// instead of silently losing optimistic concurrency.
func TestRefusesOldServer(t *testing.T) {
	js := eventstest.External(t, "TEST_NATS_LEGACY_URL")
	v := js.Conn().ConnectedServerVersion()
	_, err := events.OpenStore(context.Background(), js, events.StoreConfig{Node: "n1"}, zerolog.Nop())
	old := strings.HasPrefix(v, "2.9.") || strings.HasPrefix(v, "2.10.")
	if old && (err == nil || !strings.Contains(err.Error(), "too old")) {
		t.Fatalf("server %s: OpenStore error = %v, want a too-old refusal", v, err)
	}
	if !old && err != nil {
		t.Fatalf("server %s: OpenStore: %v", v, err)
	}
}

// TestConflictOnReplicatedStreams runs the conflict suite on a 3-node cluster with
// 3-replica streams, where the server reports a conflict as 10164 rather than 10071.
func TestConflictOnReplicatedStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	t.Parallel()
	c := eventstest.RunCluster(t, 3)
	js := c.JetStream(t)
	var st *events.Store
	eventstest.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		st, err = events.OpenStore(ctx, js, events.StoreConfig{Node: "n1", Replicas: 3}, zerolog.Nop())
		return err
	})
	testConflict(t, st)
}

func TestPublishAsyncHealthFacts(t *testing.T) {
	t.Parallel()
	js := eventstest.RunServer(t, "").JetStream(t)
	st := openStore(t, js, events.StoreConfig{})
	for i := 0; i < 500; i++ {
		if err := st.Publish(events.ActorProxy, domain.KeySucceeded{GroupID: 1, KeyID: uint64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := st.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	evs := follow(t, st, 0)
	if len(evs) != 500 || evs[499].Fact.(domain.KeySucceeded).KeyID != 499 {
		t.Fatalf("%d events after Publish+Flush, want 500 in order", len(evs))
	}
	// Guarded facts cannot be published blind.
	if err := st.Publish(events.ActorAdmin, domain.GroupDeleted{GroupID: 1}); err == nil {
		t.Fatal("a guarded fact was published without its guard")
	}
}

// TestEncryptedSecrets checks that every secret field of settings and group events rests
// sealed in the log, reads back whole, and that events recorded in clear (before
// ENCRYPTION_KEY was set) are still read as they were.
func TestEncryptedSecrets(t *testing.T) {
	t.Parallel()
	js := eventstest.RunServer(t, "").JetStream(t)
	ctx := context.Background()
	// Recorded in clear first, by a node without ENCRYPTION_KEY.
	plain := openStore(t, js, events.StoreConfig{})
	clearGroup := group(9, "before")
	clearGroup.ProxyKeys = "sk-recorded-in-clear"
	if _, err := plain.Append(ctx, events.ActorAdmin, 0, domain.GroupCreated{Group: clearGroup}); err != nil {
		t.Fatal(err)
	}

	c := events.NewCipherMust(t, "a-long-and-proper-encryption-key")
	st := openStore(t, js, events.StoreConfig{Cipher: c})
	secrets := []string{"sk-global-proxy-1", "sk-global-proxy-2", "global-proxy-pass", "sk-group-proxy-key",
		"Bearer tok-header-secret", "up-user-pass", "group-proxy-pass"}
	settings := domain.DefaultSettings()
	settings.ProxyKeys = "sk-global-proxy-1,sk-global-proxy-2"
	settings.ProxyURL = "http://u:global-proxy-pass@proxy.example:8080"
	g := group(10, "sealed")
	g.ProxyKeys = "sk-group-proxy-key"
	g.HeaderRules = []domain.HeaderRule{{Key: "Authorization", Value: "Bearer tok-header-secret", Action: "set"}, {Key: "X-Drop", Action: "remove"}}
	g.Upstreams = []domain.Upstream{{URL: "https://user:up-user-pass@up.example/v1", Weight: 1}}
	g.Config.ProxyURL = new("socks5://u:group-proxy-pass@socks.example:1080")
	facts := []domain.Fact{
		domain.SettingsChanged{Settings: settings, Changed: []string{"proxy_keys", "proxy_url"}},
		domain.GroupCreated{Group: g},
		domain.GroupUpdated{Group: g, Changed: []string{"proxy_keys", "header_rules"}},
	}
	before, _ := json.Marshal(facts)
	for _, f := range facts {
		last, err := st.LastSeq(ctx, domain.AggregateOf(f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Append(ctx, events.ActorAdmin, last, f); err != nil {
			t.Fatal(err)
		}
	}
	if after, _ := json.Marshal(facts); !bytes.Equal(before, after) {
		t.Fatal("appending changed the caller's facts")
	}
	raw, err := js.Stream(ctx, events.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(2); seq <= 4; seq++ {
		msg, err := raw.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets {
			if bytes.Contains(msg.Data, []byte(s)) {
				t.Errorf("event %d holds %q in clear: %s", seq, s, msg.Data)
			}
		}
		if seq > 2 && !bytes.Contains(msg.Data, []byte(`"sealed"`)) {
			t.Errorf("event %d: the group name should stay readable: %s", seq, msg.Data)
		}
	}
	evs := follow(t, st, 0)
	if len(evs) != 4 {
		t.Fatalf("%d events, want 4", len(evs))
	}
	if got := evs[0].Fact.(domain.GroupCreated).Group.ProxyKeys; got != "sk-recorded-in-clear" {
		t.Errorf("event recorded in clear reads proxy_keys %q", got)
	}
	want, _ := json.Marshal(facts)
	got, _ := json.Marshal([]domain.Fact{evs[1].Fact, evs[2].Fact, evs[3].Fact})
	if !bytes.Equal(got, want) {
		t.Errorf("decoded facts\n%s\nwant\n%s", got, want)
	}
	// Without the key a node refuses to read rather than project ciphertext as settings.
	ctx2, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err = plain.Follow(ctx2, 1, func(events.Event, uint64) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "ENCRYPTION_KEY") {
		t.Errorf("follow without the key = %v, want an error naming ENCRYPTION_KEY", err)
	}
}

// TestAppendRefusesOversizedEvent: an event larger than the stream takes is refused with a
// validation error naming the event and the limit, not the server's payload error, on
// both append paths.
func TestAppendRefusesOversizedEvent(t *testing.T) {
	t.Parallel()
	js := eventstest.RunServer(t, "").JetStream(t)
	st := openStore(t, js, events.StoreConfig{})
	ctx := context.Background()
	limit := js.Conn().MaxPayload()
	g := group(1, "huge")
	g.ParamOverrides = []byte(`{"p":"` + strings.Repeat("x", int(limit)) + `"}`)
	_, err := st.Append(ctx, events.ActorAdmin, 0, domain.GroupCreated{Group: g})
	if domain.ErrorCode(err) != domain.EINVALID || !strings.Contains(err.Error(), "group.created") || !strings.Contains(err.Error(), "bytes one event may hold") {
		t.Fatalf("oversized append: err = %v, want EINVALID naming the event and the limit", err)
	}
	err = st.Publish(events.ActorProxy, domain.KeyFailed{GroupID: 1, KeyID: 1, Kind: domain.FailureAuth, Message: strings.Repeat("m", int(limit))})
	if domain.ErrorCode(err) != domain.EINVALID {
		t.Fatalf("oversized publish: err = %v, want EINVALID", err)
	}
	// Just under the limit goes through.
	g.ParamOverrides = []byte(`{"p":"` + strings.Repeat("x", int(limit)-2048) + `"}`)
	if _, err := st.Append(ctx, events.ActorAdmin, 0, domain.GroupCreated{Group: g}); err != nil {
		t.Fatalf("an event under the limit: %v", err)
	}
}
