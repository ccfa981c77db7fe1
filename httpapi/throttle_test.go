package httpapi_test

import (
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gpt-load/httpapi"
)

// TestWrongAdminKeysBackOff: after its free tries a client address waits 1 s, 2 s, 4 s…
// (capped) before each further try, on login and on the routes behind the admin key
// alike, answered 429 with Retry-After meanwhile, even with the right key; another
// address is not held back; the right key ends the back-off; and the addresses
// remembered stay within their bound.
func TestWrongAdminKeysBackOff(t *testing.T) {
	t.Parallel()
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	advance := func(d time.Duration) { clock.Add(int64(d)) }
	n := startNode(t, nodeOpts{deps: func(d *httpapi.Deps) {
		d.Now = now
		d.LoginThrottle = httpapi.LoginThrottle{Free: 2, First: time.Second, Max: 4 * time.Second, Clients: 3}
	}})
	type try struct {
		status     int
		retryAfter string
	}
	login := func(from, key string) try {
		t.Helper()
		req := httptest.NewRequest("POST", "/api/auth/login", strings.NewReader(`{"auth_key":"`+key+`"}`))
		req.RemoteAddr = from
		rec := httptest.NewRecorder()
		n.h.ServeHTTP(rec, req)
		return try{rec.Code, rec.Header().Get("Retry-After")}
	}
	api := func(from, key string) try {
		t.Helper()
		req := httptest.NewRequest("GET", "/api/groups", nil)
		req.RemoteAddr = from
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		rec := httptest.NewRecorder()
		n.h.ServeHTTP(rec, req)
		return try{rec.Code, rec.Header().Get("Retry-After")}
	}
	want := func(what string, got, want try) {
		t.Helper()
		if got != want {
			t.Errorf("%s: %+v, want %+v", what, got, want)
		}
	}
	const attacker, admin = "203.0.113.7:4000", "198.51.100.2:5000"
	want("free try 1", login(attacker, "guess-1"), try{401, ""})
	want("free try 2", api(attacker, "guess-2"), try{401, ""})
	want("no key is no guess", api(attacker, ""), try{401, ""})
	want("third wrong key", login(attacker, "guess-3"), try{401, ""})
	want("backing off 1 s", login(attacker, testAuthKey), try{429, "1"})
	want("backing off, API", api(attacker, testAuthKey), try{429, "1"})
	want("another address", api(admin, testAuthKey), try{200, ""})
	want("another address logs in", login(admin, testAuthKey), try{200, ""})
	advance(time.Second)
	want("after 1 s", login(attacker, "guess-4"), try{401, ""})
	want("backing off 2 s", api(attacker, "guess-5"), try{429, "2"})
	advance(2 * time.Second)
	want("after 2 s", api(attacker, "guess-6"), try{401, ""})
	advance(3 * time.Second)
	want("still 1 s of 4", login(attacker, "guess-7"), try{429, "1"})
	advance(time.Second)
	want("after 4 s", login(attacker, "guess-8"), try{401, ""})
	want("capped at 4 s", login(attacker, "guess-9"), try{429, "4"})
	advance(4 * time.Second)
	want("the right key", login(attacker, testAuthKey), try{200, ""})
	want("reset: a free try", login(attacker, "guess-10"), try{401, ""})
	want("reset: another free try", login(attacker, "guess-11"), try{401, ""})

	// IPv6: the /64 is one client.
	for _, from := range []string{"[2001:db8:1:2::a]:1", "[2001:db8:1:2::b]:2", "[2001:db8:1:2:ffff::c]:3"} {
		login(from, "v6-guess")
	}
	want("a /64 shares its back-off", login("[2001:db8:1:2::d]:4", testAuthKey), try{429, "1"})
	want("another /64", login("[2001:db8:1:3::d]:4", testAuthKey), try{200, ""})

	// Bounded memory: with room for 3 clients, 3 newer addresses push the oldest out,
	// which then starts afresh.
	for i := 0; i < 3; i++ {
		login(attacker, "again")
	}
	want("backing off again", login(attacker, testAuthKey), try{429, "1"})
	for _, from := range []string{"192.0.2.1:1", "192.0.2.2:1", "192.0.2.3:1"} {
		login(from, "spray")
	}
	want("forgotten beyond the bound", login(attacker, testAuthKey), try{200, ""})
}
