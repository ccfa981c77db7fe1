package proxy

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"gpt-load/domain"
)

func TestWRRIsSmooth(t *testing.T) {
	t.Parallel()
	w := newWRR([]int{5, 1, 1})
	var got []int
	for range 7 {
		got = append(got, w.next())
	}
	want := []int{0, 0, 1, 0, 2, 0, 0}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("sequence %v, want %v", got, want)
		}
	}
	big := newWRR([]int{1 << 30, 1})
	seen := map[int]int{}
	for range len(big.seq) {
		seen[big.next()]++
	}
	if seen[1] == 0 || len(big.seq) > maxWRRPeriod+2 {
		t.Fatalf("scaled wrr: %v over %d", seen, len(big.seq))
	}
	if newWRR(nil).next() != -1 {
		t.Fatal("empty wrr")
	}
	two := newWRR([]int{1, 1})
	if a, b := two.next(), two.nextExcept(0); a != 0 || b != 1 {
		t.Fatalf("nextExcept: %d %d", a, b)
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		hdr  string
		body string
		want time.Duration
		ok   bool
	}{
		{"30", "", 30 * time.Second, true},
		{now.Add(time.Minute).Format(http.TimeFormat), "", time.Minute, true},
		{now.Add(-time.Minute).Format(http.TimeFormat), "", 0, true},
		{"", `{"error":{"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay": "12s"}]}}`, 12 * time.Second, true},
		{"soon", "", 0, false},
		{"", "", 0, false},
	} {
		h := http.Header{}
		if tc.hdr != "" {
			h.Set("Retry-After", tc.hdr)
		}
		got, ok := retryAfter(h, []byte(tc.body), now)
		if ok != tc.ok || ok && got.Sub(now) != tc.want {
			t.Errorf("%q %q: %v %v", tc.hdr, tc.body, got.Sub(now), ok)
		}
	}
}

func TestRateLimitBackoffDoubles(t *testing.T) {
	t.Parallel()
	h := newHealth(&flakyLog{}, 16, zerolog.Nop())
	defer h.close()
	now := time.Now()
	k := poolKey{ID: 7}
	u1 := h.rateLimited(1, k, 429, "", http.Header{}, nil, now, time.Second, time.Minute)
	u2 := h.rateLimited(1, k, 429, "", http.Header{}, nil, u1, time.Second, time.Minute)
	if u1.Sub(now) != time.Second || u2.Sub(u1) != 2*time.Second {
		t.Fatalf("backoff %v then %v", u1.Sub(now), u2.Sub(u1))
	}
	h.succeeded(1, k)
	u3 := h.rateLimited(1, k, 429, "", http.Header{}, nil, u2, time.Second, time.Minute)
	if u3.Sub(u2) != time.Second {
		t.Fatalf("backoff after a success: %v", u3.Sub(u2))
	}
}

func TestHeaderRules(t *testing.T) {
	t.Parallel()
	req := &http.Request{URL: &url.URL{}, Header: http.Header{"X-Old": {"1"}, "Authorization": {"Bearer k"}}}
	now := time.UnixMilli(1700000000123)
	applyHeaderRules(req, []domain.HeaderRule{
		{Key: "X-Ip", Value: "${CLIENT_IP}|${GROUP_NAME}|${TIMESTAMP_MS}|${TIMESTAMP_S}|${NOPE}|${", Action: "set"},
		{Key: "X-Old", Action: "remove"},
		{Key: "Authorization", Value: "Token ${API_KEY}", Action: "set"},
		{Key: "Host", Value: "example.org", Action: "set"},
		{Key: "X-Bad", Value: "${API_KEY}", Action: "set"},
		{Key: "X-Other", Value: "v", Action: "append"},
	}, headerVars{clientIP: "10.0.0.1", group: "g", key: "sk\r\nx", now: now})
	if got := req.Header.Get("X-Ip"); got != "10.0.0.1|g|1700000000123|1700000000|${NOPE}|${" {
		t.Fatalf("X-Ip %q", got)
	}
	if req.Header.Get("X-Old") != "" || req.Host != "example.org" || req.Header.Get("X-Other") != "" {
		t.Fatalf("%v %q", req.Header, req.Host)
	}
	if _, ok := req.Header["X-Bad"]; ok {
		t.Fatal("a value with CR/LF was set")
	}
	if req.Header.Get("Authorization") != "Bearer k" {
		// The key holds CR/LF here, so the override must not be applied.
		t.Fatalf("Authorization %q", req.Header.Get("Authorization"))
	}
}

// FuzzHeaderRules: applying any rules never panics and never produces a header value
// that cannot be sent.
func FuzzHeaderRules(f *testing.F) {
	f.Add("x-a", "${API_KEY}-${CLIENT_IP}", "set", "key", "1.2.3.4")
	f.Add("Host", "${GROUP_NAME}", "set", "k\n", "")
	f.Add("x-b", "", "remove", "", "")
	f.Fuzz(func(t *testing.T, key, value, action, apiKey, ip string) {
		rules, err := domain.NormalizeHeaderRules([]domain.HeaderRule{{Key: key, Value: value, Action: action}})
		if err != nil {
			return
		}
		req := &http.Request{URL: &url.URL{}, Header: http.Header{}}
		applyHeaderRules(req, rules, headerVars{clientIP: ip, group: "g", key: apiKey, now: time.Now()})
		for k, vs := range req.Header {
			for _, v := range vs {
				if strings.ContainsAny(v, "\r\n\x00") {
					t.Fatalf("header %s = %q", k, v)
				}
			}
		}
		if strings.ContainsAny(req.Host, "\r\n\x00") {
			t.Fatalf("host %q", req.Host)
		}
	})
}

func TestSplitPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, name, rest string }{
		{"/proxy/g/v1/x", "g", "/v1/x"},
		{"/g/v1", "g", "/v1"},
		{"/proxy/g", "g", ""},
	} {
		n, r, ok := splitPath(tc.in)
		if !ok || n != tc.name || r != tc.rest {
			t.Fatalf("%q: %q %q %v", tc.in, n, r, ok)
		}
	}
	if _, _, ok := splitPath("/proxy/"); ok {
		t.Fatal("empty group accepted")
	}
}

func TestCleanRest(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in, want string
		ok       bool
	}{
		{"/v1/chat/completions", "/v1/chat/completions", true},
		{"/v1beta/models/gemini-1.5-pro:generateContent", "/v1beta/models/gemini-1.5-pro:generateContent", true},
		{"/v1/models/a%2Fb", "/v1/models/a%2Fb", true},
		{"", "", true},
		{"/v1/x/../chat/completions", "/v1/chat/completions", true},
		{"/v1/./chat/./completions", "/v1/chat/completions", true},
		{"/v1/x/%2e%2e/chat", "/v1/chat", true},
		{"/v1/x/%2E./chat/", "/v1/chat/", true},
		{"/v1/models/m:generate/..", "/v1/models/", true},
		{"/x/../../../api/settings", "", false},
		{"/x/%2e%2e%2f%2e%2e%2fapi/settings", "", false},
		{"/x/..%2F..%2fapi", "", false},
		{`/x\..\..\api`, "", false},
		{"/x/..%5c..%5capi", "", false},
		{"/..", "", false},
		{"/...", "/...", true},
		{"/v1/a..b/c", "/v1/a..b/c", true},
	}
	for _, tc := range cases {
		got, ok := cleanRest(tc.in)
		if ok != tc.ok || ok && got != tc.want {
			t.Errorf("cleanRest(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
