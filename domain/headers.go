package domain

import (
	"fmt"
	"net/textproto"
	"strings"
)

// Header rule actions (API.md 2.5).
const (
	HeaderActionSet    = "set"
	HeaderActionRemove = "remove"
)

// HeaderRule sets or removes one header of every upstream request of a group. A set value
// may carry the variables ${CLIENT_IP}, ${GROUP_NAME}, ${API_KEY}, ${TIMESTAMP_MS} and
// ${TIMESTAMP_S}, substituted at request time.
type HeaderRule struct {
	Key    string `json:"key"`
	Value  string `json:"value"`
	Action string `json:"action"`
}

// NormalizeHeaderRules checks and normalizes a group's header rules before they are saved
// (API.md 2.5, stricter where gpt-load let broken rules through):
//
//   - keys are trimmed and rules with an empty key are dropped;
//   - a key must be a valid HTTP field name (RFC 7230 token) and is canonicalized like
//     net/textproto.CanonicalMIMEHeaderKey ("x-foo-bar" becomes "X-Foo-Bar");
//   - two rules for the same canonical key are an error ("duplicate header: X-Foo-Bar");
//   - the value is kept verbatim but must not contain CR, LF or NUL;
//   - the action is trimmed and lower-cased and must then be "set" or "remove".
//
// Every problem is reported in one EINVALID error whose fields name the input position,
// e.g. "header_rules[2].key". A nil input gives an empty, non-nil slice.
func NormalizeHeaderRules(rules []HeaderRule) ([]HeaderRule, error) {
	if len(rules) > MaxHeaderRules {
		return nil, Invalid(FieldError{Field: "header_rules", Message: fmt.Sprintf("must have at most %d rules, got %d", MaxHeaderRules, len(rules))})
	}
	out := make([]HeaderRule, 0, len(rules))
	var problems []FieldError
	seen := make(map[string]struct{}, len(rules))
	for i, r := range rules {
		key := strings.TrimSpace(r.Key)
		if key == "" {
			continue
		}
		field := fmt.Sprintf("header_rules[%d]", i)
		bad := false
		if len(key) > MaxHeaderNameBytes {
			problems = append(problems, FieldError{Field: field + ".key", Message: fmt.Sprintf("must be at most %d bytes, got %d", MaxHeaderNameBytes, len(key))})
			bad = true
		} else if !headerIsToken(key) {
			problems = append(problems, FieldError{Field: field + ".key", Message: fmt.Sprintf("invalid header name %q", key)})
			bad = true
		} else {
			key = textproto.CanonicalMIMEHeaderKey(key)
			if _, dup := seen[key]; dup {
				problems = append(problems, FieldError{Field: field + ".key", Message: "duplicate header: " + key})
				bad = true
			}
			seen[key] = struct{}{}
		}
		if strings.ContainsAny(r.Value, "\r\n\x00") {
			problems = append(problems, FieldError{Field: field + ".value", Message: "must not contain CR, LF or NUL characters"})
			bad = true
		}
		if len(r.Value) > MaxHeaderValueBytes {
			problems = append(problems, FieldError{Field: field + ".value", Message: fmt.Sprintf("must be at most %d bytes, got %d", MaxHeaderValueBytes, len(r.Value))})
			bad = true
		}
		action := strings.ToLower(strings.TrimSpace(r.Action))
		if action != HeaderActionSet && action != HeaderActionRemove {
			problems = append(problems, FieldError{Field: field + ".action", Message: `must be "set" or "remove"`})
			bad = true
		}
		if !bad {
			out = append(out, HeaderRule{Key: key, Value: r.Value, Action: action})
		}
	}
	if err := Invalid(problems...); err != nil {
		return nil, err
	}
	return out, nil
}

// headerIsToken reports whether s is a non-empty RFC 7230 token (the syntax of a field name).
func headerIsToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !headerIsTChar(s[i]) {
			return false
		}
	}
	return true
}

// headerIsTChar: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" /
// "_" / "`" / "|" / "~" / DIGIT / ALPHA.
func headerIsTChar(b byte) bool {
	switch {
	case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}
