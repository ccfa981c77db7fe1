package domain_test

import (
	"strings"
	"testing"

	"gpt-load/domain"
)

func TestProxyKeyFingerprint(t *testing.T) {
	t.Parallel()
	const key = "sk-proxy-1"
	fp := domain.ProxyKeyFingerprint(key)
	if want := "23a18fcd7f14"; fp != want { // the first 12 hex digits of sha256("sk-proxy-1")
		t.Fatalf("fingerprint %q, want %q", fp, want)
	}
	if fp != domain.ProxyKeyFingerprint(key) {
		t.Error("the fingerprint of one key changes")
	}
	if domain.ProxyKeyFingerprint("sk-proxy-2") == fp {
		t.Error("two keys share a fingerprint")
	}
	if strings.Contains(fp, key) || strings.Contains(key, fp) {
		t.Error("the fingerprint shows the key")
	}
	if got := domain.ProxyKeyFingerprint(""); got != "" {
		t.Errorf("fingerprint of no key = %q, want empty", got)
	}
}
