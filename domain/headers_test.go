package domain_test

import (
	"net/textproto"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gpt-load/domain"
)

func TestNormalizeHeaderRulesValid(t *testing.T) {
	t.Parallel()
	type hr = domain.HeaderRule
	tests := []struct {
		name string
		in   []hr
		want []hr
	}{
		{"nil", nil, []hr{}},
		{"empty", []hr{}, []hr{}},
		{"set", []hr{{"X-Tag", "v", "set"}}, []hr{{"X-Tag", "v", "set"}}},
		{"remove", []hr{{"X-Debug", "", "remove"}}, []hr{{"X-Debug", "", "remove"}}},
		{"canonicalized", []hr{{"x-foo-bar", "1", "set"}}, []hr{{"X-Foo-Bar", "1", "set"}}},
		{"canonicalized upper", []hr{{"X-FOO-BAR", "1", "set"}}, []hr{{"X-Foo-Bar", "1", "set"}}},
		{"trimmed key", []hr{{"  user-agent\t", "ua", "set"}}, []hr{{"User-Agent", "ua", "set"}}},
		{"empty key dropped", []hr{{"", "v", "set"}, {"A", "1", "set"}}, []hr{{"A", "1", "set"}}},
		{"blank key dropped even with a bad value and action", []hr{{"  ", "a\r\nb", "nope"}}, []hr{}},
		{"value verbatim", []hr{{"X-Sp", "  spaced  value ", "set"}}, []hr{{"X-Sp", "  spaced  value ", "set"}}},
		{"value with variables", []hr{{"X-Key", "Bearer ${API_KEY} ${CLIENT_IP}", "set"}}, []hr{{"X-Key", "Bearer ${API_KEY} ${CLIENT_IP}", "set"}}},
		{"value with tab and unicode", []hr{{"X-U", "a\tb é", "set"}}, []hr{{"X-U", "a\tb é", "set"}}},
		{"action normalized", []hr{{"A", "1", " SET "}, {"B", "", "Remove"}}, []hr{{"A", "1", "set"}, {"B", "", "remove"}}},
		{"token punctuation", []hr{{"x!#$%&'*+-.^_`|~9", "v", "set"}}, []hr{{textproto.CanonicalMIMEHeaderKey("x!#$%&'*+-.^_`|~9"), "v", "set"}}},
		{"underscore key kept as is", []hr{{"x_api_key", "v", "set"}}, []hr{{textproto.CanonicalMIMEHeaderKey("x_api_key"), "v", "set"}}},
		{"order kept", []hr{{"B", "2", "set"}, {"A", "1", "remove"}, {"C", "3", "set"}}, []hr{{"B", "2", "set"}, {"A", "1", "remove"}, {"C", "3", "set"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := slices.Clone(tt.in)
			got, err := domain.NormalizeHeaderRules(in)
			if err != nil {
				t.Fatalf("NormalizeHeaderRules: %v", err)
			}
			if got == nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %#v, want %#v", got, tt.want)
			}
			if !reflect.DeepEqual(in, tt.in) {
				t.Fatalf("input modified: %#v", in)
			}
			again, err := domain.NormalizeHeaderRules(got)
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("not idempotent: %#v, %v", again, err)
			}
		})
	}
}

func TestNormalizeHeaderRulesInvalid(t *testing.T) {
	t.Parallel()
	type hr = domain.HeaderRule
	tests := []struct {
		name string
		in   []hr
		want map[string]string
	}{
		{"duplicate", []hr{{"X-A", "1", "set"}, {"x-a", "2", "set"}},
			map[string]string{"header_rules[1].key": "duplicate header: X-A"}},
		{"duplicate after trimming", []hr{{"x-a ", "1", "set"}, {" X-A", "", "remove"}},
			map[string]string{"header_rules[1].key": "duplicate header: X-A"}},
		{"duplicate index counts dropped rules", []hr{{"", "", ""}, {"A", "1", "set"}, {"", "", ""}, {"a", "1", "set"}},
			map[string]string{"header_rules[3].key": "duplicate header: A"}},
		{"triple", []hr{{"A", "1", "set"}, {"a", "1", "set"}, {"A", "1", "remove"}},
			map[string]string{"header_rules[1].key": "duplicate", "header_rules[2].key": "duplicate"}},
		{"space in key", []hr{{"X A", "1", "set"}}, map[string]string{"header_rules[0].key": "invalid header name"}},
		{"colon in key", []hr{{"X-A:", "1", "set"}}, map[string]string{"header_rules[0].key": "invalid header name"}},
		{"CR in key", []hr{{"X-A\r\nEvil", "1", "set"}}, map[string]string{"header_rules[0].key": "invalid header name"}},
		{"LF in key", []hr{{"X\nA", "1", "set"}}, map[string]string{"header_rules[0].key": "invalid header name"}},
		{"NUL in key", []hr{{"X\x00A", "1", "set"}}, map[string]string{"header_rules[0].key": "invalid header name"}},
		{"non-ASCII key", []hr{{"X-Tëst", "1", "set"}}, map[string]string{"header_rules[0].key": "invalid header name"}},
		{"parentheses in key", []hr{{"X(A)", "1", "set"}}, map[string]string{"header_rules[0].key": "invalid header name"}},
		{"CR in value", []hr{{"X-A", "a\rb", "set"}}, map[string]string{"header_rules[0].value": "CR, LF or NUL"}},
		{"LF in value", []hr{{"X-A", "a\nSet-Cookie: x", "set"}}, map[string]string{"header_rules[0].value": "CR, LF or NUL"}},
		{"NUL in value", []hr{{"X-A", "a\x00", "set"}}, map[string]string{"header_rules[0].value": "CR, LF or NUL"}},
		{"CR in remove value", []hr{{"X-A", "\r", "remove"}}, map[string]string{"header_rules[0].value": "CR, LF or NUL"}},
		{"empty action", []hr{{"X-A", "1", ""}}, map[string]string{"header_rules[0].action": `"set" or "remove"`}},
		{"unknown action", []hr{{"X-A", "1", "append"}}, map[string]string{"header_rules[0].action": `"set" or "remove"`}},
		{"every problem", []hr{{"ok", "1", "set"}, {"b d", "x\ny", "add"}, {"OK", "", "remove"}}, map[string]string{
			"header_rules[1].key": "invalid header name", "header_rules[1].value": "CR, LF or NUL",
			"header_rules[1].action": `"set" or "remove"`, "header_rules[2].key": "duplicate header: Ok",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := domain.NormalizeHeaderRules(tt.in)
			vrCheckInvalid(t, err, tt.want)
			if got != nil {
				t.Errorf("rules on error = %#v, want nil", got)
			}
		})
	}
}

func FuzzNormalizeHeaderRules(f *testing.F) {
	f.Add("x-a", "1", "set", "X-A", "2", "remove", " b ", "v", "SET")
	f.Add("", "\r\n", "", "a b", "x", "set", "c", "\x00", "remove")
	f.Add("content-type", "application/json", "set", "accept", "", "remove", "user-agent", "${CLIENT_IP}", "set")
	f.Add("X\r\nY", "v", "set", "é", "v", "set", "~!", "v", "remove")
	f.Fuzz(func(t *testing.T, k1, v1, a1, k2, v2, a2, k3, v3, a3 string) {
		in := []domain.HeaderRule{{Key: k1, Value: v1, Action: a1}, {Key: k2, Value: v2, Action: a2}, {Key: k3, Value: v3, Action: a3}}
		out, err := domain.NormalizeHeaderRules(in)
		if err != nil {
			if domain.ErrorCode(err) != domain.EINVALID || len(domain.ErrorFields(err)) == 0 {
				t.Fatalf("error %v: want EINVALID with fields", err)
			}
			for _, fe := range domain.ErrorFields(err) {
				if !strings.HasPrefix(fe.Field, "header_rules[") {
					t.Fatalf("field %q does not name a header rule", fe.Field)
				}
			}
			if out != nil {
				t.Fatalf("rules returned with an error")
			}
			return
		}
		if out == nil || len(out) > len(in) {
			t.Fatalf("got %d rules from %d", len(out), len(in))
		}
		seen := map[string]bool{}
		for _, r := range out {
			if strings.ContainsAny(r.Key, "\r\n\x00") || strings.ContainsAny(r.Value, "\r\n\x00") {
				t.Fatalf("rule %q keeps CR, LF or NUL", r)
			}
			if r.Key == "" || r.Key != strings.TrimSpace(r.Key) || strings.ContainsAny(r.Key, " \t:") {
				t.Fatalf("rule key %q is not a clean field name", r.Key)
			}
			if textproto.CanonicalMIMEHeaderKey(r.Key) != r.Key {
				t.Fatalf("rule key %q is not canonical", r.Key)
			}
			if seen[r.Key] {
				t.Fatalf("duplicate key %q in %q", r.Key, out)
			}
			seen[r.Key] = true
			if r.Action != "set" && r.Action != "remove" {
				t.Fatalf("action %q", r.Action)
			}
		}
		again, err := domain.NormalizeHeaderRules(out)
		if err != nil || !reflect.DeepEqual(again, out) {
			t.Fatalf("not idempotent: %q -> %q, %v", out, again, err)
		}
	})
}
