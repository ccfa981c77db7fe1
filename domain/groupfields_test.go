package domain_test

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"gpt-load/domain"
)

func TestChannelTypes(t *testing.T) {
	t.Parallel()
	want := []domain.ChannelType{"openai", "openai-response", "gemini", "anthropic", "azure-openai"}
	got := domain.ChannelTypes()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ChannelTypes() = %v, want %v", got, want)
	}
	got[0] = "changed"
	if domain.ChannelTypes()[0] != domain.ChannelOpenAI {
		t.Fatal("ChannelTypes returns shared storage")
	}
	consts := []domain.ChannelType{domain.ChannelOpenAI, domain.ChannelOpenAIResponse, domain.ChannelGemini, domain.ChannelAnthropic, domain.ChannelAzureOpenAI}
	if !reflect.DeepEqual(consts, want) {
		t.Fatalf("constants = %v", consts)
	}
}

func TestParseChannelType(t *testing.T) {
	t.Parallel()
	for _, c := range domain.ChannelTypes() {
		t.Run(string(c), func(t *testing.T) {
			t.Parallel()
			got, err := domain.ParseChannelType(string(c))
			if err != nil || got != c {
				t.Fatalf("ParseChannelType(%q) = %q, %v", c, got, err)
			}
		})
	}
	for _, bad := range []string{"", "OpenAI", " openai", "openai ", "azure", "claude", "aggregate"} {
		t.Run("bad "+strconv.Quote(bad), func(t *testing.T) {
			t.Parallel()
			got, err := domain.ParseChannelType(bad)
			if got != "" {
				t.Errorf("got %q", got)
			}
			wantMsg := "Invalid channel type. Supported types: openai, openai-response, gemini, anthropic, azure-openai"
			vrCheckInvalid(t, err, map[string]string{"channel_type": wantMsg})
			if err.Error() != wantMsg {
				t.Errorf("Error() = %q, want %q", err.Error(), wantMsg)
			}
		})
	}
}

func TestDefaultValidationEndpoint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		channel domain.ChannelType
		want    string
	}{
		{domain.ChannelOpenAI, "/v1/chat/completions"},
		{domain.ChannelOpenAIResponse, "/v1/responses"},
		{domain.ChannelAnthropic, "/v1/messages"},
		{domain.ChannelGemini, ""},
		{domain.ChannelAzureOpenAI, "/openai/deployments/{model}/chat/completions?api-version=2024-10-21"},
		{"unknown", ""},
	}
	for _, tt := range tests {
		t.Run(string(tt.channel), func(t *testing.T) {
			t.Parallel()
			got := tt.channel.DefaultValidationEndpoint()
			if got != tt.want {
				t.Fatalf("DefaultValidationEndpoint() = %q, want %q", got, tt.want)
			}
			if got != "" {
				if v, err := domain.ValidateValidationEndpoint(got); err != nil || v != got {
					t.Fatalf("default %q is not a valid endpoint: %v", got, err)
				}
			}
		})
	}
}

func TestParseGroupType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want domain.GroupType
		ok   bool
	}{
		{"", domain.GroupStandard, true},
		{"standard", domain.GroupStandard, true},
		{"aggregate", domain.GroupAggregate, true},
		{"Standard", "", false},
		{" aggregate", "", false},
		{"other", "", false},
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.in), func(t *testing.T) {
			t.Parallel()
			got, err := domain.ParseGroupType(tt.in)
			if got != tt.want {
				t.Errorf("ParseGroupType(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			vrCheckInvalid(t, err, map[string]string{"group_type": "standard or aggregate"})
		})
	}
}

func TestValidateGroupName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		errMsg   string
	}{
		{"openai", "openai", ""},
		{"  openai-pool_2 \n", "openai-pool_2", ""},
		{"a", "a", ""},
		{"0", "0", ""},
		{"-_-", "-_-", ""},
		{strings.Repeat("a", 100), strings.Repeat("a", 100), ""},
		{"", "", "required"},
		{"   ", "", "required"},
		{strings.Repeat("a", 101), "", "1 to 100"},
		{"OpenAI", "", "lowercase"},
		{"open ai", "", "lowercase"},
		{"open.ai", "", "lowercase"},
		{"open/ai", "", "lowercase"},
		{"groupé", "", "lowercase"},
		{"a\nb", "", "lowercase"},
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.in), func(t *testing.T) {
			t.Parallel()
			got, err := domain.ValidateGroupName(tt.in)
			if got != tt.want {
				t.Errorf("ValidateGroupName(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if tt.errMsg == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			vrCheckInvalid(t, err, map[string]string{"name": tt.errMsg})
		})
	}
}

func TestParseUpstreamsValid(t *testing.T) {
	t.Parallel()
	type up = domain.Upstream
	tests := []struct {
		name string
		raw  string
		want []up
	}{
		{"one", `[{"url":"https://api.openai.com","weight":1}]`, []up{{"https://api.openai.com", 1}}},
		{"trimmed url", `[{"url":"  http://10.0.0.1:8080/v1/ ","weight":3}]`, []up{{"http://10.0.0.1:8080/v1/", 3}}},
		{"upper-case scheme", `[{"url":"HTTPS://X.example","weight":1}]`, []up{{"HTTPS://X.example", 1}}},
		{"several with weight 0", `[{"url":"https://a.example","weight":0},{"url":"https://b.example","weight":5}]`,
			[]up{{"https://a.example", 0}, {"https://b.example", 5}}},
		{"missing weight is 0", `[{"url":"https://a.example"},{"url":"https://b.example","weight":1}]`,
			[]up{{"https://a.example", 0}, {"https://b.example", 1}}},
		{"null weight is 0", `[{"url":"https://a.example","weight":null},{"url":"https://b.example","weight":1}]`,
			[]up{{"https://a.example", 0}, {"https://b.example", 1}}},
		{"largest weight", `[{"url":"https://a.example","weight":2147483647}]`, []up{{"https://a.example", 2147483647}}},
		{"extra fields ignored", `[{"url":"https://a.example","weight":1,"note":"x"}]`, []up{{"https://a.example", 1}}},
		{"field names case-insensitive", `[{"URL":"https://a.example","Weight":2}]`, []up{{"https://a.example", 2}}},
		{"query kept", `[{"url":"https://a.example/p?x=1","weight":1}]`, []up{{"https://a.example/p?x=1", 1}}},
		{"IPv6 host", `[{"url":"http://[::1]:8080","weight":1}]`, []up{{"http://[::1]:8080", 1}}},
		{"whitespace around", " \n[{\"url\":\"https://a.example\",\"weight\":1}] ", []up{{"https://a.example", 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := domain.ParseUpstreams(json.RawMessage(tt.raw))
			if err != nil {
				t.Fatalf("ParseUpstreams: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseUpstreamsInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		raw  string
		want map[string]string
	}{
		{"absent", ``, map[string]string{"upstreams": "at least one upstream is required"}},
		{"null", `null`, map[string]string{"upstreams": "at least one upstream is required"}},
		{"empty array", `[]`, map[string]string{"upstreams": "at least one upstream is required"}},
		{"object", `{"url":"https://a.example","weight":1}`, map[string]string{"upstreams": "JSON array"}},
		{"string", `"https://a.example"`, map[string]string{"upstreams": "JSON array"}},
		{"malformed", `[{"url":`, map[string]string{"upstreams": "JSON array"}},
		{"element not an object", `["https://a.example"]`, map[string]string{"upstreams[0]": "object"}},
		{"element null", `[null]`, map[string]string{"upstreams[0]": "object"}},
		{"missing url", `[{"weight":1}]`, map[string]string{"upstreams[0].url": "required"}},
		{"null url", `[{"url":null,"weight":1}]`, map[string]string{"upstreams[0].url": "required"}},
		{"empty url", `[{"url":"","weight":1}]`, map[string]string{"upstreams[0].url": "required"}},
		{"blank url", `[{"url":"   ","weight":1}]`, map[string]string{"upstreams[0].url": "required"}},
		{"url not a string", `[{"url":42,"weight":1}]`, map[string]string{"upstreams[0].url": "string"}},
		{"no scheme", `[{"url":"api.openai.com","weight":1}]`, map[string]string{"upstreams[0].url": "http:// or https://"}},
		{"ftp", `[{"url":"ftp://a.example","weight":1}]`, map[string]string{"upstreams[0].url": "http:// or https://"}},
		{"ws", `[{"url":"ws://a.example","weight":1}]`, map[string]string{"upstreams[0].url": "http:// or https://"}},
		{"no host", `[{"url":"https://","weight":1}]`, map[string]string{"upstreams[0].url": "host"}},
		{"only port", `[{"url":"https://:443","weight":1}]`, map[string]string{"upstreams[0].url": "host"}},
		{"unparsable", `[{"url":"https://a b.example","weight":1}]`, map[string]string{"upstreams[0].url": "host"}},
		{"float weight", `[{"url":"https://a.example","weight":1.0}]`, map[string]string{"upstreams[0].weight": "integer"}},
		{"fraction weight", `[{"url":"https://a.example","weight":1.5}]`, map[string]string{"upstreams[0].weight": "integer"}},
		{"exponent weight", `[{"url":"https://a.example","weight":1e2}]`, map[string]string{"upstreams[0].weight": "integer"}},
		{"string weight", `[{"url":"https://a.example","weight":"1"}]`, map[string]string{"upstreams[0].weight": "integer"}},
		{"bool weight", `[{"url":"https://a.example","weight":true}]`, map[string]string{"upstreams[0].weight": "integer"}},
		{"negative weight", `[{"url":"https://a.example","weight":-1},{"url":"https://b.example","weight":1}]`,
			map[string]string{"upstreams[0].weight": "negative"}},
		{"huge negative weight", `[{"url":"https://a.example","weight":-99999999999999999999}]`,
			map[string]string{"upstreams[0].weight": "negative"}},
		{"too large weight", `[{"url":"https://a.example","weight":2147483648}]`, map[string]string{"upstreams[0].weight": "at most"}},
		{"huge weight", `[{"url":"https://a.example","weight":99999999999999999999}]`, map[string]string{"upstreams[0].weight": "at most"}},
		{"all weights zero", `[{"url":"https://a.example","weight":0},{"url":"https://b.example"}]`,
			map[string]string{"upstreams": "greater than 0"}},
		{"every problem", `[{"url":"x","weight":1},{"url":"https://b.example","weight":-2},{"weight":"a"},7]`,
			map[string]string{
				"upstreams[0].url": "http:// or https://", "upstreams[1].weight": "negative",
				"upstreams[2].url": "required", "upstreams[2].weight": "integer", "upstreams[3]": "object",
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := domain.ParseUpstreams(json.RawMessage(tt.raw))
			vrCheckInvalid(t, err, tt.want)
			if got != nil {
				t.Errorf("upstreams on error = %+v", got)
			}
			if !strings.HasPrefix(err.Error(), "Invalid upstreams configuration: ") {
				t.Errorf("Error() = %q", err.Error())
			}
		})
	}
}

func TestValidateValidationEndpoint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"", "", true},
		{"   ", "", true},
		{"/v1/chat/completions", "/v1/chat/completions", true},
		{"  /v1/responses  ", "/v1/responses", true},
		{"/", "/", true},
		{"/v1/models?limit=1&x=y", "/v1/models?limit=1&x=y", true},
		{"/openai/deployments/{model}/chat/completions?api-version=2024-10-21", "/openai/deployments/{model}/chat/completions?api-version=2024-10-21", true},
		{"v1/chat/completions", "", false},
		{"https://api.openai.com/v1/chat/completions", "", false},
		{"/redirect?to=https://evil.example", "", false},
		{"//evil.example/x", "//evil.example/x", true},
		{"/v1/a\nb", "", false},
		{"/v1/a\rb", "", false},
		{"/v1/a\x00", "", false},
		{"/v1/a\x7f", "", false},
		{"?x=1", "", false},
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.in), func(t *testing.T) {
			t.Parallel()
			got, err := domain.ValidateValidationEndpoint(tt.in)
			if got != tt.want {
				t.Errorf("ValidateValidationEndpoint(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			vrCheckInvalid(t, err, map[string]string{"validation_endpoint": "invalid test path"})
		})
	}
}

func TestValidateRedirectRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   map[string]string
		want map[string]string
		errs map[string]string
	}{
		{"nil", nil, map[string]string{}, nil},
		{"empty", map[string]string{}, map[string]string{}, nil},
		{"kept", map[string]string{"gpt-fast": "gpt-4.1-mini"}, map[string]string{"gpt-fast": "gpt-4.1-mini"}, nil},
		{"trimmed", map[string]string{" a ": "\tb\n", "c": "d"}, map[string]string{"a": "b", "c": "d"}, nil},
		{"empty key", map[string]string{"": "b"}, nil, map[string]string{"model_redirect_rules": "empty"}},
		{"blank key", map[string]string{"  ": "b"}, nil, map[string]string{"model_redirect_rules": "empty"}},
		{"empty value", map[string]string{"a": ""}, nil, map[string]string{"model_redirect_rules.a": "must not be empty"}},
		{"blank value", map[string]string{" a ": "  "}, nil, map[string]string{"model_redirect_rules.a": "must not be empty"}},
		{"same after trimming", map[string]string{"a": "x", " a": "y"}, nil, map[string]string{"model_redirect_rules.a": "duplicate"}},
		{"every problem", map[string]string{"": "x", "b": " ", "c": "d"}, nil, map[string]string{
			"model_redirect_rules": "empty", "model_redirect_rules.b": "must not be empty",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var before map[string]string
			if tt.in != nil {
				before = make(map[string]string)
				for k, v := range tt.in {
					before[k] = v
				}
			}
			got, err := domain.ValidateRedirectRules(tt.in)
			if !reflect.DeepEqual(tt.in, before) {
				t.Errorf("input modified: %v", tt.in)
			}
			if tt.errs != nil {
				vrCheckInvalid(t, err, tt.errs)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got == nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestValidateProxyKeys(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", ""},
		{"  ", ""},
		{" a , b ", "a , b"},
		{"sk-1,sk-2", "sk-1,sk-2"},
		{"\na,\n", "a,"},
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.in), func(t *testing.T) {
			t.Parallel()
			if got := domain.ValidateProxyKeys(tt.in); got != tt.want {
				t.Fatalf("ValidateProxyKeys(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestSplitProxyKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{" , ,, ", nil},
		{"a", []string{"a"}},
		{" a , b ,,c,", []string{"a", "b", "c"}},
		{"a b;c", []string{"a b;c"}},
		{"a,a", []string{"a", "a"}},
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.in), func(t *testing.T) {
			t.Parallel()
			if got := domain.SplitProxyKeys(tt.in); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("SplitProxyKeys(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestValidateText(t *testing.T) {
	t.Parallel()
	if domain.MaxDisplayNameLen != 255 || domain.MaxDescriptionLen != 512 || domain.MaxNotesLen != 255 {
		t.Fatalf("limits = %d, %d, %d", domain.MaxDisplayNameLen, domain.MaxDescriptionLen, domain.MaxNotesLen)
	}
	tests := []struct {
		name  string
		field string
		in    string
		max   int
		want  string
		ok    bool
	}{
		{"empty", "display_name", "", 255, "", true},
		{"trimmed", "display_name", "  OpenAI Primary \n", 255, "OpenAI Primary", true},
		{"at limit", "notes", strings.Repeat("x", 255), 255, strings.Repeat("x", 255), true},
		{"at limit after trimming", "notes", "  " + strings.Repeat("x", 255) + "  ", 255, strings.Repeat("x", 255), true},
		{"unicode counted as characters", "notes", strings.Repeat("é", 255), 255, strings.Repeat("é", 255), true},
		{"emoji counted as characters", "description", strings.Repeat("🙂", 512), 512, strings.Repeat("🙂", 512), true},
		{"over limit", "notes", strings.Repeat("x", 256), 255, "", false},
		{"unicode over limit", "display_name", strings.Repeat("é", 256), 255, "", false},
		{"description over limit", "description", strings.Repeat("d", 513), 512, "", false},
		{"zero limit", "x", "a", 0, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := domain.ValidateText(tt.field, tt.in, tt.max)
			if got != tt.want {
				t.Errorf("ValidateText = %q, want %q", got, tt.want)
			}
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			vrCheckInvalid(t, err, map[string]string{tt.field: "at most " + strconv.Itoa(tt.max) + " characters"})
		})
	}
}

func TestValidateWeight(t *testing.T) {
	t.Parallel()
	tests := []struct {
		w  int
		ok bool
	}{
		{0, true}, {1, true}, {500, true}, {1000, true},
		{-1, false}, {1001, false}, {-1 << 40, false}, {1 << 40, false},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.w), func(t *testing.T) {
			t.Parallel()
			err := domain.ValidateWeight("sub_groups[0].weight", tt.w)
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			vrCheckInvalid(t, err, map[string]string{"sub_groups[0].weight": "between 0 and 1000"})
		})
	}
}
