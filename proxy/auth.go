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
	if strings.Contains(rawQuery, "key=") {
		q, err := url.ParseQuery(rawQuery)
		if err == nil {
			if _, has := q["key"]; has {
				key = q.Get("key")
				q.Del("key")
				rawQuery = q.Encode()
			}
		}
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
