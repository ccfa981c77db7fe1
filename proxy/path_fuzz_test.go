package proxy

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzProxyPath is the resolution of the client's path after /proxy/{group}: it never
// panics; a path it accepts has no "." or ".." segment left, in any escaping or with
// either separator, so no upstream can be led above the group's base path; and resolving
// it again changes nothing.
func FuzzProxyPath(f *testing.F) {
	for _, s := range []string{"/v1/chat/completions", "/x/../y", "/x/%2e%2e/y", `/x\..\y`, "/..", "/...", "/a/./b/", "/%zz/../a", "/a%2fb/../c", "/v1beta/models/m:generateContent"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rest string) {
		clean, ok := cleanRest(rest)
		if !ok {
			return
		}
		dec, err := url.PathUnescape(clean)
		if err != nil {
			dec = clean
		}
		for _, seg := range strings.FieldsFunc(dec, func(r rune) bool { return r == '/' || r == '\\' }) {
			if seg == "." || seg == ".." {
				t.Fatalf("%q resolved to %q, which keeps a dot segment", rest, clean)
			}
		}
		if again, ok := cleanRest(clean); !ok || again != clean {
			t.Fatalf("%q resolved to %q, then to %q (%v)", rest, clean, again, ok)
		}
	})
}
