package proxy_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"gpt-load/proxy"
)

func TestExtractKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, query string
		hdr         map[string]string
		key, rest   string
	}{
		{"none", "a=1", nil, "", "a=1"},
		{"query first", "key=q&a=1", map[string]string{"Authorization": "Bearer b"}, "q", "a=1"},
		{"query removed even when empty", "key=&a=1", map[string]string{"Authorization": "Bearer b"}, "b", "a=1"},
		{"bearer", "", map[string]string{"Authorization": "Bearer b", "X-Api-Key": "x"}, "b", ""},
		{"bearer is case-sensitive", "", map[string]string{"Authorization": "bearer b", "X-Api-Key": "x"}, "x", ""},
		{"empty bearer falls through", "", map[string]string{"Authorization": "Bearer ", "X-Goog-Api-Key": "g"}, "g", ""},
		{"x-api-key before goog", "", map[string]string{"X-Api-Key": "x", "X-Goog-Api-Key": "g"}, "x", ""},
		{"azure api-key", "api-version=1", map[string]string{"Api-Key": "az"}, "az", "api-version=1"},
		{"keyword lookalike kept", "monkey=1", nil, "", "monkey=1"},
		{"a malformed escape elsewhere keeps nothing", "a=%zz&key=q&b=2", map[string]string{"Authorization": "Bearer b"}, "q", "a=%zz&b=2"},
		{"a malformed key escape is still cut", "key=q%zz&a=1", map[string]string{"Authorization": "Bearer b"}, "q%zz", "a=1"},
		{"an escaped name is a key too", "k%65y=q&a=1", nil, "q", "a=1"},
		{"every key parameter is cut, the first wins", "key=q&a=1&key=r", nil, "q", "a=1"},
		{"order and escapes of the rest kept", "z=1&key=q&a=%2F", nil, "q", "z=1&a=%2F"},
		{"a key without a value is cut", "key&a=1", map[string]string{"Authorization": "Bearer b"}, "b", "a=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := http.NewRequest("GET", "http://x/proxy/g/v1?"+tc.query, nil)
			for k, v := range tc.hdr {
				r.Header.Set(k, v)
			}
			key, rest := proxy.ExtractKey(r)
			if key != tc.key || rest != tc.rest {
				t.Fatalf("got %q %q, want %q %q", key, rest, tc.key, tc.rest)
			}
		})
	}
}

// FuzzExtractKey: whatever the query and headers, the returned query never carries a key
// parameter, and a key found in the query is the one the query held.
func FuzzExtractKey(f *testing.F) {
	f.Add("key=abc&x=1", "Bearer zzz", "h")
	f.Add("a=%zz&key=1", "", "")
	f.Add("key=a;key=b", "Bearer", "x")
	f.Fuzz(func(t *testing.T, query, auth, xkey string) {
		r := &http.Request{URL: &url.URL{Path: "/proxy/g/x", RawQuery: query}, Header: http.Header{}}
		if auth != "" {
			r.Header["Authorization"] = []string{auth}
		}
		if xkey != "" {
			r.Header["X-Api-Key"] = []string{xkey}
		}
		key, rest := proxy.ExtractKey(r)
		if q, err := url.ParseQuery(rest); err == nil && q.Has("key") {
			t.Fatalf("key left in query %q", rest)
		}
		orig, err := url.ParseQuery(query)
		if err == nil && orig.Get("key") != "" && key != orig.Get("key") {
			t.Fatalf("query key %q, got %q", orig.Get("key"), key)
		}
		if key == "" && err == nil && orig.Get("key") == "" {
			if strings.HasPrefix(auth, "Bearer ") && len(auth) > 7 {
				t.Fatalf("bearer %q missed", auth)
			}
			if xkey != "" {
				t.Fatalf("x-api-key %q missed", xkey)
			}
		}
	})
}
