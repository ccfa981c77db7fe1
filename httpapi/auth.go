package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
)

// credential reads the credential of a request as gpt-load does (API.md 1.1), first
// non-empty source wins: the query parameter key (removed from the URL, the query
// re-encoded), "Authorization: Bearer <k>", X-Api-Key, X-Goog-Api-Key.
func credential(r *http.Request) string {
	if q := r.URL.Query(); q.Has("key") {
		k := q.Get("key")
		q.Del("key")
		r.URL.RawQuery = q.Encode()
		if k != "" {
			return k
		}
	}
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		if k := strings.TrimPrefix(h, "Bearer "); k != "" {
			return k
		}
	}
	if k := r.Header.Get("X-Api-Key"); k != "" {
		return k
	}
	return r.Header.Get("X-Goog-Api-Key")
}

// authKey checks a credential against AUTH_KEY in constant time: both sides are hashed
// first, so neither the content nor the length of the key leaks through timing.
type authKey struct {
	sum [32]byte
	set bool
}

func newAuthKey(k string) authKey {
	return authKey{sum: sha256.Sum256([]byte(k)), set: k != ""}
}

func (k authKey) matches(got string) bool {
	sum := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(sum[:], k.sum[:]) == 1 && k.set && got != ""
}

// requireAdmin lets through requests carrying the admin key; others get 401.
func (a *admin) requireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.auth.matches(credential(r)) {
			writeJSON(w, http.StatusUnauthorized, errorBody{Code: codeUnauthorized, Message: tr(r, msgAuthFailed)})
			return
		}
		next.ServeHTTP(w, r)
	})
}

type loginBody struct {
	Success bool   `json:"success"`
	Message string `json:"message"`
}

// login checks an admin key without a session (API.md 1.2): the dashboard keeps the key
// and sends it with every call.
func (a *admin) login(w http.ResponseWriter, r *http.Request) {
	var body struct {
		AuthKey string `json:"auth_key"`
	}
	err := decodeJSON(w, r, &body)
	var ae *apiError
	if errors.As(err, &ae) && ae.status == http.StatusRequestEntityTooLarge {
		loginTooLarge(w, r, maxLoginBody)
		return
	}
	if err != nil || body.AuthKey == "" {
		writeJSON(w, http.StatusBadRequest, loginBody{Message: tr(r, msgInvalidRequest)})
		return
	}
	if !a.auth.matches(body.AuthKey) {
		writeJSON(w, http.StatusUnauthorized, loginBody{Message: tr(r, msgAuthFailed)})
		return
	}
	writeJSON(w, http.StatusOK, loginBody{Success: true, Message: tr(r, msgAuthSuccess)})
}
