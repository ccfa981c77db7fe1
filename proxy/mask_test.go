package proxy

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"gpt-load/domain"
)

var hexEscape = regexp.MustCompile(`%[0-9A-F]{2}`)

// keyForms are the forms in which the proxy sends a key (raw in a header, escaped in a
// Gemini query or path) and in which an upstream may echo it (JSON-escaped in an error
// body), with upper- and lower-case hex.
func keyForms(key string, mix uint64) []string {
	lower := func(s string) string { return hexEscape.ReplaceAllStringFunc(s, strings.ToLower) }
	js, _ := json.Marshal(key)
	var mixed strings.Builder
	for i := 0; i < len(key); i++ {
		switch (mix >> (2 * (i % 32))) & 3 {
		case 0:
			mixed.WriteByte(key[i])
		case 1:
			fmt.Fprintf(&mixed, "%%%02X", key[i])
		default:
			fmt.Fprintf(&mixed, "%%%02x", key[i])
		}
	}
	q, p := url.QueryEscape(key), url.PathEscape(key)
	return []string{key, q, p, lower(q), lower(p), string(js[1 : len(js)-1]), mixed.String()}
}

// texts are what an upstream or a transport error may say around a key.
func maskTexts(form string) []string {
	return []string{
		`Post "https://up.example/v1beta/models/m:generateContent?key=` + form + `&alt=sse": dial tcp 10.0.0.1:443: connect: connection refused`,
		`{"error":{"code":400,"message":"API key not valid: ` + form + `","status":"INVALID_ARGUMENT"}}`,
		form,
	}
}

func checkMasked(t *testing.T, key string, mix uint64) {
	t.Helper()
	for _, form := range keyForms(key, mix) {
		for _, text := range maskTexts(form) {
			out := mask(text, key)
			for _, f := range keyForms(key, 0) {
				if strings.Contains(out, f) {
					t.Fatalf("key %q sent as %q: %q still holds %q", key, form, out, f)
				}
			}
			if !strings.Contains(out, domain.MaskKey(key)) {
				t.Fatalf("key %q sent as %q: %q is not masked", key, form, out)
			}
		}
	}
}

func TestMaskEveryForm(t *testing.T) {
	t.Parallel()
	for _, key := range []string{
		"AIzaSy+Ab/cd=ef+gh/ij==", "sk-plain-0123456789", "key with spaces&more=1", `quo"te\back/slash`,
		"100%+sure%25", "<tag>&amp;",
	} {
		checkMasked(t, key, 0x5a5a5a5a5a5a5a5a)
	}
	if got := mask("nothing here", "AIzaSy+Ab/cd=ef"); got != "nothing here" {
		t.Fatalf("%q", got)
	}
}

// FuzzMask draws keys from the whole printable ASCII range.
func FuzzMask(f *testing.F) {
	f.Add("AIzaSy+Ab/cd=ef+gh/ij==", uint64(0))
	f.Add("%%%%%%%%%25", uint64(0x1234))
	f.Add(`\\\\\\\\""""`, uint64(7))
	f.Fuzz(func(t *testing.T, raw string, mix uint64) {
		var b strings.Builder
		for i := 0; i < len(raw); i++ {
			b.WriteByte(' ' + raw[i]%95) // printable ASCII: 0x20 to 0x7e
		}
		key := b.String()
		if len(key) < 9 || len(key) > 200 || strings.Contains(key, "*") {
			// Short keys mask to "****"; a key with '*' may mask to itself.
			t.Skip()
		}
		checkMasked(t, key, mix)
	})
}
