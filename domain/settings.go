package domain

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// SettingType is the value type of a system setting, as the settings API names it.
type SettingType string

const (
	SettingString SettingType = "string"
	SettingInt    SettingType = "int"
	SettingBool   SettingType = "bool"
)

// Setting categories, in display order (API.md 4.2).
const (
	SettingCategoryBasic   = "basic"
	SettingCategoryRequest = "request"
	SettingCategoryKey     = "key"
)

// DefaultFailoverStatusCodes is our default failover_status_codes: retry with another key on
// every error status except the client's own mistakes 400, 404, 413 and 422 (DESIGN.md, key
// health). gpt-load's default was "400-403,405-999".
const DefaultFailoverStatusCodes = "401-403,405-412,414-421,423-999"

// maxSettingInt is the largest number settingInt reads as itself; every int setting has a
// much smaller maximum of its own.
const maxSettingInt = math.MaxInt32

// maxStatusCodesBytes bounds failover_status_codes: every status from 100 to 999 listed
// one by one takes 3,599 bytes.
const maxStatusCodesBytes = 4096

// SettingDef describes one system setting (API.md 4.1).
type SettingDef struct {
	Key         string
	Name        string // short English label
	Description string // English help text
	Category    string // SettingCategoryBasic, SettingCategoryRequest or SettingCategoryKey
	Type        SettingType
	Default     string // the default as a string, "" when none
	Min         *int   // nil when there is no minimum
	Max         *int   // nil when there is no maximum
	Required    bool
	Overridable bool // a group's config may override it (API.md 2.4)
}

// settingSpec is one row of the settings table. field points into a Settings (*int, *string
// or *bool); override, for overridable settings, points into a GroupConfig (**int, **string or
// **bool).
type settingSpec struct {
	key, name, description, category string
	typ                              SettingType
	def                              string
	min, max                         int // the range of an int setting (max 0: none)
	maxLen                           int // the longest value of a string setting, in bytes
	hasMin                           bool
	required                         bool
	field                            func(*Settings) any
	override                         func(*GroupConfig) any
}

// settingSpecs is the settings table in the order of API.md 4.1; read-only.
var settingSpecs = []settingSpec{
	// Basic
	{
		key: "app_url", name: "Application URL", category: SettingCategoryBasic,
		description: "Public base URL of this service, e.g. https://gpt-load.example.com. Group endpoints shown in the UI are built from it.",
		typ:         SettingString, def: "http://localhost:3001", required: true, maxLen: MaxURLBytes,
		field: func(s *Settings) any { return &s.AppURL },
	},
	{
		key: "proxy_keys", name: "Global proxy keys", category: SettingCategoryBasic,
		description: "Comma-separated proxy keys that clients may use with every group, in addition to each group's own proxy keys.",
		typ:         SettingString, def: "", required: true, maxLen: MaxProxyKeysBytes,
		field: func(s *Settings) any { return &s.ProxyKeys },
	},
	{
		key: "request_log_retention_days", name: "Request log retention (days)", category: SettingCategoryBasic,
		description: "Request logs older than this many days are deleted. 0 keeps them forever.",
		typ:         SettingInt, def: "7", min: 0, max: 3650, hasMin: true, required: true,
		field: func(s *Settings) any { return &s.RequestLogRetentionDays },
	},
	{
		key: "request_log_write_interval_minutes", name: "Request log write interval (minutes)", category: SettingCategoryBasic,
		description: "Kept for compatibility with gpt-load, where it was the period of the log buffer flush (0 = write each log at once). Logs here become visible within seconds whatever the value.",
		typ:         SettingInt, def: "1", min: 0, max: 1440, hasMin: true, required: true,
		field: func(s *Settings) any { return &s.RequestLogWriteIntervalMinutes },
	},
	{
		key: "enable_request_body_logging", name: "Log request bodies", category: SettingCategoryBasic,
		description: "Store the body (and the user agent) of proxied requests in the request logs. Bodies may contain sensitive data.",
		typ:         SettingBool, def: "false",
		field:    func(s *Settings) any { return &s.EnableRequestBodyLogging },
		override: func(c *GroupConfig) any { return &c.EnableRequestBodyLogging },
	},
	// Request
	{
		key: "request_timeout", name: "Request timeout (seconds)", category: SettingCategoryRequest,
		description: "Longest time a non-streaming proxied request may take from start to end.",
		typ:         SettingInt, def: "600", min: 1, max: 86400, hasMin: true, required: true,
		field:    func(s *Settings) any { return &s.RequestTimeout },
		override: func(c *GroupConfig) any { return &c.RequestTimeout },
	},
	{
		key: "connect_timeout", name: "Connect timeout (seconds)", category: SettingCategoryRequest,
		description: "Longest time to wait for a connection to an upstream to be established.",
		typ:         SettingInt, def: "15", min: 1, max: 600, hasMin: true, required: true,
		field:    func(s *Settings) any { return &s.ConnectTimeout },
		override: func(c *GroupConfig) any { return &c.ConnectTimeout },
	},
	{
		key: "idle_conn_timeout", name: "Idle connection timeout (seconds)", category: SettingCategoryRequest,
		description: "How long an unused keep-alive connection to an upstream stays open.",
		typ:         SettingInt, def: "120", min: 1, max: 3600, hasMin: true, required: true,
		field:    func(s *Settings) any { return &s.IdleConnTimeout },
		override: func(c *GroupConfig) any { return &c.IdleConnTimeout },
	},
	{
		key: "response_header_timeout", name: "Response header timeout (seconds)", category: SettingCategoryRequest,
		description: "Longest wait for an upstream's response headers after the request was sent, streaming requests included.",
		typ:         SettingInt, def: "600", min: 1, max: 86400, hasMin: true, required: true,
		field:    func(s *Settings) any { return &s.ResponseHeaderTimeout },
		override: func(c *GroupConfig) any { return &c.ResponseHeaderTimeout },
	},
	{
		key: "max_idle_conns", name: "Max idle connections", category: SettingCategoryRequest,
		description: "Size of the pool of idle keep-alive connections to upstreams (the streaming client keeps at least 50).",
		typ:         SettingInt, def: "100", min: 1, max: 10000, hasMin: true, required: true,
		field:    func(s *Settings) any { return &s.MaxIdleConns },
		override: func(c *GroupConfig) any { return &c.MaxIdleConns },
	},
	{
		key: "max_idle_conns_per_host", name: "Max idle connections per host", category: SettingCategoryRequest,
		description: "Idle keep-alive connections kept per upstream host (the streaming client keeps at least 20).",
		typ:         SettingInt, def: "50", min: 1, max: 10000, hasMin: true, required: true,
		field:    func(s *Settings) any { return &s.MaxIdleConnsPerHost },
		override: func(c *GroupConfig) any { return &c.MaxIdleConnsPerHost },
	},
	{
		key: "proxy_url", name: "Outbound proxy URL", category: SettingCategoryRequest,
		description: "HTTP, HTTPS or SOCKS5 proxy for calls to upstreams, e.g. socks5://127.0.0.1:1080. Empty uses the HTTP_PROXY, HTTPS_PROXY and NO_PROXY environment variables.",
		typ:         SettingString, def: "", maxLen: MaxURLBytes,
		field:    func(s *Settings) any { return &s.ProxyURL },
		override: func(c *GroupConfig) any { return &c.ProxyURL },
	},
	// Key
	{
		key: "max_retries", name: "Max retries", category: SettingCategoryKey,
		description: "How many more times a failed request is tried, each time with another key (total attempts = retries + 1).",
		typ:         SettingInt, def: "3", min: 0, max: 10, hasMin: true, required: true,
		field:    func(s *Settings) any { return &s.MaxRetries },
		override: func(c *GroupConfig) any { return &c.MaxRetries },
	},
	{
		key: "blacklist_threshold", name: "Blacklist threshold", category: SettingCategoryKey,
		description: "Consecutive authentication failures after which a key is marked invalid and leaves the rotation. 0 never blacklists.",
		typ:         SettingInt, def: "3", min: 0, max: 100, hasMin: true, required: true,
		field:    func(s *Settings) any { return &s.BlacklistThreshold },
		override: func(c *GroupConfig) any { return &c.BlacklistThreshold },
	},
	{
		key: "failover_status_codes", name: "Failover status codes", category: SettingCategoryKey,
		description: "Upstream statuses that make the proxy try another key: codes and ranges separated by commas, e.g. 401-403,429,500-599. Empty never retries. The default retries every error except 400, 404, 413 and 422.",
		typ:         SettingString, def: DefaultFailoverStatusCodes, maxLen: maxStatusCodesBytes,
		field:    func(s *Settings) any { return &s.FailoverStatusCodes },
		override: func(c *GroupConfig) any { return &c.FailoverStatusCodes },
	},
	{
		key: "key_validation_interval_minutes", name: "Key validation interval (minutes)", category: SettingCategoryKey,
		description: "How often invalid and resting keys of a group are checked again in the background.",
		typ:         SettingInt, def: "60", min: 1, max: 10080, hasMin: true, required: true,
		field:    func(s *Settings) any { return &s.KeyValidationIntervalMinutes },
		override: func(c *GroupConfig) any { return &c.KeyValidationIntervalMinutes },
	},
	{
		key: "key_validation_concurrency", name: "Key validation concurrency", category: SettingCategoryKey,
		description: "How many keys of a group are validated at the same time, in the background and on demand.",
		typ:         SettingInt, def: "10", min: 1, max: 100, hasMin: true, required: true,
		field:    func(s *Settings) any { return &s.KeyValidationConcurrency },
		override: func(c *GroupConfig) any { return &c.KeyValidationConcurrency },
	},
	{
		key: "key_validation_timeout_seconds", name: "Key validation timeout (seconds)", category: SettingCategoryKey,
		description: "Longest time one key validation request may take.",
		typ:         SettingInt, def: "20", min: 1, max: 600, hasMin: true, required: true,
		field:    func(s *Settings) any { return &s.KeyValidationTimeoutSeconds },
		override: func(c *GroupConfig) any { return &c.KeyValidationTimeoutSeconds },
	},
	{
		// Ours, not gpt-load's: an upstream sometimes answers 200 with nothing in it.
		key: "retry_empty_response", name: "Retry empty answers", category: SettingCategoryKey,
		description: "Retry with another key when an upstream answers 200 with an empty answer (no choices, candidates or content). Applies to non-streamed answers.",
		typ:         SettingBool, def: "false",
		field:    func(s *Settings) any { return &s.RetryEmptyResponse },
		override: func(c *GroupConfig) any { return &c.RetryEmptyResponse },
	},
	{
		// Ours: a provider's prompt cache pays off only when a conversation keeps its key.
		key: "prompt_cache_affinity", name: "Prompt-cache affinity", category: SettingCategoryKey,
		description: "Send the requests of one conversation to the same key while it is usable, so the provider's prompt cache keeps paying off. A conversation is told by prompt_cache_key, user, metadata.user_id or cachedContent, else by its leading messages. Each node remembers its own conversations.",
		typ:         SettingBool, def: "false",
		field:    func(s *Settings) any { return &s.PromptCacheAffinity },
		override: func(c *GroupConfig) any { return &c.PromptCacheAffinity },
	},
	{
		// Ours: spread load before the provider answers 429.
		key: "upstream_key_rpm", name: "Requests per minute per key", category: SettingCategoryKey,
		description: "Most requests one key is sent per minute of the clock; a key whose budget is spent rests until the next minute. Counted by each node on its own. 0 sets no limit.",
		typ:         SettingInt, def: "0", min: 0, max: 1000000, hasMin: true, required: true,
		field:    func(s *Settings) any { return &s.UpstreamKeyRPM },
		override: func(c *GroupConfig) any { return &c.UpstreamKeyRPM },
	},
	{
		key: "upstream_key_tpm", name: "Tokens per minute per key", category: SettingCategoryKey,
		description: "Most tokens (prompt and completion, as the upstream reports them) one key may use per minute of the clock; a key that used them rests until the next minute. Counted by each node on its own. 0 sets no limit.",
		typ:         SettingInt, def: "0", min: 0, max: 1000000000, hasMin: true, required: true,
		field:    func(s *Settings) any { return &s.UpstreamKeyTPM },
		override: func(c *GroupConfig) any { return &c.UpstreamKeyTPM },
	},
}

func (sp *settingSpec) toDef() SettingDef {
	d := SettingDef{
		Key:         sp.key,
		Name:        sp.name,
		Description: sp.description,
		Category:    sp.category,
		Type:        sp.typ,
		Default:     sp.def,
		Required:    sp.required,
		Overridable: sp.override != nil,
	}
	if sp.hasMin {
		d.Min = new(sp.min)
	}
	if sp.max != 0 {
		d.Max = new(sp.max)
	}
	return d
}

func settingSpecFor(key string) *settingSpec {
	for i := range settingSpecs {
		if settingSpecs[i].key == key {
			return &settingSpecs[i]
		}
	}
	return nil
}

// SettingDefs returns the system settings in the order of API.md 4.1 (Basic, Request,
// Key). The result is a fresh copy.
func SettingDefs() []SettingDef {
	defs := make([]SettingDef, len(settingSpecs))
	for i := range settingSpecs {
		defs[i] = settingSpecs[i].toDef()
	}
	return defs
}

// LookupSetting finds a setting by key.
func LookupSetting(key string) (SettingDef, bool) {
	sp := settingSpecFor(key)
	if sp == nil {
		return SettingDef{}, false
	}
	return sp.toDef(), true
}

// Settings are the system settings (API.md 4.1). JSON field names are the setting keys.
type Settings struct {
	AppURL                         string `json:"app_url"`
	ProxyKeys                      string `json:"proxy_keys"`
	RequestLogRetentionDays        int    `json:"request_log_retention_days"`
	RequestLogWriteIntervalMinutes int    `json:"request_log_write_interval_minutes"`
	EnableRequestBodyLogging       bool   `json:"enable_request_body_logging"`

	RequestTimeout        int    `json:"request_timeout"`
	ConnectTimeout        int    `json:"connect_timeout"`
	IdleConnTimeout       int    `json:"idle_conn_timeout"`
	ResponseHeaderTimeout int    `json:"response_header_timeout"`
	MaxIdleConns          int    `json:"max_idle_conns"`
	MaxIdleConnsPerHost   int    `json:"max_idle_conns_per_host"`
	ProxyURL              string `json:"proxy_url"`

	MaxRetries                   int    `json:"max_retries"`
	BlacklistThreshold           int    `json:"blacklist_threshold"`
	FailoverStatusCodes          string `json:"failover_status_codes"`
	KeyValidationIntervalMinutes int    `json:"key_validation_interval_minutes"`
	KeyValidationConcurrency     int    `json:"key_validation_concurrency"`
	KeyValidationTimeoutSeconds  int    `json:"key_validation_timeout_seconds"`
	RetryEmptyResponse           bool   `json:"retry_empty_response"`
	PromptCacheAffinity          bool   `json:"prompt_cache_affinity"`
	UpstreamKeyRPM               int    `json:"upstream_key_rpm"`
	UpstreamKeyTPM               int    `json:"upstream_key_tpm"`
}

// DefaultSettings are the defaults of API.md 4.1, except failover_status_codes which is
// DefaultFailoverStatusCodes. proxy_keys is empty: it is seeded from AUTH_KEY at first start.
func DefaultSettings() Settings {
	var s Settings
	for i := range settingSpecs {
		sp := &settingSpecs[i]
		var v any
		switch sp.typ {
		case SettingInt:
			n, err := strconv.Atoi(sp.def)
			if err != nil {
				panic("domain: bad default of setting " + sp.key)
			}
			v = n
		case SettingBool:
			v = sp.def == "true"
		default:
			v = sp.def
		}
		settingPut(sp.field(&s), v)
	}
	return s
}

// Apply validates a PUT /api/settings body (API.md 4.2, with our decision of API.md 11: every
// bad entry is named) and returns the settings with the changes laid over s. Every entry is
// checked:
//
//   - an unknown key is an error ("unknown setting"), and so is a JSON null;
//   - int settings take a JSON number with a whole value (5 and 5.0, not 5.5) within the
//     setting's range (SettingDef.Min, SettingDef.Max);
//   - bool settings take a JSON boolean;
//   - string settings take a JSON string, trimmed, non-empty when required;
//   - failover_status_codes must parse (ParseStatusCodes);
//   - proxy_url, when not empty, must be an http, https or socks5 URL with a host;
//   - app_url must be an absolute http or https URL with a host;
//   - proxy_keys is normalized (split on ',', entries trimmed, empties dropped, joined with
//     ',') and must keep at least one key.
//
// It is all or nothing: on any problem it returns s unchanged and one EINVALID error listing
// every bad field (ordered by key).
func (s Settings) Apply(changes map[string]json.RawMessage) (Settings, error) {
	next := s
	var problems []FieldError
	for _, key := range slices.Sorted(maps.Keys(changes)) {
		sp := settingSpecFor(key)
		if sp == nil {
			problems = append(problems, FieldError{Field: key, Message: "unknown setting"})
			continue
		}
		raw := bytes.TrimSpace(changes[key])
		if len(raw) == 0 || string(raw) == "null" {
			problems = append(problems, FieldError{Field: key, Message: "must not be null"})
			continue
		}
		v, msg := sp.decode(raw)
		if msg != "" {
			problems = append(problems, FieldError{Field: key, Message: msg})
			continue
		}
		settingPut(sp.field(&next), v)
	}
	if err := Invalid(problems...); err != nil {
		return s, err
	}
	return next, nil
}

// decode reads and checks one non-null JSON value for the setting; it returns the typed,
// normalized value, or a problem.
func (sp *settingSpec) decode(raw []byte) (any, string) {
	switch sp.typ {
	case SettingInt:
		n, msg := settingInt(raw)
		if msg != "" {
			return nil, msg
		}
		if sp.hasMin && n < sp.min || sp.max != 0 && n > sp.max {
			if sp.max != 0 {
				return nil, fmt.Sprintf("must be between %d and %d, got %s", sp.min, sp.max, sp.shown(n))
			}
			return nil, fmt.Sprintf("must be at least %d", sp.min)
		}
		return n, ""
	case SettingBool:
		switch string(raw) {
		case "true":
			return true, ""
		case "false":
			return false, ""
		}
		return nil, "must be a boolean (true or false)"
	}
	var str string
	if raw[0] != '"' || json.Unmarshal(raw, &str) != nil {
		return nil, "must be a string"
	}
	str = strings.TrimSpace(str)
	switch sp.key {
	case "proxy_keys":
		str = strings.Join(SplitProxyKeys(str), ",")
	case "app_url":
		if str != "" && !settingURLOK(str, "http", "https") {
			return nil, "must be an absolute http:// or https:// URL"
		}
	case "proxy_url":
		if str != "" && !settingURLOK(str, "http", "https", "socks5") {
			return nil, "must be an http://, https:// or socks5:// URL with a host"
		}
	case "failover_status_codes":
		if _, err := ParseStatusCodes(str); err != nil {
			return nil, err.Error()
		}
	}
	if sp.required && str == "" {
		return nil, "must not be empty"
	}
	if sp.maxLen != 0 && len(str) > sp.maxLen {
		return nil, fmt.Sprintf("must be at most %d bytes, got %d", sp.maxLen, len(str))
	}
	return str, ""
}

// shown is n as a range error shows it: the value, or "more" or "less" when settingInt
// clamped it.
func (sp *settingSpec) shown(n int) string {
	switch {
	case n > maxSettingInt:
		return "more"
	case n < math.MinInt32:
		return "less"
	}
	return strconv.Itoa(n)
}

// settingInt reads a JSON number with a whole value. Values beyond the int32 range are
// clamped just outside it (maxSettingInt+1, math.MinInt32-1), so that range checks report
// them.
func settingInt(raw []byte) (int, string) {
	if raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') || !json.Valid(raw) {
		return 0, "must be a number"
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, "must be a number"
	}
	if math.IsInf(f, 0) {
		// Too large for float64, hence for any integer: an integer literal or a huge exponent.
		if f > 0 {
			return maxSettingInt + 1, ""
		}
		return math.MinInt32 - 1, ""
	}
	if f != math.Trunc(f) || f == 0 && settingMantissaNonZero(raw) {
		return 0, "must be a whole number"
	}
	if f > maxSettingInt {
		return maxSettingInt + 1, ""
	}
	if f < math.MinInt32 {
		return math.MinInt32 - 1, ""
	}
	return int(f), ""
}

// settingMantissaNonZero reports whether a JSON number has a non-zero digit before its
// exponent: a number like 1e-400 reads as 0 but is not a whole number.
func settingMantissaNonZero(raw []byte) bool {
	for _, b := range raw {
		if b == 'e' || b == 'E' {
			break
		}
		if b >= '1' && b <= '9' {
			return true
		}
	}
	return false
}

// settingURLOK reports whether s parses as an absolute URL with one of the schemes and a
// host.
func settingURLOK(s string, schemes ...string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Hostname() == "" {
		return false
	}
	return slices.Contains(schemes, strings.ToLower(u.Scheme))
}

// settingPut stores v (int, string or bool) through p (*int, *string or *bool).
func settingPut(p, v any) {
	switch p := p.(type) {
	case *int:
		*p = v.(int)
	case *string:
		*p = v.(string)
	case *bool:
		*p = v.(bool)
	default:
		panic(fmt.Sprintf("domain: setting field of type %T", p))
	}
}

// settingGet reads the value behind p (*int, *string or *bool).
func settingGet(p any) any {
	switch p := p.(type) {
	case *int:
		return *p
	case *string:
		return *p
	case *bool:
		return *p
	}
	panic(fmt.Sprintf("domain: setting field of type %T", p))
}

// Values returns every setting by key, typed (string, int or bool).
func (s Settings) Values() map[string]any {
	m := make(map[string]any, len(settingSpecs))
	for i := range settingSpecs {
		m[settingSpecs[i].key] = settingGet(settingSpecs[i].field(&s))
	}
	return m
}

// Value returns one setting by key, typed (string, int or bool).
func (s Settings) Value(key string) (any, bool) {
	sp := settingSpecFor(key)
	if sp == nil {
		return nil, false
	}
	return settingGet(sp.field(&s)), true
}

// GroupConfig holds a group's overrides of system settings (API.md 2.4): a nil field uses the
// system value. JSON field names are the setting keys.
type GroupConfig struct {
	RequestTimeout               *int    `json:"request_timeout,omitempty"`
	IdleConnTimeout              *int    `json:"idle_conn_timeout,omitempty"`
	ConnectTimeout               *int    `json:"connect_timeout,omitempty"`
	MaxIdleConns                 *int    `json:"max_idle_conns,omitempty"`
	MaxIdleConnsPerHost          *int    `json:"max_idle_conns_per_host,omitempty"`
	ResponseHeaderTimeout        *int    `json:"response_header_timeout,omitempty"`
	ProxyURL                     *string `json:"proxy_url,omitempty"`
	MaxRetries                   *int    `json:"max_retries,omitempty"`
	BlacklistThreshold           *int    `json:"blacklist_threshold,omitempty"`
	FailoverStatusCodes          *string `json:"failover_status_codes,omitempty"`
	KeyValidationIntervalMinutes *int    `json:"key_validation_interval_minutes,omitempty"`
	KeyValidationConcurrency     *int    `json:"key_validation_concurrency,omitempty"`
	KeyValidationTimeoutSeconds  *int    `json:"key_validation_timeout_seconds,omitempty"`
	EnableRequestBodyLogging     *bool   `json:"enable_request_body_logging,omitempty"`
	RetryEmptyResponse           *bool   `json:"retry_empty_response,omitempty"`
	PromptCacheAffinity          *bool   `json:"prompt_cache_affinity,omitempty"`
	UpstreamKeyRPM               *int    `json:"upstream_key_rpm,omitempty"`
	UpstreamKeyTPM               *int    `json:"upstream_key_tpm,omitempty"`
}

// ParseGroupConfig reads a group's config object (API.md 2.4). Empty input, null and {} give
// an empty config; anything else must be a JSON object whose keys are overridable settings
// ("config.<key>: unknown config field" otherwise). Null values are dropped; other values
// follow the rules of Settings.Apply (types, minimums, failover_status_codes syntax, proxy_url
// scheme), except that an empty proxy_url or failover_status_codes is a valid override (no
// outbound proxy for the group, no failover). Every problem is reported in one EINVALID error.
func ParseGroupConfig(raw json.RawMessage) (GroupConfig, error) {
	var c GroupConfig
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return c, nil
	}
	var obj map[string]json.RawMessage
	if raw[0] != '{' || json.Unmarshal(raw, &obj) != nil {
		return GroupConfig{}, Invalid(FieldError{Field: "config", Message: "must be a JSON object"})
	}
	var problems []FieldError
	for _, key := range slices.Sorted(maps.Keys(obj)) {
		field := "config." + key
		sp := settingSpecFor(key)
		if sp == nil || sp.override == nil {
			problems = append(problems, FieldError{Field: field, Message: "unknown config field"})
			continue
		}
		v := bytes.TrimSpace(obj[key])
		if len(v) == 0 || string(v) == "null" {
			continue
		}
		val, msg := sp.decode(v)
		if msg != "" {
			problems = append(problems, FieldError{Field: field, Message: msg})
			continue
		}
		settingOverridePut(sp.override(&c), val)
	}
	if err := Invalid(problems...); err != nil {
		return GroupConfig{}, err
	}
	return c, nil
}

// settingOverridePut stores a copy of v (int, string or bool) through p (**int, **string or **bool).
func settingOverridePut(p, v any) {
	switch p := p.(type) {
	case **int:
		*p = new(v.(int))
	case **string:
		*p = new(v.(string))
	case **bool:
		*p = new(v.(bool))
	default:
		panic(fmt.Sprintf("domain: config field of type %T", p))
	}
}

// settingOverrideGet reads the override behind p (**int, **string or **bool), if set.
func settingOverrideGet(p any) (any, bool) {
	switch p := p.(type) {
	case **int:
		if *p != nil {
			return **p, true
		}
	case **string:
		if *p != nil {
			return **p, true
		}
	case **bool:
		if *p != nil {
			return **p, true
		}
	default:
		panic(fmt.Sprintf("domain: config field of type %T", p))
	}
	return nil, false
}

// IsEmpty reports whether the config overrides nothing.
func (c GroupConfig) IsEmpty() bool {
	for i := range settingSpecs {
		if sp := &settingSpecs[i]; sp.override != nil {
			if _, ok := settingOverrideGet(sp.override(&c)); ok {
				return false
			}
		}
	}
	return true
}

// Map returns the overrides that are set, by key and typed (int, string or bool), as the API
// shows a group's config; nil when the config is empty.
func (c GroupConfig) Map() map[string]any {
	var m map[string]any
	for i := range settingSpecs {
		sp := &settingSpecs[i]
		if sp.override == nil {
			continue
		}
		if v, ok := settingOverrideGet(sp.override(&c)); ok {
			if m == nil {
				m = make(map[string]any)
			}
			m[sp.key] = v
		}
	}
	return m
}

// Effective returns s with every override set in c laid over it: group config wins over the
// system value (API.md 4.3).
func (s Settings) Effective(c GroupConfig) Settings {
	for i := range settingSpecs {
		sp := &settingSpecs[i]
		if sp.override == nil {
			continue
		}
		if v, ok := settingOverrideGet(sp.override(&c)); ok {
			settingPut(sp.field(&s), v)
		}
	}
	return s
}
