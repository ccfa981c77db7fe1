package proxy

import (
	"net/http"
	"slices"
	"strings"

	"gpt-load/domain"
)

// mask replaces the upstream key in s, in every form the proxy may have sent it and an
// upstream or a transport error may echo it (API.md 7.6): as it is, query-escaped
// (url.QueryEscape: '+' for a space) or path-escaped, with upper- or lower-case hex, and
// JSON-escaped (\/, \", \\, \u00XX) inside an error body; one text may mix these forms,
// character by character. No channel sends a key base64-encoded, so that form does not
// arise.
func mask(s, key string) string {
	if key == "" || s == "" {
		return s
	}
	if !strings.ContainsAny(s, "%+\\") {
		// Only the plain form can occur.
		if !strings.Contains(s, key) {
			return s
		}
		return strings.ReplaceAll(s, key, domain.MaskKey(key))
	}
	var b strings.Builder
	masked := domain.MaskKey(key)
	last := 0
	for i := 0; i < len(s); {
		if !mayStart(s[i], key[0]) {
			i++
			continue
		}
		end := matchKey(s, i, key)
		if end < 0 {
			i++
			continue
		}
		b.WriteString(s[last:i])
		b.WriteString(masked)
		i, last = end, end
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

func maskBytes(b []byte, key string) []byte {
	if key == "" || len(b) == 0 {
		return b
	}
	s := string(b)
	if m := mask(s, key); m != s {
		return []byte(m)
	}
	return b
}

// maskValues masks the key in header values; vs itself is returned when none holds it.
func maskValues(vs []string, key string) []string {
	for i, v := range vs {
		if m := mask(v, key); m != v {
			out := slices.Clone(vs)
			out[i] = m
			for j := i + 1; j < len(out); j++ {
				out[j] = mask(out[j], key)
			}
			return out
		}
	}
	return vs
}

// mayStart reports whether text byte t can begin an encoding of key byte c.
func mayStart(t, c byte) bool {
	return t == c || t == '%' || t == '\\' || (t == '+' && c == ' ')
}

// matchKey returns the end of the longest encoding of key that starts at s[i], or -1.
// It follows every way each key byte may be written at once (a '%' in the key may be
// itself or "%25"), so the cost stays linear in the key's length.
func matchKey(s string, i int, key string) int {
	var bufA, bufB [8]int
	at, next := append(bufA[:0], i), bufB[:0]
	for k := 0; k < len(key); k++ {
		next = next[:0]
		for _, j := range at {
			for _, n := range encodedAt(s, j, key[k]) {
				if n > 0 && !contains(next, n) {
					next = append(next, n)
				}
			}
		}
		if len(next) == 0 {
			return -1
		}
		at, next = next, at
	}
	end := -1
	for _, j := range at {
		end = max(end, j)
	}
	return end
}

// encodedAt returns where an encoding of byte c that starts at s[j] ends (0: none).
func encodedAt(s string, j int, c byte) [3]int {
	var out [3]int
	n := 0
	if j >= len(s) {
		return out
	}
	switch t := s[j]; {
	case t == c:
		out[n] = j + 1
		n++
		fallthrough
	default:
		switch {
		case t == '%' && j+2 < len(s) && unhex(s[j+1])<<4|unhex(s[j+2]) == int(c) && isHex(s[j+1]) && isHex(s[j+2]):
			out[n] = j + 3
		case t == '+' && c == ' ':
			out[n] = j + 1
		case t == '\\' && j+1 < len(s) && s[j+1] == c && (c == '/' || c == '"' || c == '\\'):
			out[n] = j + 2
		case t == '\\' && j+5 < len(s) && s[j+1] == 'u' && s[j+2] == '0' && s[j+3] == '0' &&
			isHex(s[j+4]) && isHex(s[j+5]) && unhex(s[j+4])<<4|unhex(s[j+5]) == int(c):
			out[n] = j + 6
		}
	}
	return out
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return 0
}

// maskBody masks the key in an upstream body; a gzipped body that held the key is
// returned decoded (plain is then true: drop its Content-Encoding).
func maskBody(raw []byte, h http.Header, key string) (body []byte, plain bool) {
	if !strings.EqualFold(h.Get("Content-Encoding"), "gzip") {
		return maskBytes(raw, key), false
	}
	dec := decodedForMessage(raw, h)
	if len(dec) == 0 || len(raw) == 0 || &dec[0] == &raw[0] {
		return raw, false // empty, or not gzip after all
	}
	if s := string(dec); mask(s, key) != s {
		return []byte(mask(s, key)), true
	}
	return raw, false
}
