package httpapi

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"gpt-load/domain"
)

// streamKeys reads text with keyText, in both passes.
func streamKeys(t *testing.T, text string) ([]string, error) {
	t.Helper()
	kt, err := scanKeyText(strings.NewReader(text))
	if err != nil {
		return nil, err
	}
	var out []string
	if err := kt.each(func(k string) error { out = append(out, k); return nil }); err != nil {
		t.Fatalf("second pass of %q: %v", text, err)
	}
	if len(out) != kt.entries {
		t.Fatalf("%q: counted %d entries, read %d", text, kt.entries, len(out))
	}
	return out, nil
}

func TestKeyTextMatchesParseKeysText(t *testing.T) {
	t.Parallel()
	cases := []string{
		"", " ", "a", "a b", "a\nb\r\nc", "a,b;c\td\fe", " , ; a ,, b ;; ", `["a","b"]`, ` ["a", " b ", ""] `,
		`[]`, `[""]`, `[null,"x"]`, `["a",1]`, `["a"] x`, `["a"`, `[["a"]]`, "\u00a0[\"a\"]\u00a0", "\u00a0a\u00a0b",
		"a\u00a0,b", `["a,b","c d"]`, "[x, y]", "\ufeff[\"a\"]", "[\"a\"]\n\n", "a\xffb c", `["\ud800"]`, "[\"a\"]\u3000",
		"sk-1\nsk-1\nsk-2", `  [ "sk-1" , "sk-2" ]  `, "[", "]", `"a"`, `{"a":1}`,
	}
	rng := rand.New(rand.NewPCG(7, 9))
	alphabet := []string{"a", "b", "sk-", " ", "\n", ",", ";", "\t", "[", "]", `"`, "\u00a0", "\u3000", "\\", "1", "null", "\xff"}
	for range 3000 {
		var b strings.Builder
		for range rng.IntN(12) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		cases = append(cases, b.String())
		if rng.IntN(3) == 0 {
			cases = append(cases, `["`+b.String()+`"]`)
		}
	}
	for _, text := range cases {
		want := domain.ParseKeysText(text)
		got, err := streamKeys(t, text)
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%q: stream %q, ParseKeysText %q", text, got, want)
		}
	}
}

func TestKeyTextLimits(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("k", maxKeyLen+1)
	for _, text := range []string{long, "a " + long, `["a","` + long + `"]`} {
		_, err := streamKeys(t, text)
		var tl errKeyTooLong
		if !errors.As(err, &tl) {
			t.Errorf("%d bytes: %v", len(text), err)
		}
	}
	ok := strings.Repeat("k", maxKeyLen)
	if got, err := streamKeys(t, ok+"\n"+ok); err != nil || len(got) != 2 {
		t.Errorf("keys of the maximal length: %d %v", len(got), err)
	}
	// A long text is read in bounded pieces: a million keys come through one at a time.
	var b strings.Builder
	for i := range 100_000 {
		b.WriteString("sk-")
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString("\n")
	}
	got, err := streamKeys(t, b.String())
	if err != nil || len(got) != 100_000 {
		t.Errorf("100,000 keys: %d %v", len(got), err)
	}
}

func TestKeySearchMaskedContains(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 5))
	const alphabet = "ab*12"
	randStr := func(max int) string {
		b := make([]byte, rng.IntN(max+1))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	for range 200_000 {
		v, q := randStr(16), strings.TrimSpace(randStr(14))
		s := newKeySearch(q)
		want := strings.Contains(domain.MaskKey(v), q)
		if got := s.maskedContains(v); got != want {
			t.Fatalf("MaskKey(%q) = %q contains %q: %v, got %v", v, domain.MaskKey(v), q, want, got)
		}
	}
}
