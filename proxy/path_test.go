package proxy_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"gpt-load/domain"
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

// TestClientSessionHeadersStayHome: the client's cookies and proxy credentials are not
// forwarded, unless a header rule of the group sets them.
func TestClientSessionHeadersStayHome(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	up := newUpstream(t, nil)
	gid := e.group("nocookie", groupOpts{upstreams: []string{up.URL}})
	e.addKeys(gid, "k")
	rules := e.group("cookierule", groupOpts{upstreams: []string{up.URL}, input: func(in *domain.GroupInput) {
		in.HeaderRules = json.RawMessage(`[{"key":"Cookie","value":"tenant=${GROUP_NAME}","action":"set"}]`)
	}})
	e.addKeys(rules, "k2")
	session := []string{"Cookie", "session=secret", "Proxy-Authorization", "Basic c2VjcmV0", "X-Keep", "1"}
	if resp, _ := e.do("POST", e.url("nocookie", "/v1/chat/completions"), "sk-global", `{}`, session...); resp.StatusCode != 200 {
		t.Fatalf("%d", resp.StatusCode)
	}
	c := up.Calls()[0]
	if c.Header.Get("Cookie") != "" || c.Header.Get("Proxy-Authorization") != "" || c.Header.Get("X-Keep") != "1" {
		t.Fatalf("upstream header %v", c.Header)
	}
	if resp, _ := e.do("POST", e.url("cookierule", "/v1/chat/completions"), "sk-global", `{}`, session...); resp.StatusCode != 200 {
		t.Fatalf("%d", resp.StatusCode)
	}
	if got := up.Calls()[1].Header.Values("Cookie"); len(got) != 1 || got[0] != "tenant=cookierule" {
		t.Fatalf("cookie set by a rule: %q", got)
	}
}
