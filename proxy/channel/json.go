package channel

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
)

// The proxy reads a few top-level fields of request and response bodies (model, stream,
// usage) and rewrites fewer (param overrides, model redirects). Decoding whole bodies into
// maps for that would cost more than the rest of a proxied request, so these functions scan
// the raw JSON instead: they find the byte span of a top-level value and splice new bytes
// in, leaving everything else as the client wrote it.

// skipSpace returns the index of the first non-space byte of b at or after i.
func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index just past the JSON string starting at b[i] == '"', or -1.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// skipValue returns the index just past the JSON value starting at b[i], or -1 when it
// is malformed. Nested values are skipped by bracket depth, strings with their escapes.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				if i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	default:
		start := i
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				if i == start {
					return -1
				}
				return i
			}
			i++
		}
		if i == start {
			return -1
		}
		return i
	}
}

// member is one top-level member of an object: the key's raw bytes (with quotes), and the
// spans of the whole member and of its value.
type member struct {
	key                  []byte
	start, valStart, end int
}

// eachMember calls f for every top-level member of the JSON object b, in order, until f
// returns false. It reports false when b is not a well-formed object (as far as the scan
// can tell).
func eachMember(b []byte, f func(m member) bool) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipSpace(b, i+1) == len(b)
	}
	going := true
	for i < len(b) {
		if b[i] != '"' {
			return false
		}
		start := i
		kend := skipString(b, i)
		if kend < 0 {
			return false
		}
		i = skipSpace(b, kend)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		vs := skipSpace(b, i+1)
		ve := skipValue(b, vs)
		if ve < 0 {
			return false
		}
		if going {
			going = f(member{key: b[start:kend], start: start, valStart: vs, end: ve})
		}
		i = skipSpace(b, ve)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return skipSpace(b, i+1) == len(b)
		default:
			return false
		}
	}
	return false
}

// keyIs reports whether the raw key (with quotes) is name.
func keyIs(raw []byte, name string) bool {
	if len(raw) == len(name)+2 && string(raw[1:len(raw)-1]) == name {
		return true
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return false
	}
	var s string
	return json.Unmarshal(raw, &s) == nil && s == name
}

// Field returns the raw value of the top-level member name of the JSON object body.
func Field(body []byte, name string) ([]byte, bool) {
	var val []byte
	found := false
	ok := eachMember(body, func(m member) bool {
		if keyIs(m.key, name) {
			val, found = body[m.valStart:m.end], true
			return false
		}
		return true
	})
	return val, ok && found
}

// IsObject reports whether body is a JSON object (as far as the scan can tell).
func IsObject(body []byte) bool {
	return eachMember(body, func(member) bool { return true })
}

// StringField returns the top-level member name of body when it is a JSON string.
func StringField(body []byte, name string) (string, bool) {
	raw, ok := Field(body, name)
	if !ok || len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), true
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// SetFields returns body with the top-level members of fields set: existing members are
// replaced where they stand, missing ones appended (in key order). ok is false when body is
// not a JSON object; body is then returned as it is.
func SetFields(body []byte, fields map[string]json.RawMessage) ([]byte, bool) {
	if len(fields) == 0 {
		return body, IsObject(body)
	}
	out := make([]byte, 0, len(body)+64)
	done := make(map[string]bool, len(fields))
	last := 0
	ok := eachMember(body, func(m member) bool {
		for name, v := range fields {
			if !done[name] && keyIs(m.key, name) {
				out = append(out, body[last:m.valStart]...)
				out = append(out, v...)
				last = m.end
				done[name] = true
				break
			}
		}
		return true
	})
	if !ok {
		return body, false
	}
	// Everything up to the closing brace.
	end := bytes.LastIndexByte(body, '}')
	out = append(out, body[last:end]...)
	empty := !hasMember(body)
	names := make([]string, 0, len(fields))
	for name := range fields {
		if !done[name] {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		if !empty {
			out = append(out, ',')
		}
		empty = false
		kb, _ := json.Marshal(name)
		out = append(out, kb...)
		out = append(out, ':')
		out = append(out, fields[name]...)
	}
	out = append(out, body[end:]...)
	return out, true
}

func hasMember(body []byte) bool {
	n := 0
	eachMember(body, func(member) bool { n++; return false })
	return n > 0
}

// ReplaceStringField returns body with the top-level string member name set to value.
func ReplaceStringField(body []byte, name, value string) []byte {
	vb, _ := json.Marshal(value)
	out, _ := SetFields(body, map[string]json.RawMessage{name: vb})
	return out
}

// IsEmptyArrayOrMissing reports whether the top-level member name of the object body is
// absent, null or an empty array.
func IsEmptyArrayOrMissing(body []byte, name string) bool {
	raw, ok := Field(body, name)
	if !ok {
		return true
	}
	s := strings.TrimSpace(string(raw))
	if s == "null" {
		return true
	}
	if len(s) >= 2 && s[0] == '[' {
		return strings.TrimSpace(s[1:len(s)-1]) == ""
	}
	return false
}
