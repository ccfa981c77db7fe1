package httpapi_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"gpt-load/domain"
	"gpt-load/httpapi"
)

// TestAdminKeyAsProxyKeyWarns: a global or group proxy key equal to the admin key is a
// high warning of its own on the dashboard, named after the key's place; other keys are
// not.
func TestAdminKeyAsProxyKeyWarns(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{seedSettings: func(s *domain.Settings) { s.ProxyKeys = "sk-other-Proxy-0123456789abcdef," + testAuthKey }})
	n.group("g", `,"proxy_keys":"`+testAuthKey+`"`)
	n.group("h", `,"proxy_keys":"sk-h-Proxy-0123456789abcdefXYZ"`)
	var reuse []string
	for _, w := range list(t, field(t, n.do(http.MethodGet, "/api/dashboard/stats", nil, "Accept-Language", "en").data(t), "security_warnings")) {
		if msg := fmt.Sprint(field(t, w, "message")); strings.Contains(msg, "is the admin key") {
			reuse = append(reuse, fmt.Sprint(field(t, w, "type"), "/", field(t, w, "severity")))
			if strings.Contains(msg, testAuthKey) || strings.Contains(fmt.Sprint(field(t, w, "suggestion")), testAuthKey) {
				t.Errorf("the warning shows the key: %v", w)
			}
		}
	}
	if want := "Global Proxy Key #2/high,Group Proxy Key [g] #1/high"; strings.Join(reuse, ",") != want {
		t.Errorf("admin-key warnings %v, want %s", reuse, want)
	}
}

// TestPanicLogShowsNoSecret: a handler that panics with a value holding a key answers
// 500, and the log line shows the panic's type and stack but not the value; a runtime
// error is shown as it is.
func TestPanicLogShowsNoSecret(t *testing.T) {
	t.Parallel()
	const secret = "sk-panic-Secret-0123456789"
	var out bytes.Buffer
	var lock sync.Mutex
	n := startNode(t, nodeOpts{proxy: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "index") {
			var xs []int
			_ = xs[len(r.URL.Path)]
		}
		panic(fmt.Errorf("upstream https://u.example/v1?key=%s failed", secret))
	}), deps: func(d *httpapi.Deps) {
		d.Log = zerolog.New(zerolog.SyncWriter(lockedWriter{&lock, &out}))
	}})
	for _, path := range []string{"/proxy/g/v1/chat", "/proxy/g/index"} {
		r := n.send(http.MethodPost, path, "{}")
		if r.code != http.StatusInternalServerError {
			t.Errorf("%s: %d %s", path, r.code, r.body)
		}
	}
	lock.Lock()
	logged := out.String()
	lock.Unlock()
	if strings.Contains(logged, secret) || !strings.Contains(logged, "a value of type *errors.errorString") {
		t.Errorf("panic log %s", logged)
	}
	if !strings.Contains(logged, "index out of range") || !strings.Contains(logged, "stack") {
		t.Errorf("the runtime error or the stack is missing: %s", logged)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestSecurityHeadersOnEveryAnswer: admin answers, health, proxied answers, errors and the
// dashboard carry the security headers; everything but the dashboard's pages has the
// policy that loads nothing, and admin answers are not cached.
func TestSecurityHeadersOnEveryAnswer(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{proxy: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<script>alert(1)</script>"))
	})})
	for _, c := range []struct {
		method, path string
		noStore      bool
	}{
		{"GET", "/api/groups", true}, {"GET", "/api/nothing", true}, {"POST", "/api/auth/login", true},
		{"GET", "/health", false}, {"POST", "/proxy/g/v1/chat/completions", false}, {"GET", "/nothing-here", false},
	} {
		r := n.do(c.method, c.path, nil)
		h := r.header
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "SAMEORIGIN" ||
			h.Get("Referrer-Policy") == "" || h.Get("Permissions-Policy") == "" {
			t.Errorf("%s %s: security headers missing: %v", c.method, c.path, h)
		}
		if csp := h.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors") {
			t.Errorf("%s %s: Content-Security-Policy %q", c.method, c.path, csp)
		}
		if got := h.Get("Cache-Control") == "no-store"; got != c.noStore {
			t.Errorf("%s %s: Cache-Control %q", c.method, c.path, h.Get("Cache-Control"))
		}
	}
}
