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
	"unicode/utf8"
)

// ChannelType is the wire format of a group's upstreams.
type ChannelType string

const (
	ChannelOpenAI         ChannelType = "openai"
	ChannelOpenAIResponse ChannelType = "openai-response"
	ChannelGemini         ChannelType = "gemini"
	ChannelAnthropic      ChannelType = "anthropic"
	ChannelAzureOpenAI    ChannelType = "azure-openai" // ours, not in gpt-load
)

// groupChannelTypes lists every channel type in its stable order; read-only.
var groupChannelTypes = []ChannelType{
	ChannelOpenAI,
	ChannelOpenAIResponse,
	ChannelGemini,
	ChannelAnthropic,
	ChannelAzureOpenAI,
}

// ChannelTypes returns every supported channel type in a stable order (a fresh slice).
func ChannelTypes() []ChannelType {
	return slices.Clone(groupChannelTypes)
}

// ParseChannelType accepts the name of a supported channel type, exactly as listed.
func ParseChannelType(s string) (ChannelType, error) {
	c := ChannelType(s)
	if slices.Contains(groupChannelTypes, c) {
		return c, nil
	}
	names := make([]string, len(groupChannelTypes))
	for i, t := range groupChannelTypes {
		names[i] = string(t)
	}
	msg := "Invalid channel type. Supported types: " + strings.Join(names, ", ")
	return "", &Error{Code: EINVALID, Message: msg, Fields: []FieldError{{Field: "channel_type", Message: msg}}}
}

// DefaultValidationEndpoint is the path key validation calls when a group sets none
// (API.md 2.3). Gemini has none: its validation path is fixed by the channel. For
// azure-openai the default is the chat completions path of the deployment named by the
// group's test_model: "{model}" stands for it, and the api-version is the GA version
// 2024-10-21.
func (c ChannelType) DefaultValidationEndpoint() string {
	switch c {
	case ChannelOpenAI:
		return "/v1/chat/completions"
	case ChannelOpenAIResponse:
		return "/v1/responses"
	case ChannelAnthropic:
		return "/v1/messages"
	case ChannelAzureOpenAI:
		return "/openai/deployments/{model}/chat/completions?api-version=2024-10-21"
	}
	return ""
}

// GroupType tells a standard group (its own keys and upstreams) from an aggregate (a weighted
// set of standard groups).
type GroupType string

const (
	GroupStandard  GroupType = "standard"
	GroupAggregate GroupType = "aggregate"
)

// ParseGroupType accepts "standard" and "aggregate"; "" means standard.
func ParseGroupType(s string) (GroupType, error) {
	switch GroupType(s) {
	case "", GroupStandard:
		return GroupStandard, nil
	case GroupAggregate:
		return GroupAggregate, nil
	}
	return "", Invalid(FieldError{Field: "group_type", Message: "must be standard or aggregate"})
}

// Upstream is one base URL of a standard group with its share of the traffic. Weight-0
// upstreams are kept but never used.
type Upstream struct {
	URL    string `json:"url"`
	Weight int    `json:"weight"`
}

// Limits of the free-text fields of groups and keys (database column sizes of gpt-load).
const (
	MaxDisplayNameLen = 255
	MaxDescriptionLen = 512
	MaxNotesLen       = 255
)

// Size limits of group fields. Every event carries the whole group, secrets sealed (hex,
// so twice their size), and must fit in one message of the event log (1 MiB by default):
// with every field at its limit a group still fits. A value over a limit is refused with
// a message naming the field and the limit.
const (
	MaxProxyKeysBytes      = 16 << 10 // proxy_keys, of a group and of the settings
	MaxUpstreams           = 50
	MaxURLBytes            = 2048 // an upstream url, a proxy_url, a validation_endpoint
	MaxHeaderRules         = 50
	MaxHeaderNameBytes     = 256
	MaxHeaderValueBytes    = 4 << 10
	MaxParamOverridesBytes = 64 << 10 // compact JSON
	MaxRedirectRulesBytes  = 64 << 10 // compact JSON
	MaxModelNameBytes      = 255      // test_model and each model name of a redirect rule
)

// checkBytes refuses a value longer than max bytes.
func checkBytes(field, s string, max int) error {
	if len(s) > max {
		return Invalid(FieldError{Field: field, Message: fmt.Sprintf("must be at most %d bytes, got %d", max, len(s))})
	}
	return nil
}

// maxGroupNameLen is the longest group name.
const maxGroupNameLen = 100

// maxUpstreamWeight keeps the sum of a group's upstream weights far from overflowing.
const maxUpstreamWeight = math.MaxInt32

// maxSubGroupWeight is the largest weight of an aggregate member (API.md 2.10).
const maxSubGroupWeight = 1000

// ValidateGroupName trims name and checks it against ^[a-z0-9_-]{1,100}$ (API.md 2.1): it is
// used in /proxy/{name} URLs.
func ValidateGroupName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return "", Invalid(FieldError{Field: "name", Message: "group name is required"})
	}
	ok := len(name) <= maxGroupNameLen
	for i := 0; ok && i < len(name); i++ {
		b := name[i]
		ok = b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '_' || b == '-'
	}
	if !ok {
		return "", Invalid(FieldError{Field: "name", Message: fmt.Sprintf(
			"must be 1 to %d characters of lowercase letters, digits, '_' or '-'", maxGroupNameLen)})
	}
	return name, nil
}

// ParseUpstreams reads the upstreams field of a group (API.md 2.2): a JSON array with at
// least one {url, weight} object. Each url is trimmed, required, and must be an http:// or
// https:// URL with a host; each weight is a JSON integer (no fraction, no exponent; missing
// or null means 0) from 0 to 2147483647, and at least one weight must be above 0. An explicit
// null (or empty raw input) fails with "at least one upstream is required". All problems are
// reported in one EINVALID error, with fields like "upstreams[1].url" and the message
// "Invalid upstreams configuration: <details>".
func ParseUpstreams(raw json.RawMessage) ([]Upstream, error) {
	fail := func(problems ...FieldError) ([]Upstream, error) {
		parts := make([]string, len(problems))
		for i, p := range problems {
			parts[i] = p.Field + ": " + p.Message
		}
		return nil, &Error{
			Code:    EINVALID,
			Message: "Invalid upstreams configuration: " + strings.Join(parts, "; "),
			Fields:  problems,
		}
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return fail(FieldError{Field: "upstreams", Message: "at least one upstream is required"})
	}
	var items []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
		return fail(FieldError{Field: "upstreams", Message: "must be a JSON array of {url, weight} objects"})
	}
	if len(items) == 0 {
		return fail(FieldError{Field: "upstreams", Message: "at least one upstream is required"})
	}
	if len(items) > MaxUpstreams {
		return fail(FieldError{Field: "upstreams", Message: fmt.Sprintf("must have at most %d upstreams, got %d", MaxUpstreams, len(items))})
	}
	var problems []FieldError
	out := make([]Upstream, 0, len(items))
	weightErrors, positive := false, false
	for i, item := range items {
		field := fmt.Sprintf("upstreams[%d]", i)
		var obj struct {
			URL    json.RawMessage `json:"url"`
			Weight json.RawMessage `json:"weight"`
		}
		if item = bytes.TrimSpace(item); len(item) == 0 || item[0] != '{' || json.Unmarshal(item, &obj) != nil {
			problems = append(problems, FieldError{Field: field, Message: "must be an object with url and weight"})
			weightErrors = true
			continue
		}
		u, msg := parseUpstreamURL(obj.URL)
		if msg != "" {
			problems = append(problems, FieldError{Field: field + ".url", Message: msg})
		}
		w, msg := parseUpstreamWeight(obj.Weight)
		if msg != "" {
			problems = append(problems, FieldError{Field: field + ".weight", Message: msg})
			weightErrors = true
		}
		positive = positive || w > 0
		out = append(out, Upstream{URL: u, Weight: w})
	}
	if !positive && !weightErrors {
		problems = append(problems, FieldError{Field: "upstreams", Message: "at least one upstream must have a weight greater than 0"})
	}
	if len(problems) > 0 {
		return fail(problems...)
	}
	return out, nil
}

// parseUpstreamURL checks one upstream url; it returns the trimmed URL or a problem.
func parseUpstreamURL(raw json.RawMessage) (string, string) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", "url is required"
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", "must be a string"
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return "", "url is required"
	}
	if len(s) > MaxURLBytes {
		return "", fmt.Sprintf("must be at most %d bytes, got %d", MaxURLBytes, len(s))
	}
	lower := strings.ToLower(s)
	if !strings.HasPrefix(lower, "http://") && !strings.HasPrefix(lower, "https://") {
		return "", "must start with http:// or https://"
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Hostname() == "" {
		return "", "must be a valid URL with a host"
	}
	return s, ""
}

// parseUpstreamWeight checks one upstream weight: a JSON integer literal, 0 when absent or null.
func parseUpstreamWeight(raw json.RawMessage) (int, string) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, ""
	}
	// raw is valid JSON here, so a range error means an integer literal too large for int64.
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, "must be an integer"
	}
	if n < 0 {
		return 0, "must not be negative"
	}
	if n > maxUpstreamWeight {
		return 0, fmt.Sprintf("must be at most %d", maxUpstreamWeight)
	}
	return int(n), ""
}

// ValidateValidationEndpoint trims a group's validation_endpoint (API.md 2.3): "" means the
// channel default; otherwise it must be a path starting with "/" (a query string is fine),
// must not contain "://" and must not contain control characters.
func ValidateValidationEndpoint(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	if err := checkBytes("validation_endpoint", s, MaxURLBytes); err != nil {
		return "", err
	}
	bad := !strings.HasPrefix(s, "/") || strings.Contains(s, "://")
	for i := 0; !bad && i < len(s); i++ {
		bad = s[i] < 0x20 || s[i] == 0x7f
	}
	if bad {
		return "", Invalid(FieldError{Field: "validation_endpoint", Message: "invalid test path"})
	}
	return s, nil
}

// ValidateRedirectRules trims the model names of model_redirect_rules ({requested:
// upstream}) and requires both sides to be non-blank; two requested names equal after
// trimming are an error. nil gives an empty map; the input is not modified.
func ValidateRedirectRules(rules map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(rules))
	var problems []FieldError
	for _, from := range slices.Sorted(maps.Keys(rules)) {
		key := strings.TrimSpace(from)
		to := strings.TrimSpace(rules[from])
		switch {
		case key == "":
			problems = append(problems, FieldError{Field: "model_redirect_rules", Message: "a requested model name is empty"})
			continue
		case to == "":
			problems = append(problems, FieldError{Field: "model_redirect_rules." + key, Message: "target model must not be empty"})
		case len(key) > MaxModelNameBytes || len(to) > MaxModelNameBytes:
			problems = append(problems, FieldError{Field: "model_redirect_rules", Message: fmt.Sprintf("model names must be at most %d bytes", MaxModelNameBytes)})
			continue
		}
		if _, dup := out[key]; dup {
			problems = append(problems, FieldError{Field: "model_redirect_rules." + key, Message: "duplicate model name after trimming"})
			continue
		}
		out[key] = to
	}
	if err := Invalid(problems...); err != nil {
		return nil, err
	}
	return out, nil
}

// ValidateProxyKeys normalizes a group's proxy_keys: the whole string trimmed (API.md 2.1);
// entries are trimmed when used (SplitProxyKeys).
func ValidateProxyKeys(s string) string {
	return strings.TrimSpace(s)
}

// SplitProxyKeys splits a comma-separated proxy key list, trimming entries and dropping empty
// ones. It returns nil when there is none.
func SplitProxyKeys(s string) []string {
	var keys []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			keys = append(keys, part)
		}
	}
	return keys
}

// ValidateText trims a free-text field and checks that it has at most max Unicode
// characters.
func ValidateText(field, s string, max int) (string, error) {
	s = strings.TrimSpace(s)
	if n := utf8.RuneCountInString(s); n > max {
		return "", Invalid(FieldError{Field: field, Message: fmt.Sprintf("must be at most %d characters, got %d", max, n)})
	}
	return s, nil
}

// ValidateWeight checks the weight of an aggregate member: 0 to 1000 (API.md 2.10). A
// weight-0 member stays linked but gets no traffic.
func ValidateWeight(field string, w int) error {
	if w < 0 || w > maxSubGroupWeight {
		return Invalid(FieldError{Field: field, Message: fmt.Sprintf("must be between 0 and %d", maxSubGroupWeight)})
	}
	return nil
}
