package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/events/eventstest"
	"gpt-load/projections"
	"gpt-load/proxy"
	"gpt-load/proxy/limits"
)

// env is one gpt-load node core (event log on an embedded JetStream server, projections,
// commands, request-log publisher) with the proxy mounted on a real HTTP server.
type env struct {
	t     testing.TB
	js    jetstream.JetStream
	store *events.Store
	run   *projections.Runner
	cmd   *events.Commands
	logs  *events.ReqLogPublisher
	h     *proxy.Handler
	srv   *httptest.Server
}

type envOpts struct {
	cfg      proxy.Config
	settings map[string]any      // system settings changed at start
	facts    proxy.FactPublisher // replaces the event store as the proxy's fact publisher
	// limits builds the limiter of named proxy keys; nil: the proxy's own.
	limits func(js jetstream.JetStream) *limits.Limiter
	// connect replaces the in-process connection to a fresh embedded server (a server the
	// test stops and starts again).
	connect func(t testing.TB) *nats.Conn
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	var nc *nats.Conn
	if o.connect != nil {
		nc = o.connect(t)
	} else {
		var err error
		if nc, err = eventstest.RunServer(t, "").Connect(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := events.OpenStore(ctx, js, events.StoreConfig{Node: "test"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	seed := domain.DefaultSettings()
	seed.ProxyKeys = "sk-global"
	run := projections.New(st, events.NewSnapshots(t.TempDir(), nil), projections.Config{Seed: seed}, zerolog.Nop())
	rctx, rcancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run.Run(rctx) }()
	eventstest.CheckFor(t, 20*time.Second, 2*time.Millisecond, func() error {
		if !run.CaughtUp() {
			return errors.New("projections not caught up")
		}
		return nil
	})
	e := &env{t: t, js: js, store: st, run: run, cmd: events.NewCommands(st, run)}
	if len(o.settings) > 0 {
		changes := map[string]json.RawMessage{}
		for k, v := range o.settings {
			b, _ := json.Marshal(v)
			changes[k] = b
		}
		if err := e.cmd.UpdateSettings(ctx, "admin", changes); err != nil {
			t.Fatal(err)
		}
	}
	e.logs = events.NewReqLogPublisher(js, events.ReqLogConfig{Node: "test", Linger: 2 * time.Millisecond}, zerolog.Nop())
	var facts proxy.FactPublisher = st
	if o.facts != nil {
		facts = o.facts
	}
	h, err := proxy.New(o.cfg, proxy.Deps{Views: run, Facts: facts, Logs: e.logs, Limits: e.limiter(o), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	e.srv = httptest.NewServer(h)
	t.Cleanup(func() {
		e.srv.Close()
		h.Close()
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		e.logs.Close(cctx)
		st.Flush(cctx)
		rcancel()
		<-done
	})
	return e
}

func (e *env) limiter(o envOpts) *limits.Limiter {
	if o.limits == nil {
		return nil
	}
	return o.limits(e.js)
}

type groupOpts struct {
	channel   string
	upstreams []string // weights 1 unless given as "url|weight"
	config    map[string]any
	input     func(in *domain.GroupInput)
}

// group creates a standard group and returns its id.
func (e *env) group(name string, o groupOpts) uint64 {
	e.t.Helper()
	if o.channel == "" {
		o.channel = "openai"
	}
	var ups []map[string]any
	for _, u := range o.upstreams {
		w := 1
		if url, weight, ok := strings.Cut(u, "|"); ok {
			u = url
			fmt.Sscan(weight, &w)
		}
		ups = append(ups, map[string]any{"url": u, "weight": w})
	}
	upsJSON, _ := json.Marshal(ups)
	in := domain.GroupInput{
		Name: new(name), ChannelType: new(o.channel), TestModel: new("test-model"),
		Upstreams: upsJSON, ProxyKeys: new("sk-group-" + name),
	}
	if o.config != nil {
		in.Config, _ = json.Marshal(o.config)
	}
	if o.input != nil {
		o.input(&in)
	}
	g, err := e.cmd.CreateGroup(context.Background(), "admin", in)
	if err != nil {
		e.t.Fatalf("create group %s: %v", name, err)
	}
	return g.ID
}

func (e *env) aggregate(name string, channel string, members map[uint64]int) uint64 {
	e.t.Helper()
	in := domain.GroupInput{Name: new(name), ChannelType: new(channel), GroupType: new("aggregate"), ProxyKeys: new("sk-group-" + name)}
	g, err := e.cmd.CreateGroup(context.Background(), "admin", in)
	if err != nil {
		e.t.Fatal(err)
	}
	var subs []domain.SubGroup
	for id, w := range members {
		subs = append(subs, domain.SubGroup{GroupID: id, Weight: w})
	}
	if err := e.cmd.AddSubGroups(context.Background(), "admin", g.ID, subs); err != nil {
		e.t.Fatal(err)
	}
	return g.ID
}

func (e *env) addKeys(groupID uint64, keys ...string) {
	e.t.Helper()
	if _, err := e.cmd.AddKeys(context.Background(), "admin", groupID, keys, nil); err != nil {
		e.t.Fatal(err)
	}
}

// key reads a key's state from the projection.
func (e *env) key(groupID uint64, value string) domain.Key {
	e.t.Helper()
	var k domain.Key
	found := false
	e.run.Read(func(s *domain.State) {
		if ks := s.Keys(groupID); ks != nil {
			if p, ok := ks.ByHash(e.store.Cipher().Hash(value)); ok {
				k, found = *p, true
			}
		}
	})
	if !found {
		e.t.Fatalf("key %q not in group %d", value, groupID)
	}
	return k
}

func (e *env) url(group, path string) string { return e.srv.URL + "/proxy/" + group + path }

// do sends a request with a proxy key in the Authorization header.
func (e *env) do(method, url, key, body string, hdr ...string) (*http.Response, string) {
	e.t.Helper()
	var rb io.Reader
	if body != "" {
		rb = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rb)
	if err != nil {
		e.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// reqLogs returns every request log stored in the log stream so far (after a flush).
func (e *env) reqLogs() []domain.RequestLog {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.logs.Flush(ctx); err != nil {
		e.t.Fatal(err)
	}
	return readReqLogs(e.t, e.js)
}

func readReqLogs(t testing.TB, js jetstream.JetStream) []domain.RequestLog {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, events.ReqLogStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []domain.RequestLog
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		recs, _, err := events.DecodeRequestLogs(m.Header, m.Data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, recs...)
	}
	return out
}

// waitLogs polls until the request logs satisfy ok.
func (e *env) waitLogs(ok func([]domain.RequestLog) error) []domain.RequestLog {
	e.t.Helper()
	var logs []domain.RequestLog
	eventstest.CheckFor(e.t, 10*time.Second, 5*time.Millisecond, func() error {
		logs = e.reqLogs()
		return ok(logs)
	})
	return logs
}

// upstream is a fake provider: it records the key of every call and answers through a
// behaviour chosen per key.
type upstream struct {
	*httptest.Server
	mu    sync.Mutex
	calls []call
	// behave answers a call; the default answers a chat completion.
	behave func(w http.ResponseWriter, r *http.Request, c call)
}

type call struct {
	Key    string // the upstream key as the channel sent it
	Path   string
	Query  string
	Body   string
	Header http.Header
}

func newUpstream(t testing.TB, behave func(w http.ResponseWriter, r *http.Request, c call)) *upstream {
	u := &upstream{behave: behave}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c := call{Path: r.URL.Path, Query: r.URL.RawQuery, Body: string(b), Header: r.Header.Clone()}
		switch {
		case strings.HasPrefix(r.Header.Get("Authorization"), "Bearer "):
			c.Key = strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		case r.Header.Get("X-Api-Key") != "":
			c.Key = r.Header.Get("X-Api-Key")
		case r.Header.Get("Api-Key") != "":
			c.Key = r.Header.Get("Api-Key")
		case r.URL.Query().Get("key") != "":
			c.Key = r.URL.Query().Get("key")
		}
		u.mu.Lock()
		u.calls = append(u.calls, c)
		u.mu.Unlock()
		if u.behave != nil {
			u.behave(w, r, c)
			return
		}
		chatOK(w, "hello")
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) Calls() []call {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]call(nil), u.calls...)
}

func (u *upstream) keys() []string {
	var ks []string
	for _, c := range u.Calls() {
		ks = append(ks, c.Key)
	}
	return ks
}

func chatOK(w http.ResponseWriter, text string) {
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-test","choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}`, text)
}

func jsonError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"message":%q,"type":"error"}}`, msg)
}

func sseChat(w http.ResponseWriter, parts ...string) {
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	for i, p := range parts {
		fmt.Fprintf(w, "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-test\",\"choices\":[{\"index\":0,\"delta\":{\"content\":%q},\"finish_reason\":null}]}\n\n", p)
		fl.Flush()
		_ = i
	}
	fmt.Fprint(w, "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-test\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n")
	fmt.Fprint(w, "data: [DONE]\n\n")
	fl.Flush()
}

func count(keys []string, k string) int {
	n := 0
	for _, x := range keys {
		if x == k {
			n++
		}
	}
	return n
}
