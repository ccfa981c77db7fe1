package domain

import (
	"strings"
	"testing"
	"time"
)

func TestNewRequestID(t *testing.T) {
	t.Parallel()
	t0 := time.UnixMilli(0x0190_1234_5678)
	seen := map[string]bool{}
	prev := ""
	for i := range 1000 {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		u := NewRequestID(now)
		if len(u) != 36 || u[8] != '-' || u[13] != '-' || u[18] != '-' || u[23] != '-' ||
			u[14] != '7' || !strings.ContainsRune("89ab", rune(u[19])) || seen[u] {
			t.Fatalf("id %q", u)
		}
		// The time is in the first 48 bits, so ids of later milliseconds sort after.
		if ms := strings.ReplaceAll(u[:13], "-", ""); ms != hex48(now.UnixMilli()) {
			t.Fatalf("id %q does not start with the time %x", u, now.UnixMilli())
		}
		if u <= prev {
			t.Fatalf("id %q of a later millisecond sorts before %q", u, prev)
		}
		seen[u], prev = true, u
	}
}

func hex48(ms int64) string {
	const hexd = "0123456789abcdef"
	var out [12]byte
	for i := range out {
		out[i] = hexd[(ms>>(44-4*i))&0xf]
	}
	return string(out[:])
}
