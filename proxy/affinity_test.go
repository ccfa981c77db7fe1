package proxy_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gpt-load/domain"
	"gpt-load/proxy"
)

// turn is the body of a chat request at turn n of conversation conv: the system prompt and
// the first user message stay, the later turns are appended.
func turn(conv, n int, extra string) string {
	msgs := []string{`{"role":"system","content":"You answer briefly."}`, fmt.Sprintf(`{"role":"user","content":"question %d"}`, conv)}
	for i := 1; i < n; i++ {
		msgs = append(msgs, fmt.Sprintf(`{"role":"assistant","content":"answer %d"}`, i), fmt.Sprintf(`{"role":"user","content":"more %d"}`, i))
	}
	return `{"model":"m",` + extra + `"messages":[` + strings.Join(msgs, ",") + `]}`
}

func tenKeys(e *env, gid uint64) {
	keys := make([]string, 10)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%02d", i)
	}
	e.addKeys(gid, keys...)
}

// chat sends one chat request and returns the upstream key that answered it.
func (e *env) chat(up *upstream, group, body string) string {
	e.t.Helper()
	resp, b := e.do("POST", e.url(group, "/v1/chat/completions"), "sk-global", body)
	if resp.StatusCode != 200 {
		e.t.Fatalf("%d %s", resp.StatusCode, b)
	}
	calls := up.Calls()
	return calls[len(calls)-1].Key
}

// The turns of one conversation reach the key of its first turn; without the setting
// they go round the pool.
func TestAffinitySameConversationSameKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	up := newUpstream(t, nil)
	on := e.group("aff-on", groupOpts{upstreams: []string{up.URL}, config: map[string]any{"prompt_cache_affinity": true}})
	off := e.group("aff-off", groupOpts{upstreams: []string{up.URL}})
	tenKeys(e, on)
	tenKeys(e, off)
	for _, tc := range []struct {
		group string
		same  bool
	}{{"aff-on", true}, {"aff-off", false}} {
		spread := 0
		for conv := range 6 {
			keys := map[string]bool{}
			for n := 1; n <= 5; n++ {
				keys[e.chat(up, tc.group, turn(conv, n, ""))] = true
			}
			if tc.same && len(keys) != 1 {
				t.Fatalf("%s: conversation %d used keys %v", tc.group, conv, keys)
			}
			if len(keys) > 1 {
				spread++
			}
		}
		if !tc.same && spread == 0 {
			t.Fatalf("%s: every conversation kept its key without affinity", tc.group)
		}
	}
	st := e.h.AffinityStats()
	if st.Misses != 6 || st.Hits != 6*4 || st.Moved != 0 {
		t.Fatalf("stats %+v, want 6 misses and 24 hits", st)
	}
}

// An explicit prompt_cache_key names the conversation whatever the messages; different
// keys over the same messages are different conversations.
func TestAffinityExplicitKeyWins(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	up := newUpstream(t, nil)
	gid := e.group("aff-key", groupOpts{upstreams: []string{up.URL}, config: map[string]any{"prompt_cache_affinity": true}})
	tenKeys(e, gid)
	first := e.chat(up, "aff-key", turn(1, 1, `"prompt_cache_key":"conv-x",`))
	for conv := 2; conv < 12; conv++ {
		if k := e.chat(up, "aff-key", turn(conv, 1, `"prompt_cache_key":"conv-x",`)); k != first {
			t.Fatalf("other messages with the same prompt_cache_key went to %s, not %s", k, first)
		}
	}
	used := map[string]bool{}
	for i := range 10 {
		used[e.chat(up, "aff-key", turn(1, 1, fmt.Sprintf(`"prompt_cache_key":"conv-%d",`, i)))] = true
	}
	if len(used) < 2 {
		t.Fatalf("ten prompt_cache_keys over the same messages all went to %v", used)
	}
}

// When the conversation's key fails for good (blacklisted) during a turn, the turn is
// retried on another key and the conversation stays there; when its key rests (rate
// limited by another conversation's request), the next turn moves and stays too.
func TestAffinityMovesAndSticks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	var bad sync.Map // key → status to answer
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
		if st, ok := bad.Load(c.Key); ok {
			if st == 429 {
				w.Header().Set("Retry-After", "600")
			}
			jsonError(w, st.(int), "no")
			return
		}
		chatOK(w, "ok")
	})
	gid := e.group("aff-move", groupOpts{upstreams: []string{up.URL}, config: map[string]any{"prompt_cache_affinity": true, "blacklist_threshold": 1}})
	tenKeys(e, gid)
	n := 1
	next := func() string { n++; return e.chat(up, "aff-move", turn(7, n, "")) }
	stays := func(step, k string) {
		t.Helper()
		for range 5 {
			if got := next(); got != k {
				t.Fatalf("%s: after moving to %s the conversation went to %s", step, k, got)
			}
		}
	}
	k1 := e.chat(up, "aff-move", turn(7, 1, ""))
	stays("start", k1)

	// Blacklisted in the middle of a turn.
	bad.Store(k1, 401)
	k2 := next()
	if k2 == k1 {
		t.Fatal("still on the failing key")
	}
	stays("blacklisted", k2)
	if st := e.key(gid, k1).Status; st != domain.KeyInvalid {
		t.Fatalf("%s is %v, want invalid", k1, st)
	}

	// Rate limited by another conversation's request: find one that starts on k2.
	bad.Store(k2, 429)
	for conv := 100; ; conv++ {
		if conv == 200 {
			t.Fatalf("no other conversation reached %s", k2)
		}
		before := len(up.Calls())
		e.do("POST", e.url("aff-move", "/v1/chat/completions"), "sk-global", turn(conv, 1, ""))
		if calls := up.Calls(); calls[before].Key == k2 {
			break
		}
	}
	moved := e.h.AffinityStats().Moved
	k3 := next()
	if k3 == k2 || k3 == k1 {
		t.Fatalf("went to %s while %s rests", k3, k2)
	}
	if got := e.h.AffinityStats().Moved; got != moved+1 {
		t.Fatalf("moves %d, want %d", got, moved+1)
	}
	stays("resting", k3)
	if k := e.key(gid, k2); k.Status != domain.KeyActive || k.CooldownUntil == 0 {
		t.Fatalf("%s: %+v, want active and cooling down", k2, k)
	}
}

// With upstream_key_rpm=N and M keys, a burst of N×M requests spreads over every key, no
// key gets more than N in the minute, the next request finds no key, and the next minute
// opens the budget again.
func TestUpstreamKeyRPM(t *testing.T) {
	t.Parallel()
	const keys, rpm = 4, 3
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 12, 0, 5, 0, time.UTC).UnixNano())
	e := newEnv(t, envOpts{cfg: proxy.Config{Now: func() time.Time { return time.Unix(0, clock.Load()) }}})
	up := newUpstream(t, nil)
	gid := e.group("rpm", groupOpts{upstreams: []string{up.URL}, config: map[string]any{"upstream_key_rpm": rpm}})
	e.addKeys(gid, "k1", "k2", "k3", "k4")
	for minute := range 2 {
		before := len(up.Calls())
		var wg sync.WaitGroup
		for range keys * rpm {
			wg.Go(func() {
				if resp, body := e.do("POST", e.url("rpm", "/v1/chat/completions"), "sk-global", `{}`); resp.StatusCode != 200 {
					t.Errorf("minute %d: %d %s", minute, resp.StatusCode, body)
				}
			})
		}
		wg.Wait()
		used := map[string]int{}
		for _, k := range up.keys()[before:] {
			used[k]++
		}
		for _, k := range []string{"k1", "k2", "k3", "k4"} {
			if used[k] != rpm {
				t.Fatalf("minute %d: keys used %v, want each %d times", minute, used, rpm)
			}
		}
		// Over every key's budget: 429 until the next minute, 55 s from 12:00:05.
		if resp, _ := e.do("POST", e.url("rpm", "/v1/chat/completions"), "sk-global", `{}`); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "55" {
			t.Fatalf("minute %d: a request over every key's budget got %d, Retry-After %q", minute, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		clock.Add(int64(time.Minute))
	}
}

// With upstream_key_tpm, the tokens an upstream reports spend the key's budget: a key
// that used them rests for the rest of the minute.
func TestUpstreamKeyTPM(t *testing.T) {
	t.Parallel()
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 12, 0, 5, 0, time.UTC).UnixNano())
	e := newEnv(t, envOpts{cfg: proxy.Config{Now: func() time.Time { return time.Unix(0, clock.Load()) }}})
	up := newUpstream(t, nil) // every answer reports 10 tokens
	gid := e.group("tpm", groupOpts{upstreams: []string{up.URL}, config: map[string]any{"upstream_key_tpm": 20}})
	e.addKeys(gid, "k1", "k2")
	for range 4 {
		if resp, body := e.do("POST", e.url("tpm", "/v1/chat/completions"), "sk-global", `{}`); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
	if resp, _ := e.do("POST", e.url("tpm", "/v1/chat/completions"), "sk-global", `{}`); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a request after every key used its tokens got %d", resp.StatusCode)
	}
	clock.Add(int64(time.Minute))
	if resp, _ := e.do("POST", e.url("tpm", "/v1/chat/completions"), "sk-global", `{}`); resp.StatusCode != 200 {
		t.Fatalf("the next minute got %d", resp.StatusCode)
	}
	if k1, k2 := count(up.keys(), "k1"), count(up.keys(), "k2"); k1+k2 != 5 || min(k1, k2) != 2 {
		t.Fatalf("k1 %d, k2 %d calls, want 2 each in the first minute and one more in the next", k1, k2)
	}
}

// Through an aggregate, the conversation keeps its key inside the member that serves it.
func TestAffinityThroughAggregate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	up := newUpstream(t, nil)
	member := e.group("aff-member", groupOpts{upstreams: []string{up.URL}, config: map[string]any{"prompt_cache_affinity": true}})
	tenKeys(e, member)
	e.aggregate("aff-agg", "openai", map[uint64]int{member: 1})
	for conv := range 3 {
		keys := map[string]bool{}
		for n := 1; n <= 4; n++ {
			keys[e.chat(up, "aff-agg", turn(conv, n, ""))] = true
		}
		if len(keys) != 1 {
			t.Fatalf("conversation %d used keys %v through the aggregate", conv, keys)
		}
	}
}
