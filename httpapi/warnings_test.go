package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"gpt-load/domain"
)

// TestAdminKeyAsProxyKeyWarns: a global or group proxy key equal to the admin key is a
// high warning of its own on the dashboard, named after the key's place; other keys are
// not.
func TestAdminKeyAsProxyKeyWarns(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{seedSettings: func(s *domain.Settings) { s.ProxyKeys = "sk-other-Proxy-0123456789abcdef," + testAuthKey }})
	n.group("g", `,"proxy_keys":"`+testAuthKey+`"`)
	n.group("h", `,"proxy_keys":"sk-h-Proxy-0123456789abcdefXYZ"`)
	var reuse []string
	for _, w := range list(t, field(t, n.do(http.MethodGet, "/api/dashboard/stats", nil, "Accept-Language", "en").data(t), "security_warnings")) {
		if msg := fmt.Sprint(field(t, w, "message")); strings.Contains(msg, "is the admin key") {
			reuse = append(reuse, fmt.Sprint(field(t, w, "type"), "/", field(t, w, "severity")))
			if strings.Contains(msg, testAuthKey) || strings.Contains(fmt.Sprint(field(t, w, "suggestion")), testAuthKey) {
				t.Errorf("the warning shows the key: %v", w)
			}
		}
	}
	if want := "Global Proxy Key #2/high,Group Proxy Key [g] #1/high"; strings.Join(reuse, ",") != want {
		t.Errorf("admin-key warnings %v, want %s", reuse, want)
	}
}
