package domain

import (
	"math/bits"
	"strconv"
	"strings"
)

// Bounds of the status codes a failover_status_codes spec may name (API.md 7.6).
const (
	minStatusCode = 100
	maxStatusCode = 999
)

// statusWords is the number of 64-bit words needed for one bit per code in 100..999.
const statusWords = (maxStatusCode - minStatusCode + 64) / 64

// StatusCodes is a set of HTTP status codes within 100..999, as named by a
// failover_status_codes spec. The zero value is the empty set, which matches nothing.
// It is a plain value: copies are independent and safe to share between goroutines.
type StatusCodes struct {
	bits [statusWords]uint64
}

// ParseStatusCodes reads the failover_status_codes syntax of API.md 7.6: tokens separated by
// commas or newlines, each a code "NNN" or an inclusive range "A-B". Spaces around numbers and
// around the dash are allowed and empty tokens are ignored, so "" is the empty set. Every code
// must be within 100..999 and a range must have A <= B; otherwise the EINVALID error names the
// offending token.
func ParseStatusCodes(spec string) (StatusCodes, error) {
	var set StatusCodes
	for line := range strings.SplitSeq(spec, "\n") {
		for raw := range strings.SplitSeq(line, ",") {
			token := strings.TrimSpace(raw)
			if token == "" {
				continue
			}
			lo, hi, err := parseStatusToken(token)
			if err != nil {
				return StatusCodes{}, err
			}
			set.addRange(lo, hi)
		}
	}
	return set, nil
}

// parseStatusToken reads one non-empty, trimmed token: "NNN" or "A-B".
func parseStatusToken(token string) (lo, hi int, err error) {
	left, right, isRange := strings.Cut(token, "-")
	lo, err = parseStatusNumber(token, left)
	if err != nil {
		return 0, 0, err
	}
	if !isRange {
		return lo, lo, nil
	}
	hi, err = parseStatusNumber(token, right)
	if err != nil {
		return 0, 0, err
	}
	if lo > hi {
		return 0, 0, Errorf(EINVALID, "invalid status code range %q: start is greater than end", token)
	}
	return lo, hi, nil
}

// parseStatusNumber reads one side of a token: ASCII digits only (no sign), 100..999.
func parseStatusNumber(token, s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, Errorf(EINVALID, "invalid status code %q: expected a code like 429 or a range like 500-599", token)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, Errorf(EINVALID, "invalid status code %q: expected a code like 429 or a range like 500-599", token)
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < minStatusCode || n > maxStatusCode {
		return 0, Errorf(EINVALID, "invalid status code %q: codes must be between %d and %d", token, minStatusCode, maxStatusCode)
	}
	return n, nil
}

func (s *StatusCodes) addRange(lo, hi int) {
	for c := lo; c <= hi; c++ {
		i := c - minStatusCode
		s.bits[i/64] |= 1 << (uint(i) % 64)
	}
}

// Contains reports whether code is in the set. It is O(1) and does not allocate; codes
// outside 100..999 are never contained.
func (s StatusCodes) Contains(code int) bool {
	if code < minStatusCode || code > maxStatusCode {
		return false
	}
	i := code - minStatusCode
	return s.bits[i/64]&(1<<(uint(i)%64)) != 0
}

// IsEmpty reports whether the set matches no code.
func (s StatusCodes) IsEmpty() bool {
	for _, w := range s.bits {
		if w != 0 {
			return false
		}
	}
	return true
}

// Len is the number of codes in the set.
func (s StatusCodes) Len() int {
	n := 0
	for _, w := range s.bits {
		n += bits.OnesCount64(w)
	}
	return n
}

// String gives the canonical spec of the set: ascending codes and ranges joined by commas,
// e.g. "401-403,405-412,429". ParseStatusCodes(s.String()) gives back the same set; the empty
// set is "".
func (s StatusCodes) String() string {
	var b strings.Builder
	for c := minStatusCode; c <= maxStatusCode; c++ {
		if !s.Contains(c) {
			continue
		}
		end := c
		for end < maxStatusCode && s.Contains(end+1) {
			end++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(c))
		if end > c {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(end))
		}
		c = end
	}
	return b.String()
}

// FailureKind says what a failed upstream answer means for the key that was used
// (DESIGN.md, "Key health").
type FailureKind uint8

const (
	// FailureNone: not a failure (1xx, 2xx, 3xx).
	FailureNone FailureKind = iota
	// FailureAuth: the key itself is bad (401, 403, or a message saying the key is invalid,
	// revoked, expired, disabled or its account suspended). Counts toward blacklist_threshold.
	FailureAuth
	// FailureRateLimit: 429 or an exhausted quota. The key rests (cooldown), it is never
	// blacklisted for it.
	FailureRateLimit
	// FailureUpstream: 5xx, timeout or a transport error. The upstream is suspect, not the key.
	FailureUpstream
	// FailureClient: the client's own mistake (400, 404, 413, 422 and any other 4xx not
	// listed above). Answered at once; the key is not touched.
	FailureClient
)

func (k FailureKind) String() string {
	switch k {
	case FailureNone:
		return "none"
	case FailureAuth:
		return "auth"
	case FailureRateLimit:
		return "rate_limit"
	case FailureUpstream:
		return "upstream"
	case FailureClient:
		return "client"
	}
	return "FailureKind(" + strconv.Itoa(int(k)) + ")"
}

// Phrases looked for in upstream error messages. Messages are compared in lower case with
// '_' and '-' read as spaces, so "API_KEY_INVALID", "api-key invalid" and "API key invalid"
// are alike, and phrases match whole words only (see failureHasPhrase). The lists are
// read-only.
var (
	// failureAuthPhrases say that the key (or its account) is not usable.
	failureAuthPhrases = []string{
		"invalid api key",
		"api key invalid",
		"api key not valid",
		"incorrect api key",
		"invalid x api key",
		"api key expired",
		"api key has expired",
		"api key is expired",
		"api key revoked",
		"api key has been revoked",
		"api key is disabled",
		"api key has been disabled",
		"api key has been suspended",
		"key has been suspended",
		"account has been suspended",
		"account is suspended",
		"account suspended",
		"account has been deactivated",
		"account deactivated",
		"account has been disabled",
		"organization has been disabled",
		"invalid authentication",
	}
	// failureQuotaPhrases say that the key ran out of quota or hit a rate limit.
	failureQuotaPhrases = []string{
		"quota",
		"rate limit",
		"ratelimit",
		"resource has been exhausted",
		"resource exhausted",
		"too many requests",
	}
)

// ClassifyFailure maps an upstream answer to a FailureKind. status is the HTTP status, 0 for
// a transport error (timeout, refused connection, ...); message is the upstream's error
// message (case does not matter).
//
//	status              message says                          kind
//	0 (or negative)     -                                     FailureUpstream
//	100-399             -                                     FailureNone
//	401                 -                                     FailureAuth
//	403                 quota / rate limit / exhausted        FailureRateLimit
//	403                 anything else                         FailureAuth
//	429                 -                                     FailureRateLimit
//	other 4xx           key invalid/revoked/expired/...,      FailureAuth
//	                    account suspended/deactivated,
//	                    "permission denied" about a "key"
//	other 4xx           quota / rate limit / exhausted        FailureRateLimit
//	other 4xx           anything else                         FailureClient
//	500 and above       quota / rate limit / exhausted        FailureRateLimit
//	500 and above       anything else                         FailureUpstream
//
// A 400 "API key not valid" is how Gemini reports a bad key, hence the message checks on
// statuses that alone would mean a client mistake.
func ClassifyFailure(status int, message string) FailureKind {
	switch {
	case status <= 0:
		return FailureUpstream
	case status < 400:
		return FailureNone
	case status == 401:
		return FailureAuth
	case status == 429:
		return FailureRateLimit
	case status == 403:
		if failureSaysQuota(failureNormalize(message)) {
			return FailureRateLimit
		}
		return FailureAuth
	case status < 500:
		m := failureNormalize(message)
		if failureSaysAuth(m) {
			return FailureAuth
		}
		if failureSaysQuota(m) {
			return FailureRateLimit
		}
		return FailureClient
	default:
		if failureSaysQuota(failureNormalize(message)) {
			return FailureRateLimit
		}
		return FailureUpstream
	}
}

// failureNormalize lowers the case and turns '_' and '-' into spaces.
func failureNormalize(message string) string {
	if message == "" {
		return ""
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '_', '-':
			return ' '
		}
		return r
	}, strings.ToLower(message))
}

func failureSaysAuth(m string) bool {
	if failureContainsAny(m, failureAuthPhrases) {
		return true
	}
	return failureHasPhrase(m, "permission denied") && failureHasPhrase(m, "key")
}

func failureSaysQuota(m string) bool {
	return failureContainsAny(m, failureQuotaPhrases)
}

func failureContainsAny(m string, phrases []string) bool {
	if m == "" {
		return false
	}
	for _, p := range phrases {
		if failureHasPhrase(m, p) {
			return true
		}
	}
	return false
}

// failureHasPhrase reports whether m holds p as whole words: not preceded by a letter or
// digit, and followed by the end, a non-alphanumeric byte or a plural "s". So "quota" and
// "quotas" match but "quotation" does not, and "rate limit" does not match "generate limit".
func failureHasPhrase(m, p string) bool {
	for from := 0; from <= len(m)-len(p); {
		i := strings.Index(m[from:], p)
		if i < 0 {
			return false
		}
		start, end := from+i, from+i+len(p)
		if (start == 0 || !failureIsWordByte(m[start-1])) && failureWordEnds(m, end) {
			return true
		}
		from = start + 1
	}
	return false
}

func failureWordEnds(m string, end int) bool {
	if end == len(m) || !failureIsWordByte(m[end]) {
		return true
	}
	return m[end] == 's' && (end+1 == len(m) || !failureIsWordByte(m[end+1]))
}

func failureIsWordByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b >= 'A' && b <= 'Z'
}
