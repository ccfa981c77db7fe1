package proxy_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"gpt-load/domain"
	"gpt-load/events"
)

// TestEncodedKeyIsMasked: a Gemini key with '+', '/' and '=' travels query-escaped; an
// upstream error that echoes the request URL reaches neither the client, nor the key's
// last_error, nor the request log, nor the event log with the key in any form.
func TestEncodedKeyIsMasked(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	const key = "AIzaSy+Ab/cd=ef+gh/ij=="
	forms := []string{key, url.QueryEscape(key), url.PathEscape(key), strings.ToLower(url.QueryEscape(key))}
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
		msg := fmt.Sprintf("request %s?%s refused", r.URL.Path, r.URL.RawQuery)
		status := 401
		if strings.Contains(r.URL.Path, "bad-request") {
			status = 400
		}
		if strings.Contains(r.URL.Path, "zipped") {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			fmt.Fprintf(zw, `{"error":{"code":%d,"message":%q}}`, status, msg)
			zw.Close()
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			w.Write(b.Bytes())
			return
		}
		jsonError(w, status, msg)
	})
	gid := e.group("masked", groupOpts{channel: "gemini", upstreams: []string{up.URL}, config: map[string]any{"blacklist_threshold": 0}})
	e.addKeys(gid, key)
	for _, path := range []string{"/v1beta/models/m:generateContent", "/v1beta/models/bad-request:generateContent", "/v1beta/models/zipped:generateContent", "/v1beta/models/bad-request-zipped:generateContent"} {
		resp, body := e.do("POST", e.url("masked", path), "sk-global", `{"contents":[]}`, "Accept-Encoding", "gzip")
		if resp.StatusCode < 400 {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
		if enc := resp.Header.Get("Content-Encoding"); enc != "" {
			zr, err := gzip.NewReader(strings.NewReader(body))
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			var b bytes.Buffer
			b.ReadFrom(zr)
			body = b.String()
		}
		for _, f := range forms {
			if strings.Contains(body, f) {
				t.Fatalf("%s: the client got the key as %q: %s", path, f, body)
			}
		}
		if !strings.Contains(body, domain.MaskKey(key)) {
			t.Fatalf("%s: no masked key in %s", path, body)
		}
	}
	if len(up.Calls()) != 4 || up.Calls()[0].Key != key {
		t.Fatalf("upstream calls %+v", up.Calls())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.h.Flush(ctx)
	e.store.Flush(ctx)
	logs := e.waitLogs(func(l []domain.RequestLog) error {
		if len(l) < 4 {
			return fmt.Errorf("%d logs", len(l))
		}
		return nil
	})
	for _, l := range logs {
		for _, f := range forms {
			if strings.Contains(l.ErrorMessage, f) || strings.Contains(l.UpstreamAddr, f) {
				t.Fatalf("request log holds the key as %q: %+v", f, l)
			}
		}
	}
	if le := e.key(gid, key).LastError; le == "" || strings.Contains(le, url.QueryEscape(key)) {
		t.Fatalf("last_error %q", le)
	}
	// Nothing in the event log either (the upstream keys themselves are sealed there or
	// not, as the store decides; their escaped form must never appear).
	st, err := e.js.Stream(ctx, events.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := st.Info(ctx)
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		for _, f := range forms[1:] {
			if bytes.Contains(m.Data, []byte(f)) {
				t.Fatalf("event %d holds the key as %q: %s", seq, f, m.Data)
			}
		}
	}
}
