package httpapi

import (
	"container/list"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
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

// requireAdmin lets through requests carrying the admin key; others get 401. A client
// backing off after wrong keys (loginThrottle) gets 429 with Retry-After, whatever it
// sends: a guess that happens to be right is not let through early. A request without
// any key is no guess and is not counted (the dashboard asks before its user logs in).
func (a *admin) requireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip := clientIP(r)
		if wait := a.throttle.wait(ip); wait > 0 {
			backingOff(w, wait)
			writeJSON(w, http.StatusTooManyRequests, errorBody{Code: codeTooMany, Message: tr(r, msgLoginBackoff, retrySeconds(wait))})
			return
		}
		got := credential(r)
		if !a.auth.matches(got) {
			if got != "" {
				a.throttle.failed(ip)
			}
			writeJSON(w, http.StatusUnauthorized, errorBody{Code: codeUnauthorized, Message: tr(r, msgAuthFailed)})
			return
		}
		a.throttle.succeeded(ip)
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
	if errors.As(err, &ae) && len(ae.fields) > 0 {
		// A field given twice, unknown or of the wrong type: named.
		writeJSON(w, http.StatusBadRequest, loginBody{Message: tr(r, msgInvalidRequest) + " (" + ae.message(langOf(r)) + ")"})
		return
	}
	if err != nil || body.AuthKey == "" {
		writeJSON(w, http.StatusBadRequest, loginBody{Message: tr(r, msgInvalidRequest)})
		return
	}
	ip := clientIP(r)
	if wait := a.throttle.wait(ip); wait > 0 {
		backingOff(w, wait)
		writeJSON(w, http.StatusTooManyRequests, loginBody{Message: tr(r, msgLoginBackoff, retrySeconds(wait))})
		return
	}
	if !a.auth.matches(body.AuthKey) {
		a.throttle.failed(ip)
		writeJSON(w, http.StatusUnauthorized, loginBody{Message: tr(r, msgAuthFailed)})
		return
	}
	a.throttle.succeeded(ip)
	writeJSON(w, http.StatusOK, loginBody{Success: true, Message: tr(r, msgAuthSuccess)})
}

// LoginThrottle is the back-off of clients that send wrong admin keys, to login and to
// every route behind the admin key. Each client address has Free wrong keys; after them
// it must wait First before its next try, then twice as long after each further wrong
// key, up to Max, and is answered 429 with Retry-After meanwhile. The right key ends the
// back-off. A client is its connection's address (an IPv6 client its /64: one host is
// given a whole /64); forwarded-for headers are not trusted, so behind a reverse proxy
// every client shares one back-off.
type LoginThrottle struct {
	Free  int           // wrong keys without back-off (default 5)
	First time.Duration // the first wait (default 1 s)
	Max   time.Duration // the longest wait (default 5 min)
	// Clients bounds the addresses remembered (default 10,000); beyond it the one heard
	// from longest ago is forgotten, so many addresses cannot grow memory without bound.
	Clients int
}

func (c LoginThrottle) withDefaults() LoginThrottle {
	if c.Free <= 0 {
		c.Free = 5
	}
	if c.First <= 0 {
		c.First = time.Second
	}
	if c.Max <= 0 {
		c.Max = 5 * time.Minute
	}
	if c.Clients <= 0 {
		c.Clients = 10_000
	}
	return c
}

// throttle keeps the wrong-key count of recent clients, least recently heard from last.
type throttle struct {
	cfg     LoginThrottle
	now     func() time.Time
	mu      sync.Mutex
	order   *list.List // of *failures, most recent first
	clients map[string]*list.Element
}

type failures struct {
	client string
	n      int
	until  time.Time // no try before this
}

func newThrottle(cfg LoginThrottle, now func() time.Time) *throttle {
	return &throttle{cfg: cfg.withDefaults(), now: now, order: list.New(), clients: map[string]*list.Element{}}
}

// wait is how long client must still wait before its next try (0: it may try now).
func (t *throttle) wait(client string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, found := t.clients[client]
	if !found {
		return 0
	}
	return max(0, e.Value.(*failures).until.Sub(t.now()))
}

// failed counts a wrong key of client and starts its back-off once its free tries are
// spent.
func (t *throttle) failed(client string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, found := t.clients[client]
	if found {
		t.order.MoveToFront(e)
	} else {
		e = t.order.PushFront(&failures{client: client})
		t.clients[client] = e
		if t.order.Len() > t.cfg.Clients {
			oldest := t.order.Back()
			t.order.Remove(oldest)
			delete(t.clients, oldest.Value.(*failures).client)
		}
	}
	f := e.Value.(*failures)
	f.n++
	if over := f.n - t.cfg.Free; over > 0 {
		wait := t.cfg.Max
		if over <= 30 && t.cfg.First<<(over-1) < t.cfg.Max {
			wait = t.cfg.First << (over - 1)
		}
		f.until = t.now().Add(wait)
	}
}

// succeeded forgets client's wrong keys.
func (t *throttle) succeeded(client string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, found := t.clients[client]; found {
		t.order.Remove(e)
		delete(t.clients, client)
	}
}

// backingOff sets the Retry-After of a 429 that asks to wait d.
func backingOff(w http.ResponseWriter, d time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(retrySeconds(d)))
}

// retrySeconds is d in whole seconds, rounded up.
func retrySeconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}

// clientIP is the address of r's connection (X-Forwarded-For is not trusted): an IPv4
// address as it is, an IPv6 address as its /64.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.To4() != nil {
		return host
	}
	return (&net.IPNet{IP: ip.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
}
