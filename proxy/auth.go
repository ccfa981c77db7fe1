package proxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"net/url"
	"strings"
)

// Headers in which clients send their credential: each provider's SDK uses one of them.
// All of them are removed before a request goes upstream.
var credentialHeaders = []string{"Authorization", "X-Api-Key", "X-Goog-Api-Key", "Api-Key"}

// ExtractKey finds the client's credential (API.md 1.1, plus Azure's api-key header): the
// first non-empty of the query parameter key, "Authorization: Bearer <k>" (exact,
// case-sensitive prefix), X-Api-Key, X-Goog-Api-Key and Api-Key. rawQuery is the client's
// query with every key parameter removed (re-encoded only when there was one).
func ExtractKey(r *http.Request) (key, rawQuery string) {
	rawQuery = r.URL.RawQuery
	if strings.Contains(rawQuery, "key") || strings.Contains(rawQuery, "%") {
		key, rawQuery = cutKeyParams(rawQuery)
	}
	if key != "" {
		return key, rawQuery
	}
	if a := r.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") {
		if k := a[len("Bearer "):]; k != "" {
			return k, rawQuery
		}
	}
	for _, h := range credentialHeaders[1:] {
		if k := r.Header.Get(h); k != "" {
			return k, rawQuery
		}
	}
	return "", rawQuery
}

// cutKeyParams removes every key parameter from a raw query and answers the first one's
// value. The other parameters are kept byte for byte; a malformed escape elsewhere in the
// query (or in a key parameter) does not keep a key in what goes upstream.
func cutKeyParams(rawQuery string) (key, rest string) {
	var kept strings.Builder
	found := false
	for q := rawQuery; q != ""; {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		name, value, _ := strings.Cut(pair, "=")
		if n, err := url.QueryUnescape(name); name == "key" || (err == nil && n == "key") {
			if !found {
				found = true
				if v, err := url.QueryUnescape(value); err == nil {
					key = v
				} else {
					key = value
				}
			}
			continue
		}
		if kept.Len() > 0 {
			kept.WriteByte('&')
		}
		kept.WriteString(pair)
	}
	if !found {
		return "", rawQuery
	}
	return key, kept.String()
}

type digest = [sha256.Size]byte

func digestsOf(keys []string) []digest {
	out := make([]digest, len(keys))
	for i, k := range keys {
		out[i] = sha256.Sum256([]byte(k))
	}
	return out
}

// keyAllowed compares the digest of a client key with every allowed digest, always all of
// them and without an early exit, so the time taken tells nothing about the keys. It
// answers the index of the first list that holds the key, or -1.
func keyAllowed(d *digest, lists ...[]digest) int {
	in := -1
	for li := len(lists) - 1; li >= 0; li-- {
		ok := 0
		for i := range lists[li] {
			ok |= subtle.ConstantTimeCompare(d[:], lists[li][i][:])
		}
		in = subtle.ConstantTimeSelect(ok, li, in)
	}
	return in
}
