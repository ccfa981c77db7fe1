package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"gpt-load/domain"
)

// fuzzDecode runs decodeJSON on body into a new T, as a handler does.
func fuzzDecode[T any](t *testing.T, body string) (T, error) {
	var v T
	w, r := httptest.NewRecorder(), httptest.NewRequest("PUT", "/api/x", strings.NewReader(body))
	r.Body = http.MaxBytesReader(w, r.Body, maxJSONBody)
	err := decodeJSON(w, r, &v)
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) || ae.status < 400 || ae.status >= 500 || ae.message(langEN) == "" {
			t.Fatalf("%q: not a 4xx with a message: %v", body, err)
		}
	} else if !json.Valid([]byte(body)) {
		t.Fatalf("%q is not JSON, yet accepted", body)
	}
	return v, err
}

// FuzzSettingsJSON is the PUT /api/settings decoder and the settings rules behind it:
// neither panics, bad input is a 4xx with a message, accepted settings validate again.
func FuzzSettingsJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{"max_retries":3}`, `{"max_retries":3,"max_retries":4}`, `{"proxy_keys":"a,b","app_url":"http://x"}`,
		`{"blacklist_threshold":1.5}`, `{"request_timeout":"x"}`, `[]`, `null`, `{"a":{"b":[1,{"c":2,"c":3}]}}`, `{"failover_status_codes":"429,5xx"}`} {
		f.Add(s)
	}
	base := domain.DefaultSettings()
	base.ProxyKeys = "sk-fuzz-proxy"
	f.Fuzz(func(t *testing.T, body string) {
		changes, err := fuzzDecode[map[string]json.RawMessage](t, body)
		if err != nil || changes == nil {
			return
		}
		s, err := base.Apply(changes)
		if err != nil {
			if domain.ErrorCode(err) != domain.EINVALID {
				t.Fatalf("%q: settings refused with %v, not EINVALID", body, err)
			}
			return
		}
		raw, _ := json.Marshal(s)
		var back map[string]json.RawMessage
		json.Unmarshal(raw, &back)
		if _, err := base.Apply(back); err != nil {
			t.Fatalf("%q: accepted settings %s do not validate again: %v", body, raw, err)
		}
	})
}

// FuzzGroupJSON is the group create/update decoder and the group rules behind it: neither
// panics, bad input is a 4xx with a message or an EINVALID naming something.
func FuzzGroupJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{"name":"g","channel_type":"openai","test_model":"m","upstreams":[{"url":"https://u","weight":1}]}`,
		`{"name":"g","name":"h"}`, `{"id":1,"created_at":"x","name":"g"}`, `{"config":{"max_retries":1,"max_retries":1}}`,
		`{"name":"a","group_type":"aggregate","channel_type":"gemini","header_rules":[{"key":"X","value":"v","action":"set"}]}`,
		`{"upstreams":null}`, `{"param_overrides":{"t":1}}`, `{"model_redirect_rules":{"a":"b"}}`, `{"Name":"g"}`} {
		f.Add(s)
	}
	st := domain.NewState(domain.DefaultSettings())
	f.Fuzz(func(t *testing.T, body string) {
		in, err := fuzzDecode[groupBody](t, body)
		if err != nil {
			return
		}
		if _, err := domain.DecideCreateGroup(st, in.GroupInput); err != nil {
			if c := domain.ErrorCode(err); c != domain.EINVALID && c != domain.EDUPLICATE || err.Error() == "" {
				t.Fatalf("%q: create refused with %v (%s)", body, err, c)
			}
		}
	})
}

// FuzzKeyTextStream is the streaming key-text reader of the key routes and uploads: it
// never panics and reads what domain.ParseKeysText reads from the same text.
func FuzzKeyTextStream(f *testing.F) {
	for _, s := range []string{"", "a b", `["a","b"]`, `[]`, `[null,"x"]`, "a\u00a0,b", "\ufeff[\"a\"]", `["a"] x`, "[x, y]", `["\ud800"]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		kt, err := scanKeyText(strings.NewReader(text))
		if err != nil {
			var long errKeyTooLong
			if !errors.As(err, &long) {
				t.Fatalf("%q: %v", text, err)
			}
			return
		}
		var got []string
		if err := kt.each(func(k string) error { got = append(got, k); return nil }); err != nil {
			t.Fatalf("%q: second pass: %v", text, err)
		}
		if want := domain.ParseKeysText(text); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("%q: streamed %q, ParseKeysText %q", text, got, want)
		}
		if len(got) != kt.entries {
			t.Fatalf("%q: counted %d, read %d", text, kt.entries, len(got))
		}
	})
}
