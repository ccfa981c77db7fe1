package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/events/eventstest"
	"gpt-load/httpapi"
	"gpt-load/httpapi/tasks"
	"gpt-load/projections"
)

const testAuthKey = "Admin-Key-For-Tests-0123456789abcdef"

// testNode is the core of a node (embedded JetStream, store, projections, commands) with
// the router in front of it.
type testNode struct {
	t         testing.TB
	h         http.Handler
	store     *events.Store
	proj      *projections.Runner
	cmd       *events.Commands
	validator *fakeValidator
	tasks     tasks.Store
}

type nodeOpts struct {
	password     string  // ENCRYPTION_KEY of the store
	apiPassword  *string // ENCRYPTION_KEY as the API sees it, when it differs (a misconfigured node)
	noValidator  bool
	authKey      *string
	seedSettings func(*domain.Settings)
	notReady     bool         // the API sees projections that have not caught up
	proxy        http.Handler // Deps.Proxy
	// gate, when set, is whether the API sees the projections caught up (once they are).
	gate *atomic.Bool
	// deps changes the router's dependencies before it is built.
	deps func(*httpapi.Deps)
}

// gated is a readiness that also needs its gate open.
type gated struct {
	*projections.Runner
	open *atomic.Bool
}

func (g gated) CaughtUp() bool { return g.open.Load() && g.Runner.CaughtUp() }

// stuck is a readiness that never catches up.
type stuck struct{}

func (stuck) CaughtUp() bool  { return false }
func (stuck) Applied() uint64 { return 0 }

func startNode(t testing.TB, o nodeOpts) *testNode {
	t.Helper()
	srv := eventstest.RunServer(t, "")
	js := srv.JetStream(t)
	cipher, err := events.NewCipher(o.password)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := events.OpenStore(ctx, js, events.StoreConfig{Node: "test-node", Cipher: cipher}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	seed := domain.DefaultSettings()
	seed.ProxyKeys = "sk-global-proxy-key"
	if o.seedSettings != nil {
		o.seedSettings(&seed)
	}
	run := projections.New(st, events.NewSnapshots(t.TempDir(), cipher), projections.Config{Seed: seed}, zerolog.Nop())
	rctx, rcancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run.Run(rctx) }()
	t.Cleanup(func() {
		rcancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("runner stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("runner did not stop")
		}
	})
	eventstest.CheckFor(t, 30*time.Second, 2*time.Millisecond, func() error {
		if !run.CaughtUp() {
			return errors.New("projections not caught up")
		}
		return nil
	})
	n := &testNode{t: t, store: st, proj: run, cmd: events.NewCommands(st, run), tasks: tasks.NewMemory(nil)}
	if err := n.cmd.SeedSettings(ctx); err != nil {
		t.Fatal(err)
	}
	auth := testAuthKey
	if o.authKey != nil {
		auth = *o.authKey
	}
	apiCipher, apiSet := cipher, o.password != ""
	if o.apiPassword != nil {
		if apiCipher, err = events.NewCipher(*o.apiPassword); err != nil {
			t.Fatal(err)
		}
		apiSet = *o.apiPassword != ""
	}
	deps := httpapi.Deps{
		Log: zerolog.Nop(), Ready: run, Node: "test-node", Started: time.Now(),
		Commands: n.cmd, State: run, Audit: events.NewAudit(st), Cipher: apiCipher,
		AuthKey: auth, EncryptionKeySet: apiSet, Tasks: n.tasks, Proxy: o.proxy,
	}
	if o.notReady {
		deps.Ready = stuck{}
	}
	if o.gate != nil {
		deps.Ready = gated{run, o.gate}
	}
	if !o.noValidator {
		n.validator = &fakeValidator{node: n}
		deps.Validator = n.validator
	}
	if o.deps != nil {
		o.deps(&deps)
	}
	n.h = httpapi.New(deps)
	return n
}

// response is an answer of the router.
type response struct {
	code   int
	header http.Header
	body   []byte
}

// do sends a request with the admin key; body is JSON-encoded unless it is a string or
// []byte, sent as is.
func (n *testNode) do(method, path string, body any, header ...string) *response {
	n.t.Helper()
	return n.send(method, path, body, append([]string{"Authorization", "Bearer " + testAuthKey}, header...)...)
}

// send sends a request with only the given headers.
func (n *testNode) send(method, path string, body any, header ...string) *response {
	n.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			n.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req := httptest.NewRequest(method, path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	n.h.ServeHTTP(rec, req)
	return &response{code: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

// upload sends a multipart upload of a key file to add-async.
func (n *testNode) upload(fields map[string]string, fileName, content string) *response {
	n.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if fileName != "" {
		fw, err := mw.CreateFormFile("file", fileName)
		if err != nil {
			n.t.Fatal(err)
		}
		io.WriteString(fw, content)
	}
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	mw.Close()
	req := httptest.NewRequest(http.MethodPost, "/api/keys/add-async", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+testAuthKey)
	rec := httptest.NewRecorder()
	n.h.ServeHTTP(rec, req)
	return &response{code: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

// envelope is the success or error envelope.
type envelope struct {
	Code    json.RawMessage     `json:"code"`
	Message string              `json:"message"`
	Data    json.RawMessage     `json:"data"`
	Fields  []domain.FieldError `json:"fields"`
}

func (r *response) env(t testing.TB) envelope {
	t.Helper()
	var e envelope
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("not an envelope (%d): %s", r.code, r.body)
	}
	return e
}

// ok checks a success envelope and decodes its data into v (when not nil).
func (r *response) ok(t testing.TB, v any) envelope {
	t.Helper()
	e := r.env(t)
	if r.code != http.StatusOK || string(e.Code) != "0" {
		t.Fatalf("want success, got %d %s", r.code, r.body)
	}
	if v != nil {
		if err := json.Unmarshal(e.Data, v); err != nil {
			t.Fatalf("data %s: %v", e.Data, err)
		}
	}
	return e
}

// fails checks an error envelope with the status and code, and returns it.
func (r *response) fails(t testing.TB, status int, code string) envelope {
	t.Helper()
	e := r.env(t)
	if r.code != status || string(e.Code) != `"`+code+`"` {
		t.Fatalf("want %d %s, got %d %s", status, code, r.code, r.body)
	}
	if e.Message == "" {
		t.Fatalf("error without a message: %s", r.body)
	}
	return e
}

// data decodes the data of a success envelope as generic JSON.
func (r *response) data(t testing.TB) any {
	t.Helper()
	var v any
	r.ok(t, &v)
	return v
}

// encoded is the node's whole state in its canonical encoding: equal bytes, equal states.
func (n *testNode) encoded() []byte {
	n.t.Helper()
	var buf bytes.Buffer
	var err error
	n.proj.Read(func(s *domain.State) { err = s.Encode(&buf) })
	if err != nil {
		n.t.Fatal(err)
	}
	return buf.Bytes()
}

func str(s string) *string { return &s }

// group creates a standard group through the API and returns its id.
func (n *testNode) group(name string, extra ...string) uint64 {
	n.t.Helper()
	more := strings.Join(extra, "")
	upstreams := `,"upstreams":[{"url":"https://api.example.com","weight":1}]`
	if strings.Contains(more, `"upstreams":`) { // a key given twice is refused
		upstreams = ""
	}
	body := fmt.Sprintf(`{"name":%q,"channel_type":"openai","test_model":"gpt-4.1-nano"%s%s}`, name, upstreams, more)
	var g struct {
		ID uint64 `json:"id"`
	}
	n.do(http.MethodPost, "/api/groups", body).ok(n.t, &g)
	return g.ID
}

// addKeys adds keys to a group through the commands.
func (n *testNode) addKeys(gid uint64, keys ...string) {
	n.t.Helper()
	if _, err := n.cmd.AddKeys(context.Background(), events.ActorAdmin, gid, keys, nil); err != nil {
		n.t.Fatal(err)
	}
}

// keyID finds a key's id by value.
func (n *testNode) keyID(gid uint64, value string) uint64 {
	n.t.Helper()
	var id uint64
	h := n.store.Cipher().Hash(value)
	n.proj.Read(func(s *domain.State) {
		if k, ok := s.Keys(gid).ByHash(h); ok {
			id = k.ID
		}
	})
	if id == 0 {
		n.t.Fatalf("key %q not in group %d", value, gid)
	}
	return id
}

// key returns a copy of a key by value.
func (n *testNode) key(gid uint64, value string) (domain.Key, bool) {
	var k domain.Key
	var ok bool
	h := n.store.Cipher().Hash(value)
	n.proj.Read(func(s *domain.State) {
		var p *domain.Key
		if ks := s.Keys(gid); ks != nil {
			if p, ok = ks.ByHash(h); ok {
				k = *p
			}
		}
	})
	return k, ok
}

// waitTask polls /api/tasks/status until no task runs, returning every status seen.
func (n *testNode) waitTask(timeout time.Duration) []tasks.Status {
	n.t.Helper()
	var seen []tasks.Status
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var st tasks.Status
		n.do(http.MethodGet, "/api/tasks/status", nil).ok(n.t, &st)
		seen = append(seen, st)
		if !st.IsRunning {
			return seen
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.t.Fatalf("task still running after %v: %+v", timeout, seen[len(seen)-1])
	return nil
}

// fakeValidator validates keys by their value: a key containing "bad" is invalid. Like
// the real one it records the outcomes as key events. It remembers its calls.
type fakeValidator struct {
	node *testNode
	mu   sync.Mutex
	// validateCalls and testCalls record what was asked.
	validateCalls []validateCall
	testCalls     []string
	hold          chan struct{} // when set, ValidateKeys waits for it
	// invalid tells the keys the upstream refuses; nil refuses those containing "bad".
	invalid func(value string) bool
}

func (v *fakeValidator) refuses(value string) bool {
	if v.invalid != nil {
		return v.invalid(value)
	}
	return strings.Contains(value, "bad")
}

type validateCall struct {
	group       uint64
	ids         []uint64
	concurrency int
}

func (v *fakeValidator) ValidateKeys(ctx context.Context, gid uint64, ids []uint64, concurrency int, progress func(int)) (int, int, error) {
	v.mu.Lock()
	v.validateCalls = append(v.validateCalls, validateCall{gid, append([]uint64(nil), ids...), concurrency})
	hold := v.hold
	v.mu.Unlock()
	if hold != nil {
		<-hold
	}
	valid, invalid := 0, 0
	for i, id := range ids {
		var value string
		v.node.proj.Read(func(s *domain.State) {
			if k, ok := s.Key(id); ok {
				value = k.Value
			}
		})
		good := !v.refuses(value)
		if good {
			valid++
		} else {
			invalid++
		}
		f := domain.KeyValidated{GroupID: gid, KeyID: id, Valid: good}
		if !good {
			f.Status, f.Message = 401, "[status 401] invalid api key"
		}
		if err := v.node.cmd.RecordHealth(ctx, events.ActorAdmin, f); err != nil {
			return valid, invalid, err
		}
		progress(i + 1)
	}
	return valid, invalid, nil
}

func (v *fakeValidator) TestKey(ctx context.Context, gid uint64, value string) (bool, string, error) {
	v.mu.Lock()
	v.testCalls = append(v.testCalls, value)
	v.mu.Unlock()
	if strings.Contains(value, "boom") {
		return false, "", errors.New("upstream unreachable")
	}
	return !v.refuses(value), "[status 401] invalid api key", nil
}
