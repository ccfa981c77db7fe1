package httpapi

import (
	"cmp"
	"crypto/sha256"
	"net/http"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"gpt-load/domain"
)

// statCard is one card of the dashboard (API.md 5.1).
type statCard struct {
	Value         float64 `json:"value"`
	SubValue      int64   `json:"sub_value,omitempty"`
	SubValueTip   string  `json:"sub_value_tip,omitempty"`
	Trend         float64 `json:"trend"`
	TrendIsGrowth bool    `json:"trend_is_growth"`
}

type securityWarning struct {
	Type       string `json:"type"`
	Message    string `json:"message"`
	Severity   string `json:"severity"`
	Suggestion string `json:"suggestion"`
}

type dashboardStatsJSON struct {
	KeyCount         statCard          `json:"key_count"`
	RPM              statCard          `json:"rpm"`
	RequestCount     statCard          `json:"request_count"`
	ErrorRate        statCard          `json:"error_rate"`
	SecurityWarnings []securityWarning `json:"security_warnings"`
}

// dashboardStats is GET /api/dashboard/stats. Key counts and security warnings come from
// the state; the request figures come from request logs, which arrive with their own
// issue: until then they are zero ("no traffic": trend 0, growth true, as API.md 5.1
// computes it for two empty windows).
func (a *admin) dashboardStats(w http.ResponseWriter, r *http.Request) {
	l := langOf(r)
	var active, invalid int
	var groups []*domain.Group
	var global string
	a.state.Read(func(s *domain.State) {
		groups, global = s.Groups(), s.Settings.ProxyKeys
		for _, g := range groups {
			if ks := s.Keys(g.ID); ks != nil && g.Type == domain.GroupStandard {
				active += ks.Active()
				invalid += ks.Invalid()
			}
		}
	})
	out := dashboardStatsJSON{
		KeyCount:     statCard{Value: float64(active), SubValue: int64(invalid)},
		RPM:          statCard{TrendIsGrowth: true},
		RequestCount: statCard{TrendIsGrowth: true},
		ErrorRate:    statCard{TrendIsGrowth: true},
	}
	if invalid > 0 {
		out.KeyCount.SubValueTip = trLang(l, msgInvalidKeysTip)
	}
	out.SecurityWarnings = a.securityWarnings(l, global, groups)
	ok(w, r, out)
}

// weakWords are the common words that make a secret guessable (API.md 5.2).
var weakWords = []string{"password", "123456", "admin", "secret", "test", "demo", "sk-123456", "key",
	"token", "pass", "pwd", "qwerty", "abc", "default", "user", "login", "auth", "temp"}

// securityWarnings checks AUTH_KEY, ENCRYPTION_KEY and every proxy key (API.md 5.2). The
// strength of ENCRYPTION_KEY is checked at start-up, where its value is known; here only
// its absence.
func (a *admin) securityWarnings(l lang, global string, groups []*domain.Group) []securityWarning {
	out := []securityWarning{}
	if a.d.AuthKey == "" {
		out = append(out, securityWarning{Type: "AUTH_KEY", Message: trLang(l, msgWarnAuthKeyMissing),
			Severity: "high", Suggestion: trLang(l, msgSuggestAuthKey)})
	} else {
		out = append(out, secretWarnings(l, "AUTH_KEY", a.d.AuthKey)...)
	}
	if !a.d.EncryptionKeySet && !a.cipher.Enabled() {
		out = append(out, securityWarning{Type: "ENCRYPTION_KEY", Message: trLang(l, msgWarnEncKeyMissing),
			Severity: "high", Suggestion: trLang(l, msgSuggestEncKey)})
	}
	for i, k := range domain.SplitProxyKeys(global) {
		out = append(out, secretWarnings(l, trLang(l, msgGlobalProxyKey, i+1), k)...)
	}
	for _, g := range groups {
		for i, k := range domain.SplitProxyKeys(g.ProxyKeys) {
			out = append(out, secretWarnings(l, trLang(l, msgGroupProxyKey, g.Name, i+1), k)...)
		}
	}
	return out
}

// secretWarnings applies each rule of API.md 5.2 to one secret, independently.
func secretWarnings(l lang, name, secret string) []securityWarning {
	var out []securityWarning
	warn := func(severity string, msg msgID, args ...any) {
		out = append(out, securityWarning{Type: name, Message: trLang(l, msg, args...), Severity: severity,
			Suggestion: trLang(l, msgSuggestStrongKey)})
	}
	n := utf8.RuneCountInString(secret)
	switch {
	case n < 16:
		warn("high", msgWarnTooShort, name)
	case n < 32:
		warn("medium", msgWarnShort, name)
	}
	lower := strings.ToLower(secret)
	for _, word := range weakWords {
		if strings.Contains(lower, word) {
			warn("high", msgWarnWeakWord, name, word)
			break
		}
	}
	if n >= 16 && charClasses(secret) < 3 {
		warn("medium", msgWarnLowVariety, name)
	}
	return out
}

// charClasses counts the kinds of characters in s: upper case, lower case, digits, others.
func charClasses(s string) int {
	var upper, lower, digit, other int
	for _, r := range s {
		switch {
		case unicode.IsUpper(r):
			upper = 1
		case unicode.IsLower(r):
			lower = 1
		case unicode.IsDigit(r):
			digit = 1
		default:
			other = 1
		}
	}
	return upper + lower + digit + other
}

type encryptionStatusJSON struct {
	HasMismatch  bool   `json:"has_mismatch"`
	ScenarioType string `json:"scenario_type"`
	Message      string `json:"message"`
	Suggestion   string `json:"suggestion"`
}

// encryptionSample is how many keys the encryption status checks.
const encryptionSample = 20

// encryptionStatus is GET /api/dashboard/encryption-status (API.md 5.4). It samples up to
// 20 keys (groups and keys by id) and compares each stored hash with what each mode would
// compute from the value: SHA-256 (no encryption) and the current cipher (HMAC under the
// configured key). Hashes written under another setting than the current one break
// lookups and duplicate detection, which is what this status warns about.
func (a *admin) encryptionStatus(w http.ResponseWriter, r *http.Request) {
	l := langOf(r)
	type sample struct {
		value string
		hash  domain.KeyHash
	}
	var keys []sample
	a.state.Read(func(s *domain.State) {
		groups := s.Groups()
		slices.SortFunc(groups, func(x, y *domain.Group) int { return cmp.Compare(x.ID, y.ID) })
		for _, g := range groups {
			if ks := s.Keys(g.ID); ks != nil {
				ks.Each(func(k *domain.Key) bool {
					keys = append(keys, sample{value: k.Value, hash: k.Hash})
					return len(keys) < encryptionSample
				})
			}
			if len(keys) >= encryptionSample {
				return
			}
		}
	})
	out := encryptionStatusJSON{}
	if len(keys) > 0 {
		plain, current := 0, 0
		for _, k := range keys {
			if sha256.Sum256([]byte(k.value)) == k.hash {
				plain++
			}
			if a.cipher.Hash(k.value) == k.hash {
				current++
			}
		}
		plainRate := float64(plain) / float64(len(keys))
		currentRate := float64(current) / float64(len(keys))
		set := a.d.EncryptionKeySet || a.cipher.Enabled()
		switch {
		case set && plainRate > 0.8:
			out = encryptionStatusJSON{true, "data_not_encrypted", trLang(l, msgEncNotEncrypted), trLang(l, msgEncNotEncryptedHow)}
		case !set && plainRate < 0.2:
			out = encryptionStatusJSON{true, "key_not_configured", trLang(l, msgEncKeyNotConfigured), trLang(l, msgEncKeyNotConfigHow)}
		case set && plainRate < 0.2 && currentRate < 0.2:
			out = encryptionStatusJSON{true, "key_mismatch", trLang(l, msgEncKeyMismatch), trLang(l, msgEncKeyMismatchHow)}
		}
	}
	ok(w, r, out)
}
