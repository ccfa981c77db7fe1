package proxy_test

import (
	"fmt"
	"net/http"
	"testing"

	"gpt-load/domain"
)

// Every request log says which proxy key was used, by fingerprint and kind, never the
// key itself; a key in both lists counts as the group's.
func TestRequestLogNamesProxyKey(t *testing.T) {
	up := newUpstream(t, nil)
	e := newEnv(t, envOpts{})
	gid := e.group("g1", groupOpts{upstreams: []string{up.URL}})
	e.addKeys(gid, "sk-up-1")

	for _, key := range []string{"sk-group-g1", "sk-global"} {
		resp, body := e.do(http.MethodPost, e.url("g1", "/v1/chat/completions"), key, `{"model":"m","messages":[]}`)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", key, resp.StatusCode, body)
		}
	}
	logs := e.waitLogs(func(l []domain.RequestLog) error {
		if len(l) < 2 {
			return fmt.Errorf("%d logs", len(l))
		}
		return nil
	})
	want := map[string]string{
		domain.ProxyKeyFingerprint("sk-group-g1"): domain.ProxyKeyGroup,
		domain.ProxyKeyFingerprint("sk-global"):   domain.ProxyKeyGlobal,
	}
	for _, l := range logs {
		name, ok := want[l.ProxyKeyFP]
		if !ok || l.ProxyKeyName != name {
			t.Fatalf("log names proxy key %q (%q); want one of %v", l.ProxyKeyFP, l.ProxyKeyName, want)
		}
		delete(want, l.ProxyKeyFP)
	}
	if len(want) != 0 {
		t.Fatalf("no log for %v", want)
	}
}
