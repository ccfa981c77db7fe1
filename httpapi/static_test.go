package httpapi_test

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/rs/zerolog"

	"gpt-load/httpapi"
)

const (
	testIndex  = `<!doctype html><html><head><script type="module" src="/assets/index-abc123.js"></script></head><body><div id="app"></div></body></html>`
	testScript = `console.log("dashboard");`
)

func spaServer(t *testing.T, files fstest.MapFS) http.Handler {
	t.Helper()
	d := httpapi.Deps{Log: zerolog.Nop(), Ready: readiness{caughtUp: true}}
	if files != nil {
		d.SPA = files
	}
	return httpapi.New(d)
}

func builtSPA() fstest.MapFS {
	return fstest.MapFS{
		"index.html":              {Data: []byte(testIndex)},
		"assets/index-abc123.js":  {Data: []byte(strings.Repeat(testScript, 50))},
		"favicon.svg":             {Data: []byte(`<svg xmlns="http://www.w3.org/2000/svg"/>`)},
		".keep":                   {Data: []byte("keep")},
		"assets/index-abc123.css": {Data: []byte(`body{margin:0}`)},
	}
}

func get(t *testing.T, h http.Handler, method, target string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestSPAServesPagesAndAssets(t *testing.T) {
	t.Parallel()
	h := spaServer(t, builtSPA())
	for _, tc := range []struct {
		name, target string
		wantBody     string
		wantType     string
		wantCache    string
	}{
		{"root", "/", testIndex, "text/html; charset=utf-8", "no-cache"},
		{"index itself", "/index.html", testIndex, "text/html; charset=utf-8", "no-cache"},
		{"client route", "/keys", testIndex, "text/html; charset=utf-8", "no-cache"},
		{"nested client route with query", "/logs/x?group=1", testIndex, "text/html; charset=utf-8", "no-cache"},
		{"login", "/login", testIndex, "text/html; charset=utf-8", "no-cache"},
		{"hashed asset", "/assets/index-abc123.js", strings.Repeat(testScript, 50), "text/javascript; charset=utf-8", "public, max-age=31536000, immutable"},
		{"other file", "/favicon.svg", `<svg xmlns="http://www.w3.org/2000/svg"/>`, "image/svg+xml", "public, max-age=3600"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := get(t, h, http.MethodGet, tc.target, nil)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d, body %s", rec.Code, rec.Body)
			}
			if rec.Body.String() != tc.wantBody {
				t.Fatalf("body %q, want %q", rec.Body, tc.wantBody)
			}
			if got := rec.Header().Get("Content-Type"); got != tc.wantType {
				t.Errorf("Content-Type %q, want %q", got, tc.wantType)
			}
			if got := rec.Header().Get("Cache-Control"); got != tc.wantCache {
				t.Errorf("Cache-Control %q, want %q", got, tc.wantCache)
			}
			csp := rec.Header().Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'self'", "script-src 'self';", "connect-src 'self';", "object-src 'none'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
				}
			}
			if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("security headers missing: %v", rec.Header())
			}
		})
	}
}

// The dashboard never shadows the server's own routes: they keep the JSON 404 of API.md
// 0.1, and a missing asset is a 404 rather than the page.
func TestSPANeverShadowsServerRoutes(t *testing.T) {
	t.Parallel()
	h := spaServer(t, builtSPA())
	for _, tc := range []struct{ method, target string }{
		{http.MethodGet, "/api"},
		{http.MethodGet, "/api/groups"},
		{http.MethodGet, "/api/unknown/thing"},
		{http.MethodGet, "/proxy"},
		{http.MethodGet, "/proxy/g/v1/models"},
		{http.MethodGet, "/metrics"},
		{http.MethodGet, "/health/x"},
		{http.MethodGet, "/assets/index-old.js"},
		{http.MethodGet, "/missing.png"},
		{http.MethodPost, "/keys"},
		{http.MethodDelete, "/"},
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			rec := get(t, h, tc.method, tc.target, nil)
			if rec.Code != http.StatusNotFound || strings.TrimSpace(rec.Body.String()) != `{"error":"Not Found"}` {
				t.Fatalf("status %d body %q, want the JSON 404", rec.Code, rec.Body)
			}
			if strings.Contains(rec.Header().Get("Content-Security-Policy"), "script-src") {
				t.Errorf("API answer carries the page's CSP")
			}
		})
	}
	if rec := get(t, h, http.MethodGet, "/health", nil); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "healthy") {
		t.Fatalf("/health: %d %s", rec.Code, rec.Body)
	}
}

func TestSPACompressesAndRevalidates(t *testing.T) {
	t.Parallel()
	h := spaServer(t, builtSPA())
	want := strings.Repeat(testScript, 50)
	rec := get(t, h, http.MethodGet, "/assets/index-abc123.js", http.Header{"Accept-Encoding": {"br, gzip;q=0.8"}})
	if rec.Header().Get("Content-Encoding") != "gzip" || !strings.Contains(rec.Header().Get("Vary"), "Accept-Encoding") {
		t.Fatalf("headers %v, want gzip", rec.Header())
	}
	if rec.Body.Len() >= len(want) {
		t.Errorf("gzip body %d bytes, plain %d", rec.Body.Len(), len(want))
	}
	zr, err := gzip.NewReader(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil || string(plain) != want {
		t.Fatalf("gunzipped %q, %v", plain, err)
	}
	etag := rec.Header().Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	again := get(t, h, http.MethodGet, "/assets/index-abc123.js", http.Header{"Accept-Encoding": {"gzip"}, "If-None-Match": {etag}})
	if again.Code != http.StatusNotModified || again.Body.Len() != 0 {
		t.Fatalf("revalidation: %d with %d bytes, want 304", again.Code, again.Body.Len())
	}
	for _, ae := range []string{"", "identity", "gzip;q=0"} {
		rec := get(t, h, http.MethodGet, "/assets/index-abc123.js", http.Header{"Accept-Encoding": {ae}})
		if rec.Header().Get("Content-Encoding") != "" || rec.Body.String() != want {
			t.Errorf("Accept-Encoding %q: encoding %q", ae, rec.Header().Get("Content-Encoding"))
		}
	}
	if rec := get(t, h, http.MethodHead, "/keys", nil); rec.Code != http.StatusOK || rec.Body.Len() != 0 {
		t.Errorf("HEAD /keys: %d, %d bytes", rec.Code, rec.Body.Len())
	}
}

func TestSPANotBuilt(t *testing.T) {
	t.Parallel()
	h := spaServer(t, fstest.MapFS{".keep": {Data: []byte("keep")}})
	rec := get(t, h, http.MethodGet, "/keys", nil)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "built without the web dashboard") {
		t.Fatalf("status %d body %s", rec.Code, rec.Body)
	}
	if rec.Header().Get("Content-Security-Policy") == "" {
		t.Error("no CSP on the notice")
	}
	if rec := get(t, h, http.MethodGet, "/api/x", nil); rec.Code != http.StatusNotFound {
		t.Errorf("/api/x: %d", rec.Code)
	}
	// Without a dashboard at all, every unknown path keeps the JSON 404.
	if rec := get(t, spaServer(t, nil), http.MethodGet, "/", nil); rec.Code != http.StatusNotFound {
		t.Errorf("no SPA: / answered %d", rec.Code)
	}
}
