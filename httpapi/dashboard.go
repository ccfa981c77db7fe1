package httpapi

import (
	"cmp"
	"context"
	"crypto/sha256"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"gpt-load/domain"
	"gpt-load/projections/sqllog"
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
	KeyCount     statCard `json:"key_count"`
	RPM          statCard `json:"rpm"`
	RequestCount statCard `json:"request_count"`
	ErrorRate    statCard `json:"error_rate"`
	// TokenCount (ours) is the tokens of the last 24 hours, as upstreams reported them,
	// with the trend against the 24 hours before (the rule of request_count).
	TokenCount       statCard          `json:"token_count"`
	SecurityWarnings []securityWarning `json:"security_warnings"`
}

// dashboardStats is GET /api/dashboard/stats (API.md 5.1). Key counts and security
// warnings come from the state; requests per minute from the request logs of the last 20
// minutes; request count, error rate and tokens from the hourly figures of the standard
// groups (aggregates would count their members' traffic twice).
func (a *admin) dashboardStats(w http.ResponseWriter, r *http.Request) {
	l := langOf(r)
	var active, invalid int
	var groups []*domain.Group
	var global string
	var standard []uint64
	a.state.Read(func(s *domain.State) {
		groups, global = s.Groups(), s.Settings.ProxyKeys
		for _, g := range groups {
			if g.Type != domain.GroupStandard {
				continue
			}
			standard = append(standard, g.ID)
			if ks := s.Keys(g.ID); ks != nil {
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
		TokenCount:   statCard{TrendIsGrowth: true},
	}
	if invalid > 0 {
		out.KeyCount.SubValueTip = trLang(l, msgInvalidKeysTip)
	}
	if a.logs != nil {
		if err := a.requestCards(r.Context(), &out, standard); err != nil {
			a.failDB(w, r, err)
			return
		}
	}
	out.SecurityWarnings = a.securityWarnings(l, global, groups)
	ok(w, r, out)
}

// requestCards fills the cards computed from request logs (API.md 5.1).
func (a *admin) requestCards(ctx context.Context, out *dashboardStatsJSON, standard []uint64) error {
	now := a.now()
	cur, err := a.logs.CountFinal(ctx, now.Add(-10*time.Minute), now)
	if err != nil {
		return err
	}
	prev, err := a.logs.CountFinal(ctx, now.Add(-20*time.Minute), now.Add(-10*time.Minute))
	if err != nil {
		return err
	}
	out.RPM = growthCard(float64(cur)/10, float64(prev)/10)

	if standard == nil {
		standard = []uint64{}
	}
	hours, err := a.logs.Hourly(ctx, standard, now.Add(-48*time.Hour), now)
	if err != nil {
		return err
	}
	var c, p sqllog.HourRow // the last 24 hours and the 24 before
	dayAgo := now.Add(-24 * time.Hour)
	for _, h := range hours {
		w := &p
		if !h.Time.Before(dayAgo) {
			w = &c
		}
		w.Success += h.Success
		w.Failure += h.Failure
		w.TotalTokens += h.TotalTokens
	}
	out.RequestCount = growthCard(float64(c.Success+c.Failure), float64(p.Success+p.Failure))
	out.TokenCount = growthCard(float64(c.TotalTokens), float64(p.TotalTokens))
	out.ErrorRate = errorRateCard(errorRate(c), errorRate(p))
	return nil
}

// growthCard is a card whose trend is the change in percent (API.md 5.1): 100 when it
// grew from nothing, 0 when both are nothing.
func growthCard(cur, prev float64) statCard {
	c := statCard{Value: round(cur, 2), TrendIsGrowth: true}
	switch {
	case prev > 0:
		t := (cur - prev) / prev * 100
		c.Trend, c.TrendIsGrowth = round(t, 1), t >= 0
	case cur > 0:
		c.Trend = 100
	}
	return c
}

// errorRateCard is the error rate card: its trend is in percentage points, and a fall
// is the good direction.
func errorRateCard(cur, prev float64) statCard {
	c := statCard{Value: round(cur, 2), TrendIsGrowth: true}
	switch {
	case prev > 0:
		t := cur - prev
		c.Trend, c.TrendIsGrowth = round(t, 2), t < 0
	case cur > 0:
		c.Trend, c.TrendIsGrowth = round(cur, 2), false
	}
	return c
}

func errorRate(h sqllog.HourRow) float64 {
	if total := h.Success + h.Failure; total > 0 {
		return float64(h.Failure) / float64(total) * 100
	}
	return 0
}

func round(v float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(v*p) / p
}

type chartDataset struct {
	Label string  `json:"label"`
	Data  []int64 `json:"data"`
	Color string  `json:"color"`
}

type chartJSON struct {
	Labels   []string       `json:"labels"`
	Datasets []chartDataset `json:"datasets"`
}

// dashboardChart is GET /api/dashboard/chart (API.md 5.3): successes and failures of
// the last 24 hours, hour by hour, the current one last; labels are hour starts in the
// server's local time. Without groupId it sums the standard groups; with it, that group
// (an aggregate's figures are its members' traffic through it).
func (a *admin) dashboardChart(w http.ResponseWriter, r *http.Request) {
	var ids []uint64
	if s := r.URL.Query().Get("groupId"); s != "" {
		id, err := strconv.ParseUint(s, 10, 64)
		if err != nil || id == 0 {
			fail(w, r, errBadRequest(msgInvalidGroupID))
			return
		}
		ids = []uint64{id}
	} else {
		ids = read(a.state, func(s *domain.State) []uint64 {
			out := []uint64{}
			for _, g := range s.Groups() {
				if g.Type == domain.GroupStandard {
					out = append(out, g.ID)
				}
			}
			return out
		})
	}
	first := a.now().Truncate(time.Hour).Add(-23 * time.Hour)
	out := chartJSON{Labels: make([]string, 24), Datasets: []chartDataset{
		{Label: tr(r, msgChartSuccess), Data: make([]int64, 24), Color: "rgba(10, 200, 110, 1)"},
		{Label: tr(r, msgChartFailed), Data: make([]int64, 24), Color: "rgba(255, 70, 70, 1)"},
	}}
	for i := range out.Labels {
		out.Labels[i] = first.Add(time.Duration(i) * time.Hour).Local().Format(time.RFC3339)
	}
	if a.logs != nil {
		hours, err := a.logs.Hourly(r.Context(), ids, first, first.Add(24*time.Hour))
		if err != nil {
			a.failDB(w, r, err)
			return
		}
		for _, h := range hours {
			if i := int(h.Time.Sub(first) / time.Hour); i >= 0 && i < 24 {
				out.Datasets[0].Data[i] += h.Success
				out.Datasets[1].Data[i] += h.Failure
			}
		}
	}
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
		out = append(out, a.proxyKeyWarnings(l, trLang(l, msgGlobalProxyKey, i+1), k)...)
	}
	for _, g := range groups {
		for i, k := range domain.SplitProxyKeys(g.ProxyKeys) {
			out = append(out, a.proxyKeyWarnings(l, trLang(l, msgGroupProxyKey, g.Name, i+1), k)...)
		}
	}
	return out
}

// proxyKeyWarnings are the warnings of one proxy key: first (ours, high) when it is the
// admin key, which lets a client given it run the admin API too, then its strength.
func (a *admin) proxyKeyWarnings(l lang, name, key string) []securityWarning {
	var out []securityWarning
	if a.auth.matches(key) {
		out = append(out, securityWarning{Type: name, Message: trLang(l, msgWarnAdminKeyReuse, name),
			Severity: "high", Suggestion: trLang(l, msgSuggestOwnProxyKey)})
	}
	return append(out, secretWarnings(l, name, key)...)
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
