package domain_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gpt-load/domain"
)

// vrCheckInvalid asserts that err is an EINVALID *domain.Error whose field errors are
// exactly the keys of want (in any order), each message containing the mapped text.
func vrCheckInvalid(t *testing.T, err error, want map[string]string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want fields %v", want)
	}
	var de *domain.Error
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T) is not a *domain.Error", err, err)
	}
	if de.Code != domain.EINVALID {
		t.Fatalf("code = %q, want %q (%v)", de.Code, domain.EINVALID, err)
	}
	got := map[string]string{}
	for _, f := range de.Fields {
		if _, dup := got[f.Field]; dup {
			t.Errorf("field %q reported twice: %v", f.Field, de.Fields)
		}
		got[f.Field] = f.Message
	}
	if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want))) {
		t.Fatalf("fields = %v, want %v", de.Fields, want)
	}
	for f, sub := range want {
		if !strings.Contains(got[f], sub) {
			t.Errorf("field %q message = %q, want it to contain %q", f, got[f], sub)
		}
	}
}

func vrRaw(m map[string]string) map[string]json.RawMessage {
	if m == nil {
		return nil
	}
	out := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		out[k] = json.RawMessage(v)
	}
	return out
}

func TestSettingDefs(t *testing.T) {
	t.Parallel()
	type row struct {
		key, category string
		typ           domain.SettingType
		def           string
		min           *int
		required      bool
		overridable   bool
	}
	zero, one := new(0), new(1)
	want := []row{
		{"app_url", "basic", domain.SettingString, "http://localhost:3001", nil, true, false},
		{"proxy_keys", "basic", domain.SettingString, "", nil, true, false},
		{"request_log_retention_days", "basic", domain.SettingInt, "7", zero, true, false},
		{"request_log_write_interval_minutes", "basic", domain.SettingInt, "1", zero, true, false},
		{"enable_request_body_logging", "basic", domain.SettingBool, "false", nil, false, true},
		{"request_timeout", "request", domain.SettingInt, "600", one, true, true},
		{"connect_timeout", "request", domain.SettingInt, "15", one, true, true},
		{"idle_conn_timeout", "request", domain.SettingInt, "120", one, true, true},
		{"response_header_timeout", "request", domain.SettingInt, "600", one, true, true},
		{"max_idle_conns", "request", domain.SettingInt, "100", one, true, true},
		{"max_idle_conns_per_host", "request", domain.SettingInt, "50", one, true, true},
		{"proxy_url", "request", domain.SettingString, "", nil, false, true},
		{"max_retries", "key", domain.SettingInt, "3", zero, true, true},
		{"blacklist_threshold", "key", domain.SettingInt, "3", zero, true, true},
		{"failover_status_codes", "key", domain.SettingString, domain.DefaultFailoverStatusCodes, nil, false, true},
		{"key_validation_interval_minutes", "key", domain.SettingInt, "60", one, true, true},
		{"key_validation_concurrency", "key", domain.SettingInt, "10", one, true, true},
		{"key_validation_timeout_seconds", "key", domain.SettingInt, "20", one, true, true},
		{"retry_empty_response", "key", domain.SettingBool, "false", nil, false, true},  // ours
		{"prompt_cache_affinity", "key", domain.SettingBool, "false", nil, false, true}, // ours
		{"upstream_key_rpm", "key", domain.SettingInt, "0", zero, true, true},           // ours
		{"upstream_key_tpm", "key", domain.SettingInt, "0", zero, true, true},           // ours
	}
	defs := domain.SettingDefs()
	if len(defs) != len(want) {
		t.Fatalf("SettingDefs has %d entries, want %d", len(defs), len(want))
	}
	for i, w := range want {
		t.Run(w.key, func(t *testing.T) {
			t.Parallel()
			d := defs[i]
			if d.Key != w.key {
				t.Fatalf("entry %d key = %q, want %q", i, d.Key, w.key)
			}
			if d.Category != w.category || d.Type != w.typ || d.Default != w.def ||
				d.Required != w.required || d.Overridable != w.overridable {
				t.Errorf("got %+v, want %+v", d, w)
			}
			switch {
			case (d.Min == nil) != (w.min == nil):
				t.Errorf("Min = %v, want %v", d.Min, w.min)
			case d.Min != nil && *d.Min != *w.min:
				t.Errorf("Min = %d, want %d", *d.Min, *w.min)
			}
			if strings.TrimSpace(d.Name) == "" || strings.TrimSpace(d.Description) == "" {
				t.Errorf("setting %q lacks a name or description", d.Key)
			}
			got, ok := domain.LookupSetting(w.key)
			if !ok || !reflect.DeepEqual(got, d) {
				t.Errorf("LookupSetting(%q) = %+v, %v; want %+v", w.key, got, ok, d)
			}
		})
	}
}

func TestSettingDefsAreCopies(t *testing.T) {
	t.Parallel()
	defs := domain.SettingDefs()
	for i := range defs {
		if defs[i].Min != nil {
			*defs[i].Min = 12345
		}
		defs[i].Key = "changed"
	}
	d, ok := domain.LookupSetting("request_timeout")
	if !ok || d.Min == nil || *d.Min != 1 {
		t.Fatalf("LookupSetting after mutation = %+v, %v", d, ok)
	}
	if again := domain.SettingDefs(); again[0].Key != "app_url" || *again[2].Min != 0 {
		t.Fatalf("SettingDefs changed by a caller: %+v", again[:3])
	}
}

func TestLookupSettingUnknown(t *testing.T) {
	t.Parallel()
	for _, key := range []string{"", "unknown", "APP_URL", " app_url", "effective_config"} {
		t.Run(strconv.Quote(key), func(t *testing.T) {
			t.Parallel()
			if d, ok := domain.LookupSetting(key); ok {
				t.Fatalf("LookupSetting(%q) = %+v, true", key, d)
			}
		})
	}
}

func TestDefaultSettings(t *testing.T) {
	t.Parallel()
	want := domain.Settings{
		AppURL:                         "http://localhost:3001",
		ProxyKeys:                      "",
		RequestLogRetentionDays:        7,
		RequestLogWriteIntervalMinutes: 1,
		EnableRequestBodyLogging:       false,
		RequestTimeout:                 600,
		ConnectTimeout:                 15,
		IdleConnTimeout:                120,
		ResponseHeaderTimeout:          600,
		MaxIdleConns:                   100,
		MaxIdleConnsPerHost:            50,
		ProxyURL:                       "",
		MaxRetries:                     3,
		BlacklistThreshold:             3,
		FailoverStatusCodes:            "401-403,405-412,414-421,423-999",
		KeyValidationIntervalMinutes:   60,
		KeyValidationConcurrency:       10,
		KeyValidationTimeoutSeconds:    20,
	}
	if got := domain.DefaultSettings(); got != want {
		t.Fatalf("DefaultSettings() =\n%+v\nwant\n%+v", got, want)
	}
	// The defaults of SettingDefs say the same thing, as strings.
	values := domain.DefaultSettings().Values()
	for _, d := range domain.SettingDefs() {
		if got := fmt.Sprint(values[d.Key]); got != d.Default {
			t.Errorf("default of %q: Settings has %q, SettingDef has %q", d.Key, got, d.Default)
		}
	}
}

func TestDefaultFailoverStatusCodes(t *testing.T) {
	t.Parallel()
	set, err := domain.ParseStatusCodes(domain.DefaultFailoverStatusCodes)
	if err != nil {
		t.Fatal(err)
	}
	for code := 100; code <= 999; code++ {
		want := code >= 400 && code != 400 && code != 404 && code != 413 && code != 422
		if got := set.Contains(code); got != want {
			t.Errorf("default failover contains %d = %v, want %v", code, got, want)
		}
	}
}

func TestSettingsJSONTags(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(domain.DefaultSettings())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, d := range domain.SettingDefs() {
		keys = append(keys, d.Key)
	}
	if got := slices.Sorted(maps.Keys(m)); !slices.Equal(got, slices.Sorted(slices.Values(keys))) {
		t.Fatalf("JSON keys = %v, want %v", got, keys)
	}
	var back domain.Settings
	if err := json.Unmarshal(b, &back); err != nil || back != domain.DefaultSettings() {
		t.Fatalf("round trip = %+v, %v", back, err)
	}
}

func TestSettingsApplyValid(t *testing.T) {
	t.Parallel()
	base := domain.DefaultSettings()
	tests := []struct {
		name    string
		changes map[string]string
		want    func(s *domain.Settings)
	}{
		{"nil changes", nil, func(*domain.Settings) {}},
		{"empty changes", map[string]string{}, func(*domain.Settings) {}},
		{"int", map[string]string{"request_timeout": "30"}, func(s *domain.Settings) { s.RequestTimeout = 30 }},
		{"int at minimum 1", map[string]string{"connect_timeout": "1"}, func(s *domain.Settings) { s.ConnectTimeout = 1 }},
		{"int at minimum 0", map[string]string{"max_retries": "0"}, func(s *domain.Settings) { s.MaxRetries = 0 }},
		{"int with zero fraction", map[string]string{"idle_conn_timeout": "5.0"}, func(s *domain.Settings) { s.IdleConnTimeout = 5 }},
		{"int with exponent", map[string]string{"max_idle_conns": "1e2"}, func(s *domain.Settings) { s.MaxIdleConns = 100 }},
		{"int negative zero", map[string]string{"blacklist_threshold": "-0"}, func(s *domain.Settings) { s.BlacklistThreshold = 0 }},
		{"int zero with exponent", map[string]string{"blacklist_threshold": "0.0e5"}, func(s *domain.Settings) { s.BlacklistThreshold = 0 }},
		{"int at maximum", map[string]string{"request_log_retention_days": "3650"}, func(s *domain.Settings) { s.RequestLogRetentionDays = 3650 }},
		{"int surrounded by spaces", map[string]string{"key_validation_concurrency": " 4 "}, func(s *domain.Settings) { s.KeyValidationConcurrency = 4 }},
		{"bool true", map[string]string{"enable_request_body_logging": "true"}, func(s *domain.Settings) { s.EnableRequestBodyLogging = true }},
		{"bool false", map[string]string{"enable_request_body_logging": "false"}, func(s *domain.Settings) { s.EnableRequestBodyLogging = false }},
		{"app_url https with path", map[string]string{"app_url": `"https://gpt-load.example.com/base/"`}, func(s *domain.Settings) { s.AppURL = "https://gpt-load.example.com/base/" }},
		{"app_url trimmed", map[string]string{"app_url": `"  http://10.0.0.1:3001 "`}, func(s *domain.Settings) { s.AppURL = "http://10.0.0.1:3001" }},
		{"app_url upper-case scheme", map[string]string{"app_url": `"HTTPS://Example.com"`}, func(s *domain.Settings) { s.AppURL = "HTTPS://Example.com" }},
		{"proxy_keys normalized", map[string]string{"proxy_keys": `" a , b,,c ,"`}, func(s *domain.Settings) { s.ProxyKeys = "a,b,c" }},
		{"proxy_keys single", map[string]string{"proxy_keys": `"sk-1"`}, func(s *domain.Settings) { s.ProxyKeys = "sk-1" }},
		{"proxy_url empty", map[string]string{"proxy_url": `""`}, func(s *domain.Settings) { s.ProxyURL = "" }},
		{"proxy_url blank", map[string]string{"proxy_url": `"   "`}, func(s *domain.Settings) { s.ProxyURL = "" }},
		{"proxy_url http", map[string]string{"proxy_url": `"http://proxy.local:8080"`}, func(s *domain.Settings) { s.ProxyURL = "http://proxy.local:8080" }},
		{"proxy_url https with auth", map[string]string{"proxy_url": `"https://u:p@proxy.local"`}, func(s *domain.Settings) { s.ProxyURL = "https://u:p@proxy.local" }},
		{"proxy_url socks5", map[string]string{"proxy_url": `"socks5://127.0.0.1:1080"`}, func(s *domain.Settings) { s.ProxyURL = "socks5://127.0.0.1:1080" }},
		{"failover codes", map[string]string{"failover_status_codes": `"429, 500-599"`}, func(s *domain.Settings) { s.FailoverStatusCodes = "429, 500-599" }},
		{"failover codes empty", map[string]string{"failover_status_codes": `""`}, func(s *domain.Settings) { s.FailoverStatusCodes = "" }},
		{"failover codes multi-line", map[string]string{"failover_status_codes": `"401\n429\n"`}, func(s *domain.Settings) { s.FailoverStatusCodes = "401\n429" }},
		{"several at once", map[string]string{
			"max_retries": "5", "blacklist_threshold": "0", "enable_request_body_logging": "true",
			"proxy_keys": `"x,y"`, "key_validation_timeout_seconds": "7",
		}, func(s *domain.Settings) {
			s.MaxRetries, s.BlacklistThreshold, s.EnableRequestBodyLogging, s.ProxyKeys, s.KeyValidationTimeoutSeconds = 5, 0, true, "x,y", 7
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			want := base
			tt.want(&want)
			got, err := base.Apply(vrRaw(tt.changes))
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if got != want {
				t.Fatalf("Apply =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestSettingsApplyInvalid(t *testing.T) {
	t.Parallel()
	base := domain.DefaultSettings()
	base.ProxyKeys = "sk-admin"
	tests := []struct {
		name    string
		changes map[string]string
		want    map[string]string // field -> part of the message
	}{
		{"unknown key", map[string]string{"nope": "1"}, map[string]string{"nope": "unknown setting"}},
		{"unknown key case", map[string]string{"Request_Timeout": "1"}, map[string]string{"Request_Timeout": "unknown setting"}},
		{"null int", map[string]string{"max_retries": "null"}, map[string]string{"max_retries": "null"}},
		{"null string", map[string]string{"proxy_url": "null"}, map[string]string{"proxy_url": "null"}},
		{"null bool", map[string]string{"enable_request_body_logging": "null"}, map[string]string{"enable_request_body_logging": "null"}},
		{"empty raw", map[string]string{"max_retries": ""}, map[string]string{"max_retries": "null"}},
		{"int below minimum 1", map[string]string{"request_timeout": "0"}, map[string]string{"request_timeout": "between 1 and 86400, got 0"}},
		{"int below minimum 0", map[string]string{"max_retries": "-1"}, map[string]string{"max_retries": "between 0 and 10, got -1"}},
		{"int very negative", map[string]string{"max_retries": "-1e300"}, map[string]string{"max_retries": "between 0 and 10, got less"}},
		{"int beyond float range negative", map[string]string{"max_retries": "-1e400"}, map[string]string{"max_retries": "between 0 and 10"}},
		{"int above maximum", map[string]string{"max_retries": "11"}, map[string]string{"max_retries": "between 0 and 10, got 11"}},
		{"int int32 largest", map[string]string{"key_validation_concurrency": "2147483647"}, map[string]string{"key_validation_concurrency": "between 1 and 100"}},
		{"int fraction", map[string]string{"request_timeout": "1.5"}, map[string]string{"request_timeout": "whole number"}},
		{"int tiny fraction", map[string]string{"request_timeout": "1e-400"}, map[string]string{"request_timeout": "whole number"}},
		{"int as string", map[string]string{"request_timeout": `"600"`}, map[string]string{"request_timeout": "must be a number"}},
		{"int as bool", map[string]string{"max_retries": "true"}, map[string]string{"max_retries": "must be a number"}},
		{"int as object", map[string]string{"max_retries": "{}"}, map[string]string{"max_retries": "must be a number"}},
		{"int as array", map[string]string{"max_retries": "[1]"}, map[string]string{"max_retries": "must be a number"}},
		{"int malformed", map[string]string{"max_retries": "1x"}, map[string]string{"max_retries": "must be a number"}},
		{"int too large", map[string]string{"max_retries": "2147483648"}, map[string]string{"max_retries": "between 0 and 10, got more"}},
		{"int huge literal", map[string]string{"max_retries": "99999999999999999999999"}, map[string]string{"max_retries": "between 0 and 10"}},
		{"int beyond float range", map[string]string{"max_retries": "1e400"}, map[string]string{"max_retries": "between 0 and 10"}},
		{"bool as string", map[string]string{"enable_request_body_logging": `"true"`}, map[string]string{"enable_request_body_logging": "boolean"}},
		{"bool as number", map[string]string{"enable_request_body_logging": "1"}, map[string]string{"enable_request_body_logging": "boolean"}},
		{"string as number", map[string]string{"proxy_url": "1"}, map[string]string{"proxy_url": "must be a string"}},
		{"string as bool", map[string]string{"app_url": "true"}, map[string]string{"app_url": "must be a string"}},
		{"string malformed", map[string]string{"app_url": `"abc`}, map[string]string{"app_url": "must be a string"}},
		{"app_url empty", map[string]string{"app_url": `""`}, map[string]string{"app_url": "must not be empty"}},
		{"app_url blank", map[string]string{"app_url": `"  "`}, map[string]string{"app_url": "must not be empty"}},
		{"app_url relative", map[string]string{"app_url": `"/proxy"`}, map[string]string{"app_url": "absolute"}},
		{"app_url no scheme", map[string]string{"app_url": `"example.com"`}, map[string]string{"app_url": "absolute"}},
		{"app_url ftp", map[string]string{"app_url": `"ftp://example.com"`}, map[string]string{"app_url": "absolute"}},
		{"app_url no host", map[string]string{"app_url": `"http://"`}, map[string]string{"app_url": "absolute"}},
		{"app_url only port", map[string]string{"app_url": `"http://:3001"`}, map[string]string{"app_url": "absolute"}},
		{"app_url unparsable", map[string]string{"app_url": `"http://exa mple.com"`}, map[string]string{"app_url": "absolute"}},
		{"proxy_keys empty", map[string]string{"proxy_keys": `""`}, map[string]string{"proxy_keys": "must not be empty"}},
		{"proxy_keys only commas", map[string]string{"proxy_keys": `" , ,, "`}, map[string]string{"proxy_keys": "must not be empty"}},
		{"proxy_url bad scheme", map[string]string{"proxy_url": `"ftp://proxy:21"`}, map[string]string{"proxy_url": "socks5://"}},
		{"proxy_url socks4", map[string]string{"proxy_url": `"socks4://proxy:1080"`}, map[string]string{"proxy_url": "socks5://"}},
		{"proxy_url no scheme", map[string]string{"proxy_url": `"proxy.local:8080"`}, map[string]string{"proxy_url": "socks5://"}},
		{"proxy_url no host", map[string]string{"proxy_url": `"http://"`}, map[string]string{"proxy_url": "socks5://"}},
		{"proxy_url unparsable", map[string]string{"proxy_url": `"http://[::1"`}, map[string]string{"proxy_url": "socks5://"}},
		{"failover bad token", map[string]string{"failover_status_codes": `"429,abc"`}, map[string]string{"failover_status_codes": `"abc"`}},
		{"failover out of range", map[string]string{"failover_status_codes": `"99"`}, map[string]string{"failover_status_codes": "between 100 and 999"}},
		{"failover reversed", map[string]string{"failover_status_codes": `"599-500"`}, map[string]string{"failover_status_codes": "599-500"}},
		{"failover as array", map[string]string{"failover_status_codes": `[429]`}, map[string]string{"failover_status_codes": "must be a string"}},
		{"every problem is reported", map[string]string{
			"request_timeout": "0", "enable_request_body_logging": `"yes"`, "x": "1", "app_url": `""`,
			"max_retries": "2", // valid, but not applied since others fail
		}, map[string]string{
			"request_timeout": "between 1 and 86400", "enable_request_body_logging": "boolean", "x": "unknown setting", "app_url": "must not be empty",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := base.Apply(vrRaw(tt.changes))
			vrCheckInvalid(t, err, tt.want)
			if got != base {
				t.Errorf("Apply changed the settings on error: %+v", got)
			}
		})
	}
}

func TestSettingsApplyErrorOrder(t *testing.T) {
	t.Parallel()
	_, err := domain.DefaultSettings().Apply(vrRaw(map[string]string{"z": "1", "a": "1", "max_retries": "x", "connect_timeout": "0"}))
	fields := domain.ErrorFields(err)
	var names []string
	for _, f := range fields {
		names = append(names, f.Field)
	}
	if want := []string{"a", "connect_timeout", "max_retries", "z"}; !slices.Equal(names, want) {
		t.Fatalf("fields = %v, want %v (sorted by key)", names, want)
	}
	if msg := err.Error(); !strings.Contains(msg, "connect_timeout: must be between 1 and 600") {
		t.Fatalf("Error() = %q, want it to name the field", msg)
	}
}

// Every int setting enforces its own range and the common rules.
func TestSettingsApplyIntRules(t *testing.T) {
	t.Parallel()
	for _, d := range domain.SettingDefs() {
		if d.Type != domain.SettingInt {
			continue
		}
		t.Run(d.Key, func(t *testing.T) {
			t.Parallel()
			if d.Min == nil || d.Max == nil || *d.Max <= *d.Min {
				t.Fatalf("int setting without a range: min %v, max %v", d.Min, d.Max)
			}
			base := domain.DefaultSettings()
			min, max := *d.Min, *d.Max
			for _, ok := range []string{strconv.Itoa(min), strconv.Itoa(min + 1), strconv.Itoa(min) + ".0", strconv.Itoa(max), d.Default} {
				got, err := base.Apply(vrRaw(map[string]string{d.Key: ok}))
				if err != nil {
					t.Fatalf("%s=%s: %v", d.Key, ok, err)
				}
				want, _ := strconv.ParseFloat(ok, 64)
				if v, _ := got.Value(d.Key); v != int(want) {
					t.Errorf("%s=%s: value %v", d.Key, ok, v)
				}
			}
			for _, bad := range []string{strconv.Itoa(min - 1), strconv.Itoa(max + 1), "2147483647", "2.5", `"5"`, "true", "null", "2147483648"} {
				if _, err := base.Apply(vrRaw(map[string]string{d.Key: bad})); domain.ErrorCode(err) != domain.EINVALID {
					t.Errorf("%s=%s: err = %v, want EINVALID", d.Key, bad, err)
				}
			}
			// A group override keeps to the same range.
			if !d.Overridable {
				return
			}
			_, err := domain.ParseGroupConfig([]byte(`{"` + d.Key + `":` + strconv.Itoa(max+1) + `}`))
			if want := fmt.Sprintf("config.%s: must be between %d and %d", d.Key, min, max); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("override %s=%d: err = %v, want %q", d.Key, max+1, err, want)
			}
		})
	}
}

func TestSettingsValues(t *testing.T) {
	t.Parallel()
	s := domain.DefaultSettings()
	s.AppURL, s.ProxyKeys, s.EnableRequestBodyLogging, s.MaxRetries = "https://x.example", "a,b", true, 9
	values := s.Values()
	if len(values) != 22 {
		t.Fatalf("Values has %d keys, want 22", len(values))
	}
	want := map[string]any{
		"app_url": "https://x.example", "proxy_keys": "a,b", "request_log_retention_days": 7,
		"request_log_write_interval_minutes": 1, "enable_request_body_logging": true,
		"request_timeout": 600, "connect_timeout": 15, "idle_conn_timeout": 120,
		"response_header_timeout": 600, "max_idle_conns": 100, "max_idle_conns_per_host": 50,
		"proxy_url": "", "max_retries": 9, "blacklist_threshold": 3,
		"failover_status_codes": domain.DefaultFailoverStatusCodes, "key_validation_interval_minutes": 60,
		"key_validation_concurrency": 10, "key_validation_timeout_seconds": 20,
		"retry_empty_response": false, "prompt_cache_affinity": false, "upstream_key_rpm": 0,
		"upstream_key_tpm": 0,
	}
	if !reflect.DeepEqual(values, want) {
		t.Fatalf("Values =\n%v\nwant\n%v", values, want)
	}
	for _, d := range domain.SettingDefs() {
		t.Run(d.Key, func(t *testing.T) {
			t.Parallel()
			v, ok := s.Value(d.Key)
			if !ok || v != want[d.Key] {
				t.Fatalf("Value(%q) = %v, %v", d.Key, v, ok)
			}
			var typeOK bool
			switch d.Type {
			case domain.SettingInt:
				_, typeOK = v.(int)
			case domain.SettingBool:
				_, typeOK = v.(bool)
			case domain.SettingString:
				_, typeOK = v.(string)
			}
			if !typeOK {
				t.Fatalf("Value(%q) is %T, want %s", d.Key, v, d.Type)
			}
		})
	}
	if v, ok := s.Value("nope"); ok || v != nil {
		t.Fatalf("Value(nope) = %v, %v", v, ok)
	}
}

// Apply then Values round-trips every setting through its JSON form.
func TestSettingsApplyRoundTrip(t *testing.T) {
	t.Parallel()
	s := domain.DefaultSettings()
	s.ProxyKeys = "k1,k2"
	s.ProxyURL = "socks5://127.0.0.1:1080"
	s.FailoverStatusCodes = "429"
	changes := map[string]json.RawMessage{}
	for k, v := range s.Values() {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		changes[k] = b
	}
	got, err := domain.Settings{}.Apply(changes)
	if err != nil || got != s {
		t.Fatalf("Apply(Values()) = %+v, %v; want %+v", got, err, s)
	}
}

func TestParseGroupConfigValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		raw  string
		want map[string]any // Map() of the result
	}{
		{"absent", "", nil},
		{"blank", "  \n", nil},
		{"null", "null", nil},
		{"empty object", "{}", nil},
		{"null values dropped", `{"max_retries":null,"proxy_url":null}`, nil},
		{"int", `{"request_timeout":30}`, map[string]any{"request_timeout": 30}},
		{"int zero fraction", `{"max_retries":2.0}`, map[string]any{"max_retries": 2}},
		{"int at minimum 0", `{"blacklist_threshold":0}`, map[string]any{"blacklist_threshold": 0}},
		{"int at minimum 1", `{"key_validation_concurrency":1}`, map[string]any{"key_validation_concurrency": 1}},
		{"bool", `{"enable_request_body_logging":false}`, map[string]any{"enable_request_body_logging": false}},
		{"proxy_url", `{"proxy_url":"socks5://p:1080"}`, map[string]any{"proxy_url": "socks5://p:1080"}},
		{"proxy_url empty is kept", `{"proxy_url":""}`, map[string]any{"proxy_url": ""}},
		{"failover codes", `{"failover_status_codes":" 401-403,429 "}`, map[string]any{"failover_status_codes": "401-403,429"}},
		{"failover codes empty is kept", `{"failover_status_codes":""}`, map[string]any{"failover_status_codes": ""}},
		{"all fourteen", `{"request_timeout":1,"idle_conn_timeout":2,"connect_timeout":3,"max_idle_conns":4,
			"max_idle_conns_per_host":5,"response_header_timeout":6,"proxy_url":"http://p","max_retries":7,
			"blacklist_threshold":8,"failover_status_codes":"500","key_validation_interval_minutes":9,
			"key_validation_concurrency":10,"key_validation_timeout_seconds":11,"enable_request_body_logging":true}`,
			map[string]any{"request_timeout": 1, "idle_conn_timeout": 2, "connect_timeout": 3, "max_idle_conns": 4,
				"max_idle_conns_per_host": 5, "response_header_timeout": 6, "proxy_url": "http://p", "max_retries": 7,
				"blacklist_threshold": 8, "failover_status_codes": "500", "key_validation_interval_minutes": 9,
				"key_validation_concurrency": 10, "key_validation_timeout_seconds": 11, "enable_request_body_logging": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := domain.ParseGroupConfig(json.RawMessage(tt.raw))
			if err != nil {
				t.Fatalf("ParseGroupConfig: %v", err)
			}
			if got := c.Map(); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Map() = %#v, want %#v", got, tt.want)
			}
			if c.IsEmpty() != (tt.want == nil) {
				t.Fatalf("IsEmpty() = %v with Map %v", c.IsEmpty(), tt.want)
			}
			// The stored form reads back to the same config.
			b, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			again, err := domain.ParseGroupConfig(b)
			if err != nil || !reflect.DeepEqual(again, c) {
				t.Fatalf("re-parse of %s = %+v, %v", b, again, err)
			}
		})
	}
}

func TestParseGroupConfigInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		raw  string
		want map[string]string
	}{
		{"array", `[]`, map[string]string{"config": "JSON object"}},
		{"string", `"x"`, map[string]string{"config": "JSON object"}},
		{"number", `1`, map[string]string{"config": "JSON object"}},
		{"malformed", `{"max_retries":`, map[string]string{"config": "JSON object"}},
		{"unknown key", `{"x":1}`, map[string]string{"config.x": "unknown config field"}},
		{"unknown null key", `{"x":null}`, map[string]string{"config.x": "unknown config field"}},
		{"not overridable app_url", `{"app_url":"http://a"}`, map[string]string{"config.app_url": "unknown config field"}},
		{"not overridable proxy_keys", `{"proxy_keys":"a"}`, map[string]string{"config.proxy_keys": "unknown config field"}},
		{"not overridable retention", `{"request_log_retention_days":1}`, map[string]string{"config.request_log_retention_days": "unknown config field"}},
		{"not overridable interval", `{"request_log_write_interval_minutes":1}`, map[string]string{"config.request_log_write_interval_minutes": "unknown config field"}},
		{"int as string", `{"request_timeout":"600"}`, map[string]string{"config.request_timeout": "must be a number"}},
		{"int fraction", `{"max_retries":1.5}`, map[string]string{"config.max_retries": "whole number"}},
		{"int below minimum", `{"request_timeout":0}`, map[string]string{"config.request_timeout": "between 1 and 86400"}},
		{"int negative", `{"max_retries":-1}`, map[string]string{"config.max_retries": "between 0 and 10"}},
		{"int too large", `{"max_retries":1e10}`, map[string]string{"config.max_retries": "between 0 and 10, got more"}},
		{"bool as string", `{"enable_request_body_logging":"true"}`, map[string]string{"config.enable_request_body_logging": "boolean"}},
		{"bool as number", `{"enable_request_body_logging":0}`, map[string]string{"config.enable_request_body_logging": "boolean"}},
		{"string as number", `{"proxy_url":8080}`, map[string]string{"config.proxy_url": "must be a string"}},
		{"proxy_url bad", `{"proxy_url":"ftp://p"}`, map[string]string{"config.proxy_url": "socks5://"}},
		{"failover bad", `{"failover_status_codes":"1000"}`, map[string]string{"config.failover_status_codes": `"1000"`}},
		{"failover as number", `{"failover_status_codes":429}`, map[string]string{"config.failover_status_codes": "must be a string"}},
		{"every problem", `{"a":1,"max_retries":-1,"proxy_url":true,"request_timeout":5}`, map[string]string{
			"config.a": "unknown config field", "config.max_retries": "between 0 and 10", "config.proxy_url": "must be a string",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := domain.ParseGroupConfig(json.RawMessage(tt.raw))
			vrCheckInvalid(t, err, tt.want)
			if !c.IsEmpty() {
				t.Errorf("config on error = %+v, want empty", c)
			}
		})
	}
}

// Every overridable setting, and only those, is accepted in a group config.
func TestParseGroupConfigKeys(t *testing.T) {
	t.Parallel()
	sample := map[domain.SettingType]string{domain.SettingInt: "5", domain.SettingBool: "true", domain.SettingString: `""`}
	want := map[domain.SettingType]any{domain.SettingInt: 5, domain.SettingBool: true, domain.SettingString: ""}
	n := 0
	for _, d := range domain.SettingDefs() {
		t.Run(d.Key, func(t *testing.T) {
			t.Parallel()
			c, err := domain.ParseGroupConfig(json.RawMessage(`{"` + d.Key + `":` + sample[d.Type] + `}`))
			if !d.Overridable {
				vrCheckInvalid(t, err, map[string]string{"config." + d.Key: "unknown config field"})
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Map(); !reflect.DeepEqual(got, map[string]any{d.Key: want[d.Type]}) {
				t.Fatalf("Map() = %v", got)
			}
			// The override wins over the system value, and only for this key.
			base := domain.DefaultSettings()
			eff := base.Effective(c)
			if v, _ := eff.Value(d.Key); v != want[d.Type] {
				t.Fatalf("Effective %s = %v, want %v", d.Key, v, want[d.Type])
			}
			for k, v := range base.Values() {
				if k != d.Key && eff.Values()[k] != v {
					t.Errorf("Effective changed %s too", k)
				}
			}
		})
		if d.Overridable {
			n++
		}
	}
	if n != 18 { // API.md 2.4's 14, and our retry_empty_response, prompt_cache_affinity, upstream_key_rpm and upstream_key_tpm
		t.Fatalf("%d overridable settings, want 18", n)
	}
}

func TestSettingsEffective(t *testing.T) {
	t.Parallel()
	base := domain.DefaultSettings()
	base.ProxyURL = "http://system-proxy"
	tests := []struct {
		name   string
		config string
		want   func(s *domain.Settings)
	}{
		{"empty config keeps system values", `{}`, func(*domain.Settings) {}},
		{"overrides", `{"max_retries":0,"request_timeout":30,"enable_request_body_logging":true,"failover_status_codes":"429"}`,
			func(s *domain.Settings) {
				s.MaxRetries, s.RequestTimeout, s.EnableRequestBodyLogging, s.FailoverStatusCodes = 0, 30, true, "429"
			}},
		{"empty proxy_url override clears the system proxy", `{"proxy_url":""}`, func(s *domain.Settings) { s.ProxyURL = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := domain.ParseGroupConfig(json.RawMessage(tt.config))
			if err != nil {
				t.Fatal(err)
			}
			want := base
			tt.want(&want)
			if got := base.Effective(c); got != want {
				t.Fatalf("Effective =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestGroupConfigZero(t *testing.T) {
	t.Parallel()
	var c domain.GroupConfig
	if !c.IsEmpty() || c.Map() != nil {
		t.Fatalf("zero config: IsEmpty %v, Map %v", c.IsEmpty(), c.Map())
	}
	b, err := json.Marshal(c)
	if err != nil || string(b) != "{}" {
		t.Fatalf("Marshal(zero) = %s, %v", b, err)
	}
	c.MaxRetries = new(0)
	if c.IsEmpty() {
		t.Fatal("config with max_retries 0 reported empty")
	}
	if b, _ := json.Marshal(c); string(b) != `{"max_retries":0}` {
		t.Fatalf("Marshal = %s", b)
	}
}
