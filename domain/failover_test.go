package domain_test

import (
	"strconv"
	"strings"
	"testing"

	"gpt-load/domain"
)

// fvCodes lists the codes of a set, ascending.
func fvCodes(s domain.StatusCodes) []int {
	var out []int
	for c := 100; c <= 999; c++ {
		if s.Contains(c) {
			out = append(out, c)
		}
	}
	return out
}

// fvRange lists lo..hi.
func fvRange(lo, hi int) []int {
	var out []int
	for c := lo; c <= hi; c++ {
		out = append(out, c)
	}
	return out
}

func fvConcat(parts ...[]int) []int {
	var out []int
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestParseStatusCodesValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		spec      string
		want      []int
		canonical string
	}{
		{"", nil, ""},
		{"   ", nil, ""},
		{",", nil, ""},
		{" , ,\n,\n\n ", nil, ""},
		{"429", []int{429}, "429"},
		{" 429 ", []int{429}, "429"},
		{"100", []int{100}, "100"},
		{"999", []int{999}, "999"},
		{"0429", []int{429}, "429"},
		{"401,403", []int{401, 403}, "401,403"},
		{"403,401", []int{401, 403}, "401,403"},
		{"401,401", []int{401}, "401"},
		{"401\n403", []int{401, 403}, "401,403"},
		{"401\r\n403\r\n", []int{401, 403}, "401,403"},
		{"401,\n,403", []int{401, 403}, "401,403"},
		{"500-503", fvRange(500, 503), "500-503"},
		{"500 - 503", fvRange(500, 503), "500-503"},
		{" 500-  503 ", fvRange(500, 503), "500-503"},
		{"\t500\t-\t503\t", fvRange(500, 503), "500-503"},
		{"500-500", []int{500}, "500"},
		{"100-999", fvRange(100, 999), "100-999"},
		{"401-403,402-405", fvRange(401, 405), "401-405"},
		{"401,402,403", fvRange(401, 403), "401-403"},
		{"400-403,405-999", fvConcat(fvRange(400, 403), fvRange(405, 999)), "400-403,405-999"},
		{domain.DefaultFailoverStatusCodes, fvConcat(fvRange(401, 403), fvRange(405, 412), fvRange(414, 421), fvRange(423, 999)),
			domain.DefaultFailoverStatusCodes},
		{"429,500-599\n401", fvConcat([]int{401, 429}, fvRange(500, 599)), "401,429,500-599"},
		{"163,164,191,192", []int{163, 164, 191, 192}, "163-164,191-192"}, // across 64-bit word edges
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.spec), func(t *testing.T) {
			t.Parallel()
			set, err := domain.ParseStatusCodes(tt.spec)
			if err != nil {
				t.Fatalf("ParseStatusCodes: %v", err)
			}
			got := fvCodes(set)
			if len(got) != len(tt.want) {
				t.Fatalf("codes = %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("codes = %v, want %v", got, tt.want)
				}
			}
			if set.IsEmpty() != (len(tt.want) == 0) {
				t.Errorf("IsEmpty = %v", set.IsEmpty())
			}
			if set.Len() != len(tt.want) {
				t.Errorf("Len = %d, want %d", set.Len(), len(tt.want))
			}
			if s := set.String(); s != tt.canonical {
				t.Errorf("String = %q, want %q", s, tt.canonical)
			}
		})
	}
}

func TestParseStatusCodesInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		spec string
		want string // part of the message: the offending token, and why
	}{
		{"abc", `"abc"`},
		{"429,abc", `"abc"`},
		{"99", `"99"`},
		{"0", "between 100 and 999"},
		{"1000", "between 100 and 999"},
		{"99999999999999999999999", "between 100 and 999"},
		{"429,1000", `"1000"`},
		{"-429", `"-429"`},
		{"429-", `"429-"`},
		{"-", `"-"`},
		{"500-400", "start is greater than end"},
		{"500-400", `"500-400"`},
		{"100-1000", "between 100 and 999"},
		{"99-200", `"99-200"`},
		{"1-2-3", `"1-2-3"`},
		{"400-500-600", `"400-500-600"`},
		{"+429", `"+429"`},
		{"4 29", `"4 29"`},
		{"429;500", `"429;500"`},
		{"42.9", `"42.9"`},
		{"4e2", `"4e2"`},
		{"0x1f4", `"0x1f4"`},
		{"٤٢٩", `"٤٢٩"`}, // Arabic-Indic digits are not digits here
		{"429 430", `"429 430"`},
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.spec), func(t *testing.T) {
			t.Parallel()
			set, err := domain.ParseStatusCodes(tt.spec)
			if domain.ErrorCode(err) != domain.EINVALID {
				t.Fatalf("err = %v, want EINVALID", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("message %q does not contain %q", err.Error(), tt.want)
			}
			if !set.IsEmpty() {
				t.Errorf("set on error = %s, want empty", set)
			}
		})
	}
}

func TestStatusCodesContainsOutOfRange(t *testing.T) {
	t.Parallel()
	all, err := domain.ParseStatusCodes("100-999")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		code int
		want bool
	}{
		{-1, false}, {0, false}, {99, false}, {100, true}, {500, true}, {999, true}, {1000, false}, {1 << 40, false}, {-1 << 40, false},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.code), func(t *testing.T) {
			t.Parallel()
			if got := all.Contains(tt.code); got != tt.want {
				t.Fatalf("Contains(%d) = %v", tt.code, got)
			}
			var zero domain.StatusCodes
			if zero.Contains(tt.code) {
				t.Fatalf("zero set contains %d", tt.code)
			}
		})
	}
}

func TestStatusCodesContainsDoesNotAllocate(t *testing.T) {
	set, err := domain.ParseStatusCodes(domain.DefaultFailoverStatusCodes)
	if err != nil {
		t.Fatal(err)
	}
	var sink bool
	allocs := testing.AllocsPerRun(100, func() {
		for c := 0; c < 1100; c++ {
			sink = set.Contains(c) != sink
		}
	})
	if allocs != 0 {
		t.Fatalf("Contains allocates %v times per run", allocs)
	}
}

func BenchmarkStatusCodesContains(b *testing.B) {
	set, err := domain.ParseStatusCodes(domain.DefaultFailoverStatusCodes)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	n := 0
	for i := 0; b.Loop(); i++ {
		if set.Contains(400 + i%200) {
			n++
		}
	}
	_ = n
}

func FuzzParseStatusCodes(f *testing.F) {
	for _, seed := range []string{
		"", "429", "400-403,405-999", domain.DefaultFailoverStatusCodes, "500 - 599\n429", "1-2", "99-100",
		"999-1000", "-", ",,,", "\n", "4 2 9", "500-400", "0429", "+1", "100-999,100-999",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		set, err := domain.ParseStatusCodes(spec)
		if err != nil {
			if domain.ErrorCode(err) != domain.EINVALID {
				t.Fatalf("error %v has code %q, want EINVALID", err, domain.ErrorCode(err))
			}
			if !set.IsEmpty() {
				t.Fatalf("non-empty set with an error")
			}
			return
		}
		// Only codes 100..999, and nothing when the spec names no code.
		for _, c := range []int{-1, 0, 1, 99, 1000, 1001, 1 << 20} {
			if set.Contains(c) {
				t.Fatalf("set of %q contains %d", spec, c)
			}
		}
		codes := fvCodes(set)
		if len(codes) != set.Len() || set.IsEmpty() != (len(codes) == 0) {
			t.Fatalf("Len %d / IsEmpty %v disagree with %d codes", set.Len(), set.IsEmpty(), len(codes))
		}
		if strings.Trim(spec, " \t\r\n\v\f,") == "" && !set.IsEmpty() {
			t.Fatalf("blank spec %q gave codes %v", spec, codes)
		}
		// The canonical form parses back to the same set.
		again, err := domain.ParseStatusCodes(set.String())
		if err != nil {
			t.Fatalf("canonical form %q does not parse: %v", set.String(), err)
		}
		if again != set {
			t.Fatalf("canonical form %q of %q gives another set", set.String(), spec)
		}
	})
}

func TestFailureKindString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		kind domain.FailureKind
		want string
	}{
		{domain.FailureNone, "none"},
		{domain.FailureAuth, "auth"},
		{domain.FailureRateLimit, "rate_limit"},
		{domain.FailureUpstream, "upstream"},
		{domain.FailureClient, "client"},
		{domain.FailureKind(42), "FailureKind(42)"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			if got := tt.kind.String(); got != tt.want {
				t.Fatalf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestClassifyFailure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		status  int
		message string
		want    domain.FailureKind
	}{
		// Transport errors and odd statuses.
		{"transport error", 0, "dial tcp: connection refused", domain.FailureUpstream},
		{"timeout", 0, "context deadline exceeded", domain.FailureUpstream},
		{"negative status", -1, "", domain.FailureUpstream},
		{"transport error saying quota", 0, "quota", domain.FailureUpstream},
		// Success and redirects.
		{"100", 100, "", domain.FailureNone},
		{"200", 200, "", domain.FailureNone},
		{"204", 204, "", domain.FailureNone},
		{"200 with an invalid key text", 200, "invalid api key", domain.FailureNone},
		{"301", 301, "", domain.FailureNone},
		{"399", 399, "", domain.FailureNone},
		// Authentication.
		{"401", 401, "", domain.FailureAuth},
		{"401 any text", 401, "Incorrect API key provided: sk-abc****wxyz", domain.FailureAuth},
		{"401 saying quota", 401, "quota exceeded", domain.FailureAuth},
		{"403", 403, "", domain.FailureAuth},
		{"403 permission denied", 403, "Permission denied: Consumer 'api_key:AIza****' has been suspended.", domain.FailureAuth},
		{"403 quota", 403, "Quota exceeded for quota metric 'Generate Content API requests per minute'", domain.FailureRateLimit},
		{"403 resource exhausted", 403, "Resource has been exhausted (e.g. check quota).", domain.FailureRateLimit},
		{"403 rate limit", 403, "Rate limit reached", domain.FailureRateLimit},
		// Rate limits.
		{"429", 429, "", domain.FailureRateLimit},
		{"429 insufficient quota", 429, "You exceeded your current quota, please check your plan and billing details.", domain.FailureRateLimit},
		{"429 invalid key text", 429, "invalid api key", domain.FailureRateLimit},
		// Upstream trouble.
		{"500", 500, "", domain.FailureUpstream},
		{"502", 502, "Bad Gateway", domain.FailureUpstream},
		{"503 overloaded", 503, "The model is overloaded. Please try again later.", domain.FailureUpstream},
		{"529", 529, "Overloaded", domain.FailureUpstream},
		{"599", 599, "", domain.FailureUpstream},
		{"600", 600, "", domain.FailureUpstream},
		{"500 quota", 500, "quota exceeded", domain.FailureRateLimit},
		{"503 resource exhausted", 503, "RESOURCE_EXHAUSTED", domain.FailureRateLimit},
		{"500 invalid key text", 500, "invalid api key", domain.FailureUpstream},
		// Client mistakes.
		{"400", 400, "", domain.FailureClient},
		{"400 bad body", 400, "'messages' is a required property", domain.FailureClient},
		{"400 unknown parameter key", 400, "Invalid value for key 'temperature'", domain.FailureClient},
		{"400 json quotation", 400, "Expected double-quoted property name: missing quotation mark", domain.FailureClient},
		{"400 generate limit", 400, "cannot generate limit tokens", domain.FailureClient},
		{"402", 402, "Insufficient Balance", domain.FailureClient},
		{"404", 404, "model not found", domain.FailureClient},
		{"405", 405, "", domain.FailureClient},
		{"408", 408, "", domain.FailureClient},
		{"413", 413, "Request too large", domain.FailureClient},
		{"422", 422, "Unprocessable Entity", domain.FailureClient},
		{"499", 499, "", domain.FailureClient},
		// Key problems disguised as client mistakes.
		{"400 gemini bad key", 400, "API key not valid. Please pass a valid API key.", domain.FailureAuth},
		{"400 API_KEY_INVALID", 400, "API_KEY_INVALID", domain.FailureAuth},
		{"400 invalid api key", 400, "Invalid API Key", domain.FailureAuth},
		{"400 invalid_api_key", 400, "invalid_api_key", domain.FailureAuth},
		{"400 invalid api-key", 400, "invalid api-key provided", domain.FailureAuth},
		{"400 incorrect api key", 400, "Incorrect API key provided", domain.FailureAuth},
		{"400 anthropic", 400, "invalid x-api-key", domain.FailureAuth},
		{"400 expired", 400, "API key expired. Please renew the API key.", domain.FailureAuth},
		{"400 revoked", 400, "This API key has been revoked", domain.FailureAuth},
		{"400 disabled", 400, "api key is disabled", domain.FailureAuth},
		{"404 suspended account", 404, "Your account has been suspended", domain.FailureAuth},
		{"400 deactivated", 400, "This account has been deactivated", domain.FailureAuth},
		{"400 organization disabled", 400, "organization has been disabled.", domain.FailureAuth},
		{"400 permission denied key", 400, "Permission denied on this key", domain.FailureAuth},
		{"400 permission denied without key", 400, "permission denied for model", domain.FailureClient},
		{"400 invalid authentication", 400, "Invalid Authentication", domain.FailureAuth},
		// Quota and rate limits disguised as client mistakes.
		{"400 quota", 400, "Quota exceeded for this project", domain.FailureRateLimit},
		{"400 quotas", 400, "all quotas used", domain.FailureRateLimit},
		{"400 insufficient_quota", 400, "insufficient_quota", domain.FailureRateLimit},
		{"400 rate limit", 400, "rate limit reached for requests", domain.FailureRateLimit},
		{"400 rate_limit_exceeded", 400, "rate_limit_exceeded", domain.FailureRateLimit},
		{"400 ratelimit", 400, "RateLimit hit", domain.FailureRateLimit},
		{"400 resource exhausted", 400, "Resource has been exhausted", domain.FailureRateLimit},
		{"400 too many requests", 400, "Too Many Requests", domain.FailureRateLimit},
		{"400 key and quota", 400, "invalid api key; quota", domain.FailureAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := domain.ClassifyFailure(tt.status, tt.message); got != tt.want {
				t.Fatalf("ClassifyFailure(%d, %q) = %v, want %v", tt.status, tt.message, got, tt.want)
			}
		})
	}
}

// Every status gets a kind consistent with its class when the message says nothing special.
func TestClassifyFailureByStatus(t *testing.T) {
	t.Parallel()
	for status := -5; status <= 1000; status++ {
		got := domain.ClassifyFailure(status, "something went wrong")
		var want domain.FailureKind
		switch {
		case status <= 0, status >= 500:
			want = domain.FailureUpstream
		case status < 400:
			want = domain.FailureNone
		case status == 401, status == 403:
			want = domain.FailureAuth
		case status == 429:
			want = domain.FailureRateLimit
		default:
			want = domain.FailureClient
		}
		if got != want {
			t.Errorf("ClassifyFailure(%d) = %v, want %v", status, got, want)
		}
	}
}
