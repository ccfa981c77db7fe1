package httpapi_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// shape describes a JSON object: field name → kind. Kinds: string, number, integer, bool,
// null, object, array, time (an RFC 3339 string), and alternatives joined by "|"
// ("time|null"). A leading "?" marks a field that may be absent.
type shape map[string]string

// checkShape checks that v (generic JSON) is an object with exactly the fields of want, of
// the given kinds.
func checkShape(t testing.TB, where string, v any, want shape) {
	t.Helper()
	obj, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s: want an object, got %T (%v)", where, v, v)
	}
	for name, kind := range want {
		optional := strings.HasPrefix(kind, "?")
		kind = strings.TrimPrefix(kind, "?")
		val, present := obj[name]
		if !present {
			if !optional {
				t.Errorf("%s: field %q missing in %v", where, name, keys(obj))
			}
			continue
		}
		if !kindMatches(val, kind) {
			t.Errorf("%s: field %q = %v (%T), want %s", where, name, val, val, kind)
		}
	}
	for name := range obj {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: unexpected field %q", where, name)
		}
	}
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func kindMatches(v any, kinds string) bool {
	for kind := range strings.SplitSeq(kinds, "|") {
		switch kind {
		case "string":
			if _, ok := v.(string); ok {
				return true
			}
		case "number":
			if _, ok := v.(float64); ok {
				return true
			}
		case "integer":
			if f, ok := v.(float64); ok && f == float64(int64(f)) {
				return true
			}
		case "bool":
			if _, ok := v.(bool); ok {
				return true
			}
		case "null":
			if v == nil {
				return true
			}
		case "object":
			if _, ok := v.(map[string]any); ok {
				return true
			}
		case "array":
			if _, ok := v.([]any); ok {
				return true
			}
		case "time":
			if s, ok := v.(string); ok {
				if _, err := time.Parse(time.RFC3339Nano, s); err == nil {
					return true
				}
			}
		default:
			panic("unknown kind " + kind)
		}
	}
	return false
}

// The shapes of API.md, with our additions.
var (
	groupShape = shape{
		"id": "integer", "name": "string", "endpoint": "string", "display_name": "string",
		"description": "string", "group_type": "string", "upstreams": "array", "channel_type": "string",
		"sort": "integer", "test_model": "string", "validation_endpoint": "string",
		"param_overrides": "object|null", "model_redirect_rules": "object", "model_redirect_strict": "bool",
		"config": "object|null", "header_rules": "array", "proxy_keys": "string",
		"last_validated_at": "time|null", "created_at": "time", "updated_at": "time",
	}
	keyShape = shape{
		"id": "integer", "key_value": "string", "key_hash": "string", "group_id": "integer",
		"status": "string", "notes": "string", "request_count": "integer", "failure_count": "integer",
		"last_used_at": "time|null", "created_at": "time", "updated_at": "time",
		"cooldown_until": "time|null", "last_error": "string", "disabled": "bool",
	}
	paginationShape = shape{"page": "integer", "page_size": "integer", "total_items": "integer", "total_pages": "integer"}
	taskShape       = shape{
		"task_type": "string", "is_running": "bool", "group_name": "?string", "processed": "integer",
		"total": "integer", "result": "?object", "error": "?string", "started_at": "time",
		"finished_at": "?time", "duration_seconds": "?number",
	}
	statsShape = shape{"total_requests": "integer", "failed_requests": "integer", "failure_rate": "number"}
)

// field returns obj[name] of generic JSON, failing when v is not an object.
func field(t testing.TB, v any, path ...string) any {
	t.Helper()
	for _, p := range path {
		obj, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%v is not an object (looking for %s)", v, p)
		}
		v = obj[p]
	}
	return v
}

func list(t testing.TB, v any) []any {
	t.Helper()
	l, ok := v.([]any)
	if !ok {
		t.Fatalf("%v (%T) is not an array", v, v)
	}
	return l
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// sameJSON reports whether v (generic JSON) equals the JSON text want.
func sameJSON(v any, want string) bool {
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		panic(err)
	}
	return reflect.DeepEqual(v, w)
}

func mustContain(t testing.TB, what, s string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(s, p) {
			t.Errorf("%s %q does not contain %q", what, s, p)
		}
	}
}

func ids(t testing.TB, items []any) []uint64 {
	t.Helper()
	out := make([]uint64, len(items))
	for i, it := range items {
		out[i] = uint64(field(t, it, "id").(float64))
	}
	return out
}

func sortedDesc(v []uint64) bool {
	return slices.IsSortedFunc(v, func(a, b uint64) int {
		switch {
		case a > b:
			return -1
		case a < b:
			return 1
		}
		return 0
	})
}

func sprint(v ...any) string { return fmt.Sprint(v...) }
