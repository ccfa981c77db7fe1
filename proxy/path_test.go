package proxy_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
)

// rawRequest sends a request line exactly as given (no client-side path cleaning) and
// returns the status.
func rawRequest(t *testing.T, addr, target string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-global\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", target)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestDotSegmentsStayUnderTheGroupRoot: the client's path is resolved before it is joined
// to the upstream base; a path that climbs above the group's root is refused with 400 and
// never reaches the upstream.
func TestDotSegmentsStayUnderTheGroupRoot(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	up := newUpstream(t, nil)
	gid := e.group("dots", groupOpts{upstreams: []string{up.URL + "/base"}})
	e.addKeys(gid, "k")
	addr := strings.TrimPrefix(e.srv.URL, "http://")
	for _, target := range []string{
		"/proxy/dots/x/../../../api/settings",
		"/proxy/dots/x/%2e%2e%2f%2e%2e%2fapi/settings",
		"/proxy/dots/x/%2E%2e/%2e./api/settings",
		"/proxy/dots/x/..%5c..%5capi/settings",
		`/proxy/dots/x/..\..\api/settings`,
		"/proxy/dots/..",
	} {
		if st := rawRequest(t, addr, target); st != 400 {
			t.Errorf("%s: %d, want 400", target, st)
		}
	}
	if n := len(up.Calls()); n != 0 {
		t.Fatalf("%d calls reached the upstream: %+v", n, up.Calls())
	}
	for target, want := range map[string]string{
		"/proxy/dots/v1/x/../chat/completions":     "/base/v1/chat/completions",
		"/proxy/dots/v1/x/%2e%2E/chat/completions": "/base/v1/chat/completions",
		"/proxy/dots/v1/./chat/completions":        "/base/v1/chat/completions",
	} {
		n := len(up.Calls())
		if st := rawRequest(t, addr, target); st != 200 {
			t.Fatalf("%s: %d", target, st)
		}
		if got := up.Calls()[n].Path; got != want {
			t.Errorf("%s reached the upstream as %s, want %s", target, got, want)
		}
	}
}
