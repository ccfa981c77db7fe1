package proxy_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/events/eventstest"
	"gpt-load/proxy"
)

// lostFacts is a fact publisher whose facts never reach the log (it is unreachable): the
// node's own holds are then all that keeps a failing key out of its rotation.
type lostFacts struct{}

func (lostFacts) NewID() string { return "" }

func (lostFacts) PublishFacts(_ context.Context, facts []events.HealthFact) []error {
	return make([]error, len(facts))
}

// TestKeysBackInRotationAtOnce: when the log brings a key back (a restore, an enable, a
// successful validation), this node serves it on the very next request, whatever it held
// against the key before.
func TestKeysBackInRotationAtOnce(t *testing.T) {
	t.Parallel()
	keys := []string{"sk-back-1", "sk-back-2", "sk-back-3"}
	setup := func(t *testing.T, o envOpts) (*env, *upstream, *atomic.Bool, uint64) {
		e := newEnv(t, o)
		var refuse atomic.Bool
		refuse.Store(true)
		up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
			if refuse.Load() {
				jsonError(w, 401, "Incorrect API key provided")
				return
			}
			chatOK(w, "back")
		})
		gid := e.group("back", groupOpts{upstreams: []string{up.URL}, config: map[string]any{"blacklist_threshold": 1, "max_retries": 5}})
		e.addKeys(gid, keys...)
		// Every key answers 401: each is held by this node (and blacklisted by the log
		// when its fact gets there).
		if resp, _ := e.do("POST", e.url("back", "/v1/chat/completions"), "sk-global", `{}`); resp.StatusCode != 401 {
			t.Fatalf("while refused: %d", resp.StatusCode)
		}
		if n := len(up.Calls()); n != len(keys) {
			t.Fatalf("%d upstream calls, want one per key", n)
		}
		if resp, _ := e.do("POST", e.url("back", "/v1/chat/completions"), "sk-global", `{}`); resp.StatusCode != 503 {
			t.Fatalf("every key held, yet %d", resp.StatusCode)
		}
		refuse.Store(false)
		return e, up, &refuse, gid
	}
	// servedAtOnce checks that the next requests are served with the keys back.
	servedAtOnce := func(t *testing.T, e *env, up *upstream) {
		t.Helper()
		before := len(up.Calls())
		for i := range 6 {
			resp, body := e.do("POST", e.url("back", "/v1/chat/completions"), "sk-global", `{}`)
			if resp.StatusCode != 200 {
				t.Fatalf("request %d after the keys came back: %d %s", i+1, resp.StatusCode, body)
			}
		}
		used := map[string]bool{}
		for _, c := range up.Calls()[before:] {
			used[c.Key] = true
		}
		if len(used) != len(keys) {
			t.Fatalf("keys used after they came back: %v, want all %d", used, len(keys))
		}
	}
	ctx := context.Background()

	t.Run("restore-all-invalid", func(t *testing.T) {
		t.Parallel()
		e, up, _, gid := setup(t, envOpts{})
		eventstest.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
			for _, k := range keys {
				if st := e.key(gid, k); st.Status != domain.KeyInvalid {
					return fmt.Errorf("%s is %s", k, st.Status)
				}
			}
			return nil
		})
		if n, err := e.cmd.RestoreAllInvalid(ctx, "admin", gid); err != nil || n != len(keys) {
			t.Fatalf("restore: %d %v", n, err)
		}
		servedAtOnce(t, e, up)
	})

	t.Run("enable-multiple", func(t *testing.T) {
		t.Parallel()
		e, up, _, gid := setup(t, envOpts{facts: lostFacts{}})
		ids := make([]uint64, len(keys))
		for i, k := range keys {
			ids[i] = e.key(gid, k).ID
		}
		if _, err := e.cmd.SetKeysDisabled(ctx, "admin", gid, ids, true); err != nil {
			t.Fatal(err)
		}
		if _, err := e.cmd.SetKeysDisabled(ctx, "admin", gid, ids, false); err != nil {
			t.Fatal(err)
		}
		servedAtOnce(t, e, up)
	})

	t.Run("validation", func(t *testing.T) {
		t.Parallel()
		e, up, _, gid := setup(t, envOpts{facts: lostFacts{}})
		gv, _ := e.run.View().Group(gid)
		v := e.h.Validator(proxy.ValidatorDeps{})
		for _, k := range keys {
			res := v.Validate(ctx, gv, k)
			if !res.Valid {
				t.Fatalf("validation of %s: %+v", k, res)
			}
			if err := e.cmd.RecordHealth(ctx, "admin", proxy.ValidationFacts(gid, e.key(gid, k).ID, res)...); err != nil {
				t.Fatal(err)
			}
		}
		servedAtOnce(t, e, up)
	})
}
