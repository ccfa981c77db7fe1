package domain_test

import (
	"reflect"
	"strconv"
	"strings"
	"testing"

	"gpt-load/domain"
)

func TestParseKeysText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		text string
		want []string
	}{
		{"empty", "", nil},
		{"blank", " \t\r\n\f ", nil},
		{"only separators", ",;, ;\n", nil},
		{"one", "sk-1", []string{"sk-1"}},
		{"trimmed", "  sk-1  ", []string{"sk-1"}},
		{"newlines", "sk-1\nsk-2\n", []string{"sk-1", "sk-2"}},
		{"CRLF", "sk-1\r\nsk-2\r\n", []string{"sk-1", "sk-2"}},
		{"commas", "sk-1,sk-2,,sk-3", []string{"sk-1", "sk-2", "sk-3"}},
		{"semicolons", "sk-1;sk-2", []string{"sk-1", "sk-2"}},
		{"spaces and tabs", "sk-1 sk-2\tsk-3", []string{"sk-1", "sk-2", "sk-3"}},
		{"form feed", "sk-1\fsk-2", []string{"sk-1", "sk-2"}},
		{"mixed runs", " sk-1 ,; \n sk-2;;\t,sk-3 ", []string{"sk-1", "sk-2", "sk-3"}},
		{"duplicates kept", "a,b,a", []string{"a", "b", "a"}},
		{"no other format check", "not a key!, =x=", []string{"not", "a", "key!", "=x="}},
		{"unicode spaces trimmed, not split", "\u00a0a\u00a0b\u00a0", []string{"a\u00a0b"}},
		{"vertical tab trimmed, not split", "a\vb,\vc", []string{"a\vb", "c"}},
		{"JSON array", `["sk-1","sk-2"]`, []string{"sk-1", "sk-2"}},
		{"JSON array with spaces around", "  [\"sk-1\" , \"sk-2\"]\n", []string{"sk-1", "sk-2"}},
		{"JSON array elements trimmed and empties dropped", `[" sk-1 ", "", "  ", "sk-2"]`, []string{"sk-1", "sk-2"}},
		{"JSON array keeps separators inside elements", `["a b,c;d"]`, []string{"a b,c;d"}},
		{"JSON array duplicates kept", `["a","a"]`, []string{"a", "a"}},
		{"JSON array with null element", `["a",null]`, []string{"a"}},
		{"JSON array of blanks", `["", " "]`, nil},
		{"empty JSON array is plain text", `[]`, []string{"[]"}},
		{"JSON array of numbers is plain text", `[1, 2]`, []string{"[1", "2]"}},
		{"broken JSON array is plain text", `["a", "b"`, []string{`["a"`, `"b"`}},
		{"JSON object is plain text", `{"k":"v"}`, []string{`{"k":"v"}`}},
		{"JSON string is plain text", `"sk-1"`, []string{`"sk-1"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := domain.ParseKeysText(tt.text); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseKeysText(%q) = %q, want %q", tt.text, got, tt.want)
			}
		})
	}
}

func TestParseKeysTextLarge(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	for i := range domain.MaxSyncKeys + 1 {
		b.WriteString("sk-" + strconv.Itoa(i) + "\n")
	}
	keys := domain.ParseKeysText(b.String())
	if len(keys) != domain.MaxSyncKeys+1 || keys[0] != "sk-0" || keys[domain.MaxSyncKeys] != "sk-5000" {
		t.Fatalf("parsed %d keys", len(keys))
	}
	if domain.MaxSyncKeys != 5000 {
		t.Fatalf("MaxSyncKeys = %d, want 5000", domain.MaxSyncKeys)
	}
}

func FuzzParseKeysText(f *testing.F) {
	for _, seed := range []string{"", "a,b;c d\ne", `["a","b"]`, `[]`, `[1]`, " \u00a0x "} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		for _, k := range domain.ParseKeysText(text) {
			if k == "" || k != strings.TrimSpace(k) {
				t.Fatalf("entry %q is empty or untrimmed", k)
			}
		}
	})
}

func TestLongKeyEntry(t *testing.T) {
	t.Parallel()
	ok := strings.Repeat("k", domain.MaxKeyBytes)
	long := ok + "k"
	for _, tc := range []struct {
		keys []string
		want int
	}{
		{nil, 0},
		{[]string{"a", ok}, 0},
		{[]string{long}, 1},
		{[]string{"a", ok, long, long}, 3},
	} {
		if got := domain.LongKeyEntry(tc.keys); got != tc.want {
			t.Errorf("LongKeyEntry(%d keys) = %d, want %d", len(tc.keys), got, tc.want)
		}
	}
}
