package proxy_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	anthropicoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/rs/zerolog"

	"gpt-load/domain"
	"gpt-load/events/eventstest"
	"gpt-load/proxy"
	"gpt-load/proxy/limits"
)

// testClock is a clock the test moves by hand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// namedKey creates a named proxy key and returns its id and secret.
func (e *env) namedKey(in domain.ProxyKeyInput) (uint64, string) {
	e.t.Helper()
	k, secret, err := e.cmd.CreateProxyKey(context.Background(), "admin", in)
	if err != nil {
		e.t.Fatalf("create proxy key: %v", err)
	}
	return k.ID, secret
}

func groupsJSON(names ...string) json.RawMessage {
	b, _ := json.Marshal(names)
	return b
}

const chatBody = `{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}`

func TestNamedProxyKeyAccess(t *testing.T) {
	t.Parallel()
	clock := &testClock{now: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)}
	e := newEnv(t, envOpts{cfg: proxy.Config{Now: clock.Now}})
	up := newUpstream(t, nil)
	a := e.group("pk-a", groupOpts{upstreams: []string{up.URL}})
	b := e.group("pk-b", groupOpts{upstreams: []string{up.URL}})
	e.addKeys(a, "up-a")
	e.addKeys(b, "up-b")
	id, secret := e.namedKey(domain.ProxyKeyInput{Name: new("team-a"), Groups: groupsJSON("pk-a")})
	ctx := context.Background()

	// Every credential form.
	forms := map[string]func(r *http.Request){
		"bearer":         func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+secret) },
		"query":          func(r *http.Request) { r.URL.RawQuery = "key=" + secret },
		"x-api-key":      func(r *http.Request) { r.Header.Set("X-Api-Key", secret) },
		"x-goog-api-key": func(r *http.Request) { r.Header.Set("X-Goog-Api-Key", secret) },
	}
	for name, set := range forms {
		req, _ := http.NewRequest("POST", e.url("pk-a", "/v1/chat/completions"), strings.NewReader(chatBody))
		set(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: status %d, want 200", name, resp.StatusCode)
		}
	}
	status := func(group, key string) int {
		t.Helper()
		resp, _ := e.do("POST", e.url(group, "/v1/chat/completions"), key, chatBody)
		return resp.StatusCode
	}
	if got := status("pk-b", secret); got != http.StatusForbidden {
		t.Errorf("a group the key may not use: %d, want 403", got)
	}
	if got := status("no-such-group", secret); got != http.StatusUnauthorized {
		t.Errorf("an unknown group: %d, want 401", got)
	}
	// The request log names the key and its id.
	logs := e.waitLogs(func(ls []domain.RequestLog) error {
		if len(ls) < len(forms) {
			return fmt.Errorf("%d logs", len(ls))
		}
		return nil
	})
	for _, l := range logs {
		if l.ProxyKeyName != "team-a" || l.ProxyKeyID != id || l.ProxyKeyFP != domain.ProxyKeyFingerprint(secret) {
			t.Errorf("log names the key %q/%d/%s", l.ProxyKeyName, l.ProxyKeyID, l.ProxyKeyFP)
		}
	}

	// Disabled: 401; enabled again: 200.
	if _, err := e.cmd.UpdateProxyKey(ctx, "admin", id, domain.ProxyKeyInput{Enabled: new(false)}); err != nil {
		t.Fatal(err)
	}
	if got := status("pk-a", secret); got != http.StatusUnauthorized {
		t.Errorf("disabled: %d, want 401", got)
	}
	if _, err := e.cmd.UpdateProxyKey(ctx, "admin", id, domain.ProxyKeyInput{Enabled: new(true), Groups: json.RawMessage(`null`)}); err != nil {
		t.Fatal(err)
	}
	if got := status("pk-b", secret); got != 200 {
		t.Errorf("enabled on every group: %d, want 200", got)
	}
	// Expired at the clock's time: 401.
	exp, _ := json.Marshal(clock.Now().Add(time.Minute).Format(time.RFC3339))
	if _, err := e.cmd.UpdateProxyKey(ctx, "admin", id, domain.ProxyKeyInput{ExpiresAt: exp}); err != nil {
		t.Fatal(err)
	}
	if got := status("pk-a", secret); got != 200 {
		t.Errorf("before expiry: %d, want 200", got)
	}
	clock.add(time.Minute)
	if got := status("pk-a", secret); got != http.StatusUnauthorized {
		t.Errorf("expired: %d, want 401", got)
	}
	if _, err := e.cmd.UpdateProxyKey(ctx, "admin", id, domain.ProxyKeyInput{ExpiresAt: json.RawMessage(`null`)}); err != nil {
		t.Fatal(err)
	}
	// Rotated: the old secret is refused, the new one works.
	_, fresh, err := e.cmd.RotateProxyKey(ctx, "admin", id)
	if err != nil {
		t.Fatal(err)
	}
	if got := status("pk-a", secret); got != http.StatusUnauthorized {
		t.Errorf("old secret after rotation: %d, want 401", got)
	}
	if got := status("pk-a", fresh); got != 200 {
		t.Errorf("new secret: %d, want 200", got)
	}
	// The legacy keys still work beside the named ones.
	if got := status("pk-a", "sk-global"); got != 200 {
		t.Errorf("global proxy key: %d", got)
	}
	if got := status("pk-a", "sk-group-pk-a"); got != 200 {
		t.Errorf("group proxy key: %d", got)
	}
	if err := e.cmd.DeleteProxyKey(ctx, "admin", id); err != nil {
		t.Fatal(err)
	}
	if got := status("pk-a", fresh); got != http.StatusUnauthorized {
		t.Errorf("deleted: %d, want 401", got)
	}
}

// usageUpstream answers chat completions with a usage of prompt+completion tokens.
func usageUpstream(t *testing.T, prompt, completion int) *upstream {
	return newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"c","object":"chat.completion","created":1,"model":"gpt-test","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}`,
			prompt, completion, prompt+completion)
	})
}

// localLimiter is a limiter of one node on clock, without counters in NATS.
func localLimiter(clock *testClock) func(jetstream.JetStream) *limits.Limiter {
	return func(jetstream.JetStream) *limits.Limiter {
		return limits.New(limits.Config{Now: clock.Now, Log: zerolog.Nop()})
	}
}

func TestNamedProxyKeyRPM(t *testing.T) {
	t.Parallel()
	clock := &testClock{now: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)}
	e := newEnv(t, envOpts{cfg: proxy.Config{Now: clock.Now}, limits: localLimiter(clock)})
	up := newUpstream(t, nil)
	g := e.group("rpm", groupOpts{upstreams: []string{up.URL}})
	e.addKeys(g, "up")
	_, secret := e.namedKey(domain.ProxyKeyInput{Name: new("rpm60"), RPM: new(int64(60))})

	// 200 requests a minute, evenly, for three minutes: the first minute admits the burst
	// of 60 and what refills; every later minute admits about 60.
	perMinute := make([]int, 3)
	for i := range 600 {
		resp, body := e.do("POST", e.url("rpm", "/v1/chat/completions"), secret, chatBody)
		switch resp.StatusCode {
		case 200:
			perMinute[i/200]++
		case http.StatusTooManyRequests:
			ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
			if err != nil || ra < 1 || ra > 60 {
				t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
			}
			if !strings.Contains(body, `"rate_limit_error"`) || !strings.Contains(body, "requests-per-minute") {
				t.Fatalf("429 body %s", body)
			}
		default:
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		clock.add(300 * time.Millisecond)
	}
	t.Logf("admitted per minute: %v", perMinute)
	if perMinute[0] < 60 || perMinute[0] > 120 {
		t.Errorf("first minute admitted %d, want the burst of 60 and up to 60 more", perMinute[0])
	}
	for m, n := range perMinute[1:] {
		if n < 57 || n > 63 {
			t.Errorf("minute %d admitted %d, want 57..63", m+2, n)
		}
	}
}

func TestNamedProxyKeyTPM(t *testing.T) {
	t.Parallel()
	clock := &testClock{now: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)}
	e := newEnv(t, envOpts{cfg: proxy.Config{Now: clock.Now}, limits: localLimiter(clock)})
	up := usageUpstream(t, 300, 100) // 400 tokens an answer
	g := e.group("tpm", groupOpts{upstreams: []string{up.URL}})
	e.addKeys(g, "up")
	_, secret := e.namedKey(domain.ProxyKeyInput{Name: new("tpm1000"), TPM: new(int64(1000))})
	do := func() *http.Response {
		resp, _ := e.do("POST", e.url("tpm", "/v1/chat/completions"), secret, chatBody)
		return resp
	}
	// 1000 tokens: admitted while any is left, charged after the answer: 3 answers (1200).
	for i := range 3 {
		if r := do(); r.StatusCode != 200 {
			t.Fatalf("request %d: %d", i+1, r.StatusCode)
		}
	}
	r := do()
	if r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("after 1200 of 1000 tokens: %d, want 429", r.StatusCode)
	}
	// 200 tokens in debt, refilled at 1000 a minute: 12 s to zero, admitted just after.
	if ra := r.Header.Get("Retry-After"); ra != "13" {
		t.Errorf("Retry-After %q, want 13", ra)
	}
	clock.add(12 * time.Second)
	if r := do(); r.StatusCode != http.StatusTooManyRequests {
		t.Errorf("at exactly zero tokens: %d, want 429", r.StatusCode)
	}
	clock.add(time.Second)
	if r := do(); r.StatusCode != 200 {
		t.Errorf("with tokens again: %d, want 200", r.StatusCode)
	}
}

func TestNamedProxyKeyQuotas(t *testing.T) {
	t.Parallel()
	// A minute before the end of a day that is also the end of a month.
	clock := &testClock{now: time.Date(2026, 12, 31, 23, 59, 0, 0, time.UTC)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var kv jetstream.KeyValue
	var lim *limits.Limiter
	e := newEnv(t, envOpts{cfg: proxy.Config{Now: clock.Now}, limits: func(js jetstream.JetStream) *limits.Limiter {
		var err error
		if kv, err = limits.OpenUsageBucket(ctx, js, 1, zerolog.Nop()); err != nil {
			t.Fatal(err)
		}
		lim = limits.New(limits.Config{Now: clock.Now, KV: kv, Interval: time.Hour, Log: zerolog.Nop()})
		return lim
	}})
	up := usageUpstream(t, 300, 100)
	g := e.group("quota", groupOpts{upstreams: []string{up.URL}})
	e.addKeys(g, "up")
	daily, dsecret := e.namedKey(domain.ProxyKeyInput{Name: new("daily"), DailyTokens: new(int64(1000))})
	_, msecret := e.namedKey(domain.ProxyKeyInput{Name: new("monthly"), MonthlyTokens: new(int64(1000))})

	do := func(url, secret string) (*http.Response, string) {
		t.Helper()
		return e.do("POST", url+"/proxy/quota/v1/chat/completions", secret, chatBody)
	}
	for _, k := range []struct{ secret, word string }{{dsecret, "daily"}, {msecret, "monthly"}} {
		for i := range 3 {
			if r, body := do(e.srv.URL, k.secret); r.StatusCode != 200 {
				t.Fatalf("%s request %d: %d %s", k.word, i+1, r.StatusCode, body)
			}
		}
		r, body := do(e.srv.URL, k.secret)
		if r.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, `"insufficient_quota"`) || !strings.Contains(body, k.word) {
			t.Fatalf("%s quota spent: %d %s", k.word, r.StatusCode, body)
		}
		if ra := r.Header.Get("Retry-After"); ra != "60" {
			t.Errorf("%s quota: Retry-After %q, want 60 (the end of the period)", k.word, ra)
		}
	}
	// The counts reach the bucket once a round.
	lim.Step(ctx)
	entry, err := kv.Get(ctx, fmt.Sprintf("%d.d.20261231", daily))
	if err != nil || !strings.Contains(string(entry.Value()), `"tokens":1200`) {
		t.Fatalf("day counter in the bucket: %v %v", entry, err)
	}
	if d, _, last := lim.ProxyKeyUsage(daily); d != 1200 || last.IsZero() {
		t.Errorf("usage %d, last used %v", d, last)
	}

	// A restarted node reads the counts back: the quota stays spent.
	lim2 := limits.New(limits.Config{Now: clock.Now, KV: kv, Interval: time.Hour, Log: zerolog.Nop()})
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- lim2.Run(rctx) }()
	t.Cleanup(func() { stop(); <-done })
	eventstest.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if d, _, _ := lim2.ProxyKeyUsage(daily); d != 1200 {
			return fmt.Errorf("the restarted limiter sees %d tokens", d)
		}
		return nil
	})
	h2, err := proxy.New(proxy.Config{Now: clock.Now}, proxy.Deps{Views: e.run, Facts: e.store, Limits: lim2, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	srv2 := httptest.NewServer(h2)
	t.Cleanup(func() { srv2.Close(); h2.Close() })
	if r, body := do(srv2.URL, dsecret); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("after a restart: %d %s, want the quota still spent", r.StatusCode, body)
	}
	// A new UTC day (and month) renews both quotas.
	clock.set(time.Date(2027, 1, 1, 0, 0, 1, 0, time.UTC))
	for _, secret := range []string{dsecret, msecret} {
		if r, body := do(srv2.URL, secret); r.StatusCode != 200 {
			t.Errorf("in the new period: %d %s", r.StatusCode, body)
		}
	}
}

// TestNamedProxyKeySDKRetries: the official OpenAI client meets the 429 of a spent RPM
// bucket, waits for its Retry-After by itself and succeeds once the bucket refilled.
func TestNamedProxyKeySDKRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	up := newUpstream(t, nil)
	g := e.group("sdk-rpm", groupOpts{upstreams: []string{up.URL}})
	e.addKeys(g, "up")
	_, secret := e.namedKey(domain.ProxyKeyInput{Name: new("sdk"), RPM: new(int64(60))})
	// Spend the burst.
	for {
		resp, _ := e.do("POST", e.url("sdk-rpm", "/v1/chat/completions"), secret, chatBody)
		if resp.StatusCode == http.StatusTooManyRequests {
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var statuses []int
	oc := openai.NewClient(option.WithBaseURL(e.srv.URL+"/proxy/sdk-rpm/v1/"), option.WithAPIKey(secret), option.WithMaxRetries(3),
		option.WithMiddleware(func(r *http.Request, next option.MiddlewareNext) (*http.Response, error) {
			resp, err := next(r)
			if err == nil {
				statuses = append(statuses, resp.StatusCode)
			}
			return resp, err
		}))
	start := time.Now()
	res, err := oc.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-test", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
	if err != nil || res.Choices[0].Message.Content != "hello" {
		t.Fatalf("%v %+v", err, res)
	}
	if len(statuses) < 2 || statuses[0] != http.StatusTooManyRequests || statuses[len(statuses)-1] != 200 {
		t.Fatalf("the client saw %v, want a 429 and then a 200", statuses)
	}
	if waited := time.Since(start); waited < 500*time.Millisecond {
		t.Errorf("the client retried after %v: it did not wait for Retry-After", waited)
	}
}

// BenchmarkKeyCheck is the proxy-key check of a request (the unnamed lists compared in
// constant time, then a named key found by digest, its groups, expiry and limits) with 10
// and 10,000 named keys: a global key, a named key without limits, and one with an RPM,
// TPM and daily quota it stays under.
func BenchmarkKeyCheck(b *testing.B) {
	for _, n := range []int{10, 10_000} {
		e := newEnv(b, envOpts{})
		up := newUpstream(b, nil)
		e.group("bench", groupOpts{upstreams: []string{up.URL}})
		facts := make([]domain.Fact, 0, n)
		secrets := make([]string, n)
		for i := range n {
			secrets[i] = fmt.Sprintf("sk-gl-bench-%08d-0123456789abcdefghijklmnopqrstuvwxyz", i)
			k := domain.ProxyKey{ID: uint64(i + 1), Name: fmt.Sprint("k", i), Enabled: true, Hash: sha256.Sum256([]byte(secrets[i]))}
			if i%2 == 1 {
				k.RPM, k.TPM, k.DailyTokens = 1<<40, 1<<40, 1<<40
			}
			facts = append(facts, domain.ProxyKeyCreated{Key: k})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		seq, err := e.store.Append(ctx, "admin", 0, facts...)
		if err == nil {
			err = e.run.WaitFor(ctx, seq)
		}
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		v := e.run.View()
		now := time.Now()
		for _, c := range []struct{ name, key string }{{"global", "sk-global"}, {"named", secrets[n-2]}, {"named-limited", secrets[n-1]}} {
			b.Run(fmt.Sprintf("%s/%d", c.name, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if !proxy.CheckKey(e.h, v, "bench", c.key, now) {
						b.Fatal("refused")
					}
				}
			})
		}
	}
}

// TestNamedProxyKeyAnthropicSDKRetries: the official Anthropic client meets the 429 of a
// spent RPM bucket in Anthropic's error shape, waits for its Retry-After by itself and
// succeeds once the bucket refilled.
func TestNamedProxyKeyAnthropicSDKRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	up := providers(t)
	g := e.group("sdk-rpm-an", groupOpts{upstreams: []string{up.URL}, channel: "anthropic"})
	e.addKeys(g, "good-an")
	_, secret := e.namedKey(domain.ProxyKeyInput{Name: new("sdk-an"), RPM: new(int64(60))})
	body := `{"model":"claude-test","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`
	for {
		resp, _ := e.do("POST", e.url("sdk-rpm-an", "/v1/messages"), secret, body)
		if resp.StatusCode == http.StatusTooManyRequests {
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var statuses []int
	ac := anthropic.NewClient(anthropicoption.WithBaseURL(e.srv.URL+"/proxy/sdk-rpm-an/"), anthropicoption.WithAPIKey(secret), anthropicoption.WithMaxRetries(3),
		anthropicoption.WithMiddleware(func(r *http.Request, next anthropicoption.MiddlewareNext) (*http.Response, error) {
			resp, err := next(r)
			if err == nil {
				statuses = append(statuses, resp.StatusCode)
			}
			return resp, err
		}))
	start := time.Now()
	msg, err := ac.Messages.New(ctx, anthropic.MessageNewParams{Model: "claude-test", MaxTokens: 10,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}})
	if err != nil || len(msg.Content) == 0 {
		t.Fatalf("%v %+v", err, msg)
	}
	if len(statuses) < 2 || statuses[0] != http.StatusTooManyRequests || statuses[len(statuses)-1] != 200 {
		t.Fatalf("the client saw %v, want a 429 and then a 200", statuses)
	}
	if waited := time.Since(start); waited < 500*time.Millisecond {
		t.Errorf("the client retried after %v: it did not wait for Retry-After", waited)
	}
}
