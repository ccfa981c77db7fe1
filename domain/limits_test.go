package domain_test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"gpt-load/domain"
)

// maxEventBytes is the default largest message of the event log (NATS max_payload).
const maxEventBytes = 1 << 20

// groupAtLimits is a group create body with every sized field at its limit.
func groupAtLimits(t *testing.T) map[string]any {
	t.Helper()
	ups := make([]map[string]any, domain.MaxUpstreams)
	for i := range ups {
		u := fmt.Sprintf("https://u%02d.example.com/", i)
		ups[i] = map[string]any{"url": u + strings.Repeat("p", domain.MaxURLBytes-len(u)), "weight": 1}
	}
	rules := make([]map[string]any, domain.MaxHeaderRules)
	for i := range rules {
		k := fmt.Sprintf("X-H%02d-", i)
		rules[i] = map[string]any{"key": k + strings.Repeat("k", domain.MaxHeaderNameBytes-len(k)), "value": strings.Repeat("v", domain.MaxHeaderValueBytes), "action": "set"}
	}
	// {"p":"xxx..."} of exactly the limit.
	params := `{"p":"` + strings.Repeat("x", domain.MaxParamOverridesBytes-8) + `"}`
	redirect := map[string]string{}
	for n := 2; ; n++ {
		from := fmt.Sprintf("m%04d", n)
		redirect[from] = strings.Repeat("t", domain.MaxModelNameBytes)
		b, _ := json.Marshal(redirect)
		if len(b) > domain.MaxRedirectRulesBytes {
			delete(redirect, from)
			break
		}
	}
	return map[string]any{
		"name": "big", "channel_type": "openai", "test_model": strings.Repeat("m", domain.MaxModelNameBytes),
		"display_name": strings.Repeat("ü", domain.MaxDisplayNameLen), "description": strings.Repeat("ü", domain.MaxDescriptionLen),
		"upstreams": ups, "header_rules": rules, "param_overrides": json.RawMessage(params), "model_redirect_rules": redirect,
		"proxy_keys":          strings.Repeat("k", domain.MaxProxyKeysBytes),
		"validation_endpoint": "/" + strings.Repeat("e", domain.MaxURLBytes-1),
		"config": map[string]any{"proxy_url": "http://p.example/" + strings.Repeat("q", domain.MaxURLBytes-17),
			"failover_status_codes": strings.Repeat("500,", 1000)[:3999]},
	}
}

func bodyOf(t *testing.T, m map[string]any) string {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestGroupAtLimitsFitsOneEvent: a group with every field at its limit is accepted, and its
// event, secrets sealed as the log seals them (hex of nonce, value and tag), stays within
// one message of the event log.
func TestGroupAtLimitsFitsOneEvent(t *testing.T) {
	t.Parallel()
	f := newFold()
	fact, err := domain.DecideCreateGroup(f.State, gin(t, bodyOf(t, groupAtLimits(t))))
	if err != nil {
		t.Fatalf("a group at every limit was refused: %v", err)
	}
	seal := func(v string) (string, error) { return hex.EncodeToString(make([]byte, 12+len(v)+16)), nil }
	for _, fct := range []domain.Fact{fact, domain.GroupUpdated{Group: fact.Group, Changed: make([]string, 20)}} {
		sealed, _, err := domain.MapSecrets(fct, seal)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(sealed)
		if len(b) > maxEventBytes-4096 { // headers take the rest
			t.Fatalf("%T at every limit is %d bytes sealed, more than one event may hold", fct, len(b))
		}
		t.Logf("%T at every limit: %d bytes sealed", fct, len(b))
	}
}

// TestGroupFieldLimits: each field one step past its limit is refused naming the field and
// the limit, on create and on update.
func TestGroupFieldLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		field string
		set   func(m map[string]any)
		msg   string
	}{
		{"param_overrides", func(m map[string]any) {
			m["param_overrides"] = json.RawMessage(`{"p":"` + strings.Repeat("x", 3<<20) + `"}`)
		}, fmt.Sprintf("at most %d bytes", domain.MaxParamOverridesBytes)},
		{"header_rules", func(m map[string]any) {
			rules := make([]map[string]string, domain.MaxHeaderRules+1)
			for i := range rules {
				rules[i] = map[string]string{"key": fmt.Sprintf("X-%d", i), "value": "v", "action": "set"}
			}
			m["header_rules"] = rules
		}, fmt.Sprintf("at most %d rules", domain.MaxHeaderRules)},
		{"header_rules[0].value", func(m map[string]any) {
			m["header_rules"] = []map[string]string{{"key": "Authorization", "value": strings.Repeat("v", domain.MaxHeaderValueBytes+1), "action": "set"}}
		}, fmt.Sprintf("at most %d bytes", domain.MaxHeaderValueBytes)},
		{"header_rules[0].key", func(m map[string]any) {
			m["header_rules"] = []map[string]string{{"key": strings.Repeat("k", domain.MaxHeaderNameBytes+1), "value": "v", "action": "set"}}
		}, fmt.Sprintf("at most %d bytes", domain.MaxHeaderNameBytes)},
		{"model_redirect_rules", func(m map[string]any) {
			r := map[string]string{}
			for i := 0; i < 1000; i++ {
				r[fmt.Sprintf("model-%d", i)] = strings.Repeat("t", 100)
			}
			m["model_redirect_rules"] = r
		}, fmt.Sprintf("at most %d bytes", domain.MaxRedirectRulesBytes)},
		{"model_redirect_rules", func(m map[string]any) {
			m["model_redirect_rules"] = map[string]string{"a": strings.Repeat("t", domain.MaxModelNameBytes+1)}
		}, fmt.Sprintf("at most %d bytes", domain.MaxModelNameBytes)},
		{"description", func(m map[string]any) { m["description"] = strings.Repeat("d", domain.MaxDescriptionLen+1) }, "at most 512 characters"},
		{"display_name", func(m map[string]any) { m["display_name"] = strings.Repeat("d", domain.MaxDisplayNameLen+1) }, "at most 255 characters"},
		{"proxy_keys", func(m map[string]any) { m["proxy_keys"] = strings.Repeat("k", domain.MaxProxyKeysBytes+1) }, fmt.Sprintf("at most %d bytes", domain.MaxProxyKeysBytes)},
		{"test_model", func(m map[string]any) { m["test_model"] = strings.Repeat("m", domain.MaxModelNameBytes+1) }, fmt.Sprintf("at most %d bytes", domain.MaxModelNameBytes)},
		{"validation_endpoint", func(m map[string]any) { m["validation_endpoint"] = "/" + strings.Repeat("e", domain.MaxURLBytes) }, fmt.Sprintf("at most %d bytes", domain.MaxURLBytes)},
		{"upstreams", func(m map[string]any) {
			ups := make([]map[string]any, domain.MaxUpstreams+1)
			for i := range ups {
				ups[i] = map[string]any{"url": "https://u.example.com", "weight": 1}
			}
			m["upstreams"] = ups
		}, fmt.Sprintf("at most %d upstreams", domain.MaxUpstreams)},
		{"upstreams[0].url", func(m map[string]any) {
			m["upstreams"] = []map[string]any{{"url": "https://u.example.com/" + strings.Repeat("p", domain.MaxURLBytes), "weight": 1}}
		}, fmt.Sprintf("at most %d bytes", domain.MaxURLBytes)},
		{"config.proxy_url", func(m map[string]any) {
			m["config"] = map[string]any{"proxy_url": "http://p.example/" + strings.Repeat("q", domain.MaxURLBytes)}
		}, fmt.Sprintf("at most %d bytes", domain.MaxURLBytes)},
	}
	for _, tt := range tests {
		t.Run(tt.field+"/"+tt.msg, func(t *testing.T) {
			t.Parallel()
			f := createFold(t)
			m := map[string]any{"name": "new", "channel_type": "openai", "test_model": "m",
				"upstreams": []map[string]any{{"url": "https://u.example.com", "weight": 1}}}
			tt.set(m)
			_, err := domain.DecideCreateGroup(f.State, gin(t, bodyOf(t, m)))
			checkLimitErr(t, "create", err, tt.field, tt.msg)
			delete(m, "name")
			_, err = domain.DecideUpdateGroup(f.State, 1, gin(t, bodyOf(t, m)))
			checkLimitErr(t, "update", err, tt.field, tt.msg)
		})
	}
}

func checkLimitErr(t *testing.T, op string, err error, field, msg string) {
	t.Helper()
	if domain.ErrorCode(err) != domain.EINVALID {
		t.Fatalf("%s: err = %v, want EINVALID", op, err)
	}
	for _, fe := range domain.ErrorFields(err) {
		if fe.Field == field && strings.Contains(fe.Message, msg) {
			return
		}
	}
	t.Fatalf("%s: fields %+v, want %s with %q", op, domain.ErrorFields(err), field, msg)
}

// TestSettingsStringLimits: string settings are bounded too.
func TestSettingsStringLimits(t *testing.T) {
	t.Parallel()
	long := func(prefix string, n int) json.RawMessage {
		b, _ := json.Marshal(prefix + strings.Repeat("a", n-len(prefix)+1))
		return b
	}
	for key, raw := range map[string]json.RawMessage{
		"proxy_keys":            long("", domain.MaxProxyKeysBytes),
		"proxy_url":             long("http://p.example/", domain.MaxURLBytes),
		"app_url":               long("http://p.example/", domain.MaxURLBytes),
		"failover_status_codes": json.RawMessage(`"` + strings.Repeat("500,", 1025) + `500"`),
	} {
		_, err := domain.DefaultSettings().Apply(map[string]json.RawMessage{key: raw})
		if fs := domain.ErrorFields(err); len(fs) != 1 || fs[0].Field != key || !strings.Contains(fs[0].Message, "at most") {
			t.Errorf("%s too long: err = %v", key, err)
		}
	}
}
