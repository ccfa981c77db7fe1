package httpapi

import (
	"strings"
	"testing"

	"gpt-load/domain"
)

// TestMessagesTranslated checks that every message and every setting has its three
// languages, with the same formatting verbs.
func TestMessagesTranslated(t *testing.T) {
	t.Parallel()
	for id, m := range messages {
		for l := langEN; l < numLangs; l++ {
			if m[l] == "" {
				t.Errorf("message %s has no text in language %d", id, l)
			}
			if strings.Count(m[l], "%") != strings.Count(m[langEN], "%") {
				t.Errorf("message %s: language %d has other formatting verbs: %q", id, l, m[l])
			}
		}
	}
	for _, def := range domain.SettingDefs() {
		for l := langZH; l < numLangs; l++ {
			if settingName(l, def.Key, "") == "" || settingDescription(l, def.Key, "") == "" {
				t.Errorf("setting %s has no name or description in language %d", def.Key, l)
			}
		}
	}
	for cat, id := range categoryNames {
		if _, ok := messages[id]; !ok {
			t.Errorf("category %s has no name", cat)
		}
	}
}
