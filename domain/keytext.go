package domain

import (
	"encoding/json"
	"strings"
)

// MaxSyncKeys is the most parsed entries a synchronous key endpoint accepts (API.md 3.2);
// the asynchronous import and delete have no limit.
const MaxSyncKeys = 5000

// MaxKeyBytes bounds one entry of key text, on every key endpoint alike (sync and async,
// JSON and uploaded files). Real API keys are far shorter (a few hundred bytes at most);
// the bound leaves room for long tokens while keeping a single key, sealed, a small part
// of one event (see MaxKeyBytesPerEvent).
const MaxKeyBytes = 4096

// LongKeyEntry returns the 1-based position of the first entry longer than MaxKeyBytes,
// or 0 when there is none.
func LongKeyEntry(keys []string) int {
	for i, k := range keys {
		if len(k) > MaxKeyBytes {
			return i + 1
		}
	}
	return 0
}

// ParseKeysText reads the keys_text of the key endpoints and the content of uploaded key
// files (API.md 3.2):
//
//  1. if the whole text is a JSON array of strings with at least one element, its elements;
//  2. otherwise the text split on runs of whitespace (space, tab, CR, LF, FF), ',' and ';'.
//
// Every entry is trimmed and empty entries are dropped; there is no other format check.
// Duplicates are kept in input order (callers dedupe). No entries gives nil.
func ParseKeysText(text string) []string {
	if trimmed := strings.TrimSpace(text); strings.HasPrefix(trimmed, "[") {
		var arr []string
		if err := json.Unmarshal([]byte(trimmed), &arr); err == nil && len(arr) > 0 {
			var keys []string
			for _, k := range arr {
				if k = strings.TrimSpace(k); k != "" {
					keys = append(keys, k)
				}
			}
			return keys
		}
	}
	var keys []string
	for _, k := range strings.FieldsFunc(text, keyTextIsSeparator) {
		if k = strings.TrimSpace(k); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// keyTextIsSeparator: the bytes that separate keys in plain key text.
func keyTextIsSeparator(r rune) bool {
	switch r {
	case ' ', '\t', '\r', '\n', '\f', ',', ';':
		return true
	}
	return false
}
