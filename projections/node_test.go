package projections_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/events/eventstest"
	"gpt-load/projections"
)

// testNode is the core of one gpt-load node: store, projections and commands on a real
// JetStream server.
type testNode struct {
	store  *events.Store
	proj   *projections.Runner
	cmd    *events.Commands
	cancel context.CancelFunc
	done   chan error
}

type nodeOpts struct {
	replicas int
	snapDir  string
	cipher   *events.Cipher
	seed     *domain.Settings
	snapshot projections.Config
}

func startNode(t testing.TB, js jetstream.JetStream, o nodeOpts) *testNode {
	t.Helper()
	if o.snapDir == "" {
		o.snapDir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var st *events.Store
	// A fresh cluster may still be electing stream leaders: retry the stream set-up.
	eventstest.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		var err error
		st, err = events.OpenStore(ctx, js, events.StoreConfig{Node: "test", Cipher: o.cipher, Replicas: o.replicas}, zerolog.Nop())
		return err
	})
	cfg := o.snapshot
	cfg.Seed = testSeed()
	if o.seed != nil {
		cfg.Seed = *o.seed
	}
	run := projections.New(st, events.NewSnapshots(o.snapDir, o.cipher), cfg, zerolog.Nop())
	rctx, rcancel := context.WithCancel(context.Background())
	n := &testNode{store: st, proj: run, cmd: events.NewCommands(st, run), cancel: rcancel, done: make(chan error, 1)}
	go func() { n.done <- run.Run(rctx) }()
	eventstest.CheckFor(t, 30*time.Second, 2*time.Millisecond, func() error {
		if !run.CaughtUp() {
			return errors.New("projections not caught up")
		}
		return nil
	})
	t.Cleanup(func() { n.stop(t) })
	return n
}

// stop ends the runner (which takes its final snapshot) and waits for it.
func (n *testNode) stop(t testing.TB) {
	t.Helper()
	if n.cancel == nil {
		return
	}
	n.cancel()
	n.cancel = nil
	select {
	case err := <-n.done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("runner stopped with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("runner did not stop")
	}
}

// encoded is the node's whole state in its canonical encoding: equal bytes, equal states.
func (n *testNode) encoded(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	var err error
	n.proj.Read(func(s *domain.State) { err = s.Encode(&buf) })
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func (n *testNode) groupByName(name string) (domain.Group, bool) {
	var g domain.Group
	var ok bool
	n.proj.Read(func(s *domain.State) {
		var p *domain.Group
		if p, ok = s.GroupByName(name); ok {
			g = *p
		}
	})
	return g, ok
}

// testSeed is the settings every test node starts with on an empty log.
func testSeed() domain.Settings {
	s := domain.DefaultSettings()
	s.ProxyKeys = "sk-proxy"
	return s
}

func str(s string) *string { return &s }

func standardGroup(name string) domain.GroupInput {
	return domain.GroupInput{
		Name: str(name), ChannelType: str("openai"), TestModel: str("gpt-4.1-nano"),
		Upstreams: []byte(`[{"url":"https://api.example.com","weight":1}]`),
	}
}

func embeddedJS(t testing.TB) (jetstream.JetStream, string) {
	t.Helper()
	srv := eventstest.RunServer(t, "")
	return srv.JetStream(t), filepath.Join(srv.Dir, "snapshots")
}
