package httpapi

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
)

// contentSecurityPolicy is sent with every page and asset of the dashboard. It allows
// the page to load and call nothing but its own origin: no script, style sheet, font,
// image or connection from another host, no inline script, no plugins, no framing by
// other sites. Inline styles stay allowed because the component library writes its
// styles into <style> elements at run time; data: images cover icons drawn inline.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; " +
	"object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'self'"

// Cache policies: the build names every asset under /assets/ after a hash of its content,
// so a browser may keep one for a year; index.html names the current assets and must be
// fetched again each time.
const (
	cacheImmutable  = "public, max-age=31536000, immutable"
	cacheRevalidate = "no-cache"
	cacheShort      = "public, max-age=3600"
)

// notBuiltPage is served in place of the dashboard by a binary built without it.
const notBuiltPage = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>gpt-load</title></head>
<body><h1>gpt-load</h1><p>This binary was built without the web dashboard. Build it with
<code>go tool task build</code> (or run it with <code>go tool task run</code>), which builds the
dashboard first. The admin API under <code>/api</code> and the proxy work as usual.</p></body></html>
`

// spa serves the embedded dashboard: its files as they are, and index.html for every
// other path it is asked for, so that the client routes (/keys, /logs, ...) load the
// application, which then shows the page. It never answers for /api, /proxy, /health or
// /metrics: those keep the JSON 404 of API.md 0.1.
type spa struct {
	files fs.FS
	built bool
	// compressed holds the gzip form of text files, made on first request.
	mu         sync.Mutex
	compressed map[string]*staticFile
	plain      map[string]*staticFile
}

type staticFile struct {
	body []byte
	etag string
}

func newSPA(files fs.FS) *spa {
	s := &spa{files: files, compressed: map[string]*staticFile{}, plain: map[string]*staticFile{}}
	if files != nil {
		if st, err := fs.Stat(files, "index.html"); err == nil && !st.IsDir() {
			s.built = true
		}
	}
	return s
}

// reserved reports whether p belongs to the server rather than to the dashboard.
func reserved(p string) bool {
	for _, prefix := range []string{"/api", "/proxy", "/health", "/metrics"} {
		if p == prefix || strings.HasPrefix(p, prefix+"/") {
			return true
		}
	}
	return false
}

func (s *spa) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if reserved(r.URL.Path) || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		notFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	if !s.built {
		h.Set("Cache-Control", cacheRevalidate)
		h.Set(headerContentType, "text/html; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			w.Write([]byte(notBuiltPage))
		}
		return
	}
	name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	cache := cacheShort
	switch {
	case name == "" || name == "index.html":
		name, cache = "index.html", cacheRevalidate
	case strings.HasPrefix(name, "assets/"):
		cache = cacheImmutable
	}
	gz := acceptsGzip(r)
	f, err := s.file(name, gz)
	if errors.Is(err, fs.ErrNotExist) {
		if strings.HasPrefix(name, "assets/") || path.Ext(name) != "" {
			// A missing asset (an old build's, or a typo) is a 404, not the page: a
			// script tag must never receive HTML.
			h.Set("Content-Security-Policy", apiContentSecurityPolicy)
			notFound(w, r)
			return
		}
		name, cache = "index.html", cacheRevalidate
		f, err = s.file(name, gz)
	}
	if err != nil {
		fail(w, r, err)
		return
	}
	h.Set("Cache-Control", cache)
	h.Set(headerContentType, contentType(name))
	h.Add("Vary", "Accept-Encoding")
	h.Set("ETag", f.etag)
	if f.etag != "" && r.Header.Get("If-None-Match") == f.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if gz && compressible(name) {
		h.Set("Content-Encoding", "gzip")
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}

// file returns a file's body, gzipped when gz and the file is text, with its ETag.
func (s *spa) file(name string, gz bool) (*staticFile, error) {
	gz = gz && compressible(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	cache := s.plain
	if gz {
		cache = s.compressed
	}
	if f, ok := cache[name]; ok {
		return f, nil
	}
	st, err := fs.Stat(s.files, name)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fs.ErrNotExist
	}
	body, err := fs.ReadFile(s.files, name)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:12])
	if gz {
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
		zw.Write(body)
		zw.Close()
		body = b.Bytes()
		etag += "-gz"
	}
	f := &staticFile{body: body, etag: etag + `"`}
	cache[name] = f
	return f, nil
}

func acceptsGzip(r *http.Request) bool {
	for part := range strings.SplitSeq(r.Header.Get("Accept-Encoding"), ",") {
		enc, params, _ := strings.Cut(part, ";")
		if !strings.EqualFold(strings.TrimSpace(enc), "gzip") {
			continue
		}
		q, found := strings.CutPrefix(strings.TrimSpace(params), "q=")
		if !found {
			return true
		}
		v, err := strconv.ParseFloat(q, 64)
		return err == nil && v > 0
	}
	return false
}

func compressible(name string) bool {
	switch path.Ext(name) {
	case ".html", ".js", ".mjs", ".css", ".svg", ".json", ".txt", ".map":
		return true
	}
	return false
}

func contentType(name string) string {
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}
