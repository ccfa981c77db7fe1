package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"gpt-load/domain"
	"gpt-load/events/eventstest"
	"gpt-load/proxy"
)

func TestValidateRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
		switch c.Key {
		case "bad-key-123456":
			jsonError(w, 401, "Incorrect API key provided: bad-key-123456")
		case "limited":
			w.Header().Set("Retry-After", "120")
			jsonError(w, 429, "rate limited")
		default:
			chatOK(w, "hi")
		}
	})
	cases := []struct {
		channel, path, query, body, auth string
	}{
		{"openai", "/v1/chat/completions", "", `{"model":"test-model","messages":[{"role":"user","content":"hi"}]}`, "Authorization"},
		{"openai-response", "/v1/responses", "", `{"model":"test-model","input":"hi"}`, "Authorization"},
		{"anthropic", "/v1/messages", "", `{"model":"test-model","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}`, "X-Api-Key"},
		{"gemini", "/v1beta/models/test-model:generateContent", "key=good", `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`, ""},
		{"azure-openai", "/openai/deployments/test-model/chat/completions", "api-version=2024-10-21", `{"model":"test-model","messages":[{"role":"user","content":"hi"}]}`, "Api-Key"},
	}
	v := e.h.Validator(proxy.ValidatorDeps{})
	for _, tc := range cases {
		t.Run(tc.channel, func(t *testing.T) {
			name := "v-" + strings.ReplaceAll(tc.channel, "-", "")
			gid := e.group(name, groupOpts{channel: tc.channel, upstreams: []string{up.URL}, input: func(in *domain.GroupInput) {
				in.HeaderRules = json.RawMessage(`[{"key":"x-from","value":"${CLIENT_IP}","action":"set"}]`)
			}})
			gv, _ := e.run.View().Group(gid)
			n := len(up.Calls())
			res := v.Validate(context.Background(), gv, "good")
			if !res.Valid || res.Status != 200 {
				t.Fatalf("%+v", res)
			}
			c := up.Calls()[n]
			if c.Path != tc.path || c.Query != tc.query || c.Body != tc.body || c.Header.Get("Content-Type") != "application/json" || c.Header.Get("X-From") != "127.0.0.1" {
				t.Fatalf("call %+v", c)
			}
			if tc.auth != "" && !strings.HasSuffix(c.Header.Get(tc.auth), "good") {
				t.Fatalf("auth header %s: %v", tc.auth, c.Header)
			}
			res = v.Validate(context.Background(), gv, "bad-key-123456")
			if res.Valid || res.Status != 401 || res.Kind() != domain.FailureAuth || !strings.HasPrefix(res.Message, "[status 401] ") || strings.Contains(res.Message, "bad-key-123456") {
				t.Fatalf("%+v", res)
			}
			res = v.Validate(context.Background(), gv, "limited")
			if res.Valid || res.Kind() != domain.FailureRateLimit || time.Until(res.RetryUntil) < time.Minute {
				t.Fatalf("%+v", res)
			}
		})
	}
}

func TestRunRevalidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
		if strings.HasPrefix(c.Key, "still-bad") {
			jsonError(w, 401, "invalid api key")
			return
		}
		chatOK(w, "hi")
	})
	gid := e.group("rv", groupOpts{upstreams: []string{up.URL}, config: map[string]any{"blacklist_threshold": 1, "key_validation_concurrency": 2}, input: func(in *domain.GroupInput) {
		in.HeaderRules = json.RawMessage(`[{"key":"x-job","value":"${GROUP_NAME}","action":"set"}]`)
	}})
	e.addKeys(gid, "healthy", "was-bad", "resting", "disabled", "still-bad")
	ctx := context.Background()
	id := func(v string) uint64 { return e.key(gid, v).ID }
	var facts []domain.Fact
	for _, k := range []string{"was-bad", "disabled", "still-bad"} {
		facts = append(facts, domain.KeyFailed{GroupID: gid, KeyID: id(k), Kind: domain.FailureAuth, Status: 401, Message: "x"})
	}
	facts = append(facts, domain.KeyFailed{GroupID: gid, KeyID: id("resting"), Kind: domain.FailureRateLimit, RetryUntil: time.Now().Add(time.Hour)})
	if err := e.cmd.RecordHealth(ctx, "test", facts...); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cmd.SetKeysDisabled(ctx, "admin", gid, []uint64{id("disabled")}, true); err != nil {
		t.Fatal(err)
	}

	v := e.h.Validator(proxy.ValidatorDeps{State: e.run, Marker: e.cmd, Log: zerolog.Nop(), Tick: 20 * time.Millisecond})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- v.RunRevalidation(rctx) }()
	eventstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if k := e.key(gid, "was-bad"); k.Status != domain.KeyActive || k.FailureCount != 0 {
			return fmt.Errorf("was-bad %+v", k)
		}
		if k := e.key(gid, "resting"); k.CooldownUntil != 0 {
			return fmt.Errorf("resting %+v", k)
		}
		if k := e.key(gid, "still-bad"); k.Status != domain.KeyInvalid || k.FailureCount < 2 {
			return fmt.Errorf("still-bad %+v", k)
		}
		if g, _ := e.run.View().Group(gid); g.LastValidatedAt.IsZero() {
			return errors.New("group not marked validated")
		}
		return nil
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if k := e.key(gid, "disabled"); k.Status != domain.KeyInvalid {
		t.Fatalf("disabled key touched: %+v", k)
	}
	for _, c := range up.Calls() {
		if c.Key == "disabled" || c.Key == "healthy" {
			t.Fatalf("key %s validated", c.Key)
		}
		if c.Header.Get("X-Job") != "rv" {
			t.Fatalf("header rules not applied: %v", c.Header)
		}
	}
	// The interval has not passed: a second round does nothing.
	n := len(up.Calls())
	rctx2, cancel2 := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel2()
	v.RunRevalidation(rctx2)
	if len(up.Calls()) != n {
		t.Fatal("revalidated before the interval")
	}
}
