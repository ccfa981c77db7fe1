package channel_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"gpt-load/domain"
	"gpt-load/proxy/channel"
)

func TestField(t *testing.T) {
	t.Parallel()
	body := []byte(` {"a":{"model":"inner"},"model" : "gpt\"x","stream":true,"n":[1,{"s":"}"}], "e":"\u006d"} `)
	if v, ok := channel.StringField(body, "model"); !ok || v != `gpt"x` {
		t.Fatalf("model %q %v", v, ok)
	}
	if v, ok := channel.Field(body, "stream"); !ok || string(v) != "true" {
		t.Fatalf("stream %q", v)
	}
	if v, ok := channel.Field(body, "n"); !ok || string(v) != `[1,{"s":"}"}]` {
		t.Fatalf("n %q", v)
	}
	for _, bad := range []string{"", "[]", `{"a":}`, `{"a":1`, `{"a":1}x`, `{"a" 1}`, "nope"} {
		if channel.IsObject([]byte(bad)) {
			t.Fatalf("%q taken for an object", bad)
		}
	}
	if !channel.IsObject([]byte(" {} ")) {
		t.Fatal("{} not an object")
	}
}

func TestSetFields(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{`{"model":"a","t":1}`, `{"model":"a","t":0.5,"max":2}`},
		{`{}`, `{"max":2,"t":0.5}`},
		{` { "t" : 9 } `, ` { "t" : 0.5,"max":2} `},
	} {
		out, ok := channel.SetFields([]byte(tc.in), map[string]json.RawMessage{"t": json.RawMessage("0.5"), "max": json.RawMessage("2")})
		if !ok || !json.Valid(out) {
			t.Fatalf("%s: %s %v", tc.in, out, ok)
		}
		var got, want map[string]any
		json.Unmarshal(out, &got)
		json.Unmarshal([]byte(tc.want), &want)
		if len(got) != len(want) || got["t"] != 0.5 || got["max"] != float64(2) {
			t.Fatalf("%s: %s", tc.in, out)
		}
	}
	if out, ok := channel.SetFields([]byte(`[1]`), map[string]json.RawMessage{"t": json.RawMessage("1")}); ok || string(out) != "[1]" {
		t.Fatal("array rewritten")
	}
	out := channel.ReplaceStringField([]byte(`{"model":"a","x":1}`), "model", "b<c")
	if m, _ := channel.StringField(out, "model"); m != "b<c" {
		t.Fatalf("%s", out)
	}
}

// FuzzSetFields: on any input, SetFields either leaves it alone or returns valid JSON
// carrying the override, when the input was valid JSON.
func FuzzSetFields(f *testing.F) {
	f.Add(`{"a":1,"b":[1,2,{"c":"}"}]}`)
	f.Add(`{}`)
	f.Add(`{"t":"\"}"}`)
	f.Fuzz(func(t *testing.T, in string) {
		out, ok := channel.SetFields([]byte(in), map[string]json.RawMessage{"t": json.RawMessage(`"x"`)})
		if !ok {
			if string(out) != in {
				t.Fatal("changed a body it did not take for an object")
			}
			return
		}
		var m map[string]any
		if json.Unmarshal([]byte(in), &m) != nil {
			return
		}
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%q -> %q: %v", in, out, err)
		}
		if got["t"] != "x" {
			t.Fatalf("%q -> %q", in, out)
		}
	})
}

func TestFindUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want channel.Usage
	}{
		{`{"choices":[{"message":{"content":"the \"usage\": {\"total_tokens\":99}"}}],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}`, channel.Usage{7, 3, 10}},
		{`{"usage":{"input_tokens":11,"output_tokens":4}}`, channel.Usage{11, 4, 0}},
		{`data: {"type":"message_start","message":{"usage":{"input_tokens":11,"output_tokens":1}}}`, channel.Usage{11, 1, 0}},
		{`{"candidates":[],"usageMetadata":{"promptTokenCount":6,"candidatesTokenCount":3,"totalTokenCount":9}}`, channel.Usage{6, 3, 9}},
		{`{"type":"response.completed","response":{"usage":{"input_tokens":2,"output_tokens":5,"total_tokens":7}}}`, channel.Usage{2, 5, 7}},
	} {
		got, ok := channel.FindUsage([]byte(tc.in))
		if !ok || got != tc.want {
			t.Errorf("%s: %+v %v", tc.in, got, ok)
		}
	}
	if _, ok := channel.FindUsage([]byte(`{"text":"no usage here"}`)); ok {
		t.Fatal("usage found where there is none")
	}
}

func TestErrorMessage(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`{"error":{"message":"bad key"}}`:        "bad key",
		`{"error_msg":"m1"}`:                     "m1",
		`{"error":"plain"}`:                      "plain",
		`{"message":"top"}`:                      "top",
		`[{"error":{"code":429,"message":"q"}}]`: "q",
		`not json`:                               "not json",
		strings.Repeat("x", 3000):                strings.Repeat("x", channel.MaxErrorMessage),
	} {
		if got := channel.ErrorMessage([]byte(in)); got != want {
			t.Errorf("%.40s: %q", in, got)
		}
	}
}

func TestErrorBodyShapes(t *testing.T) {
	t.Parallel()
	for shape, want := range map[channel.Shape]string{
		channel.ShapeOpenAI:    `"error":{"message":"m","type":"invalid_request_error","code":"no_keys_available"}`,
		channel.ShapeAnthropic: `"type":"error","error":{"type":"not_found_error","message":"m"}`,
		channel.ShapeGemini:    `"error":{"code":404,"message":"m","status":"NOT_FOUND"}`,
	} {
		status := 404
		b := string(channel.ErrorBody(shape, status, "NO_KEYS_AVAILABLE", "m"))
		if !json.Valid([]byte(b)) || !strings.Contains(b, want) || !strings.HasPrefix(b, `{"code":"NO_KEYS_AVAILABLE","message":"m"`) {
			t.Errorf("shape %d: %s", shape, b)
		}
	}
	if channel.ShapeFor(domain.ChannelGemini, "/v1beta/openai/chat/completions") != channel.ShapeOpenAI {
		t.Fatal("gemini openai path")
	}
}

func TestStreamAndModel(t *testing.T) {
	t.Parallel()
	r, _ := http.NewRequest("POST", "http://x/v1beta/models/gemini-pro:streamGenerateContent?alt=sse", nil)
	g := channel.For(domain.ChannelGemini)
	if !g.Stream(r, nil) || g.Model("/v1beta/models/gemini-pro:streamGenerateContent", nil) != "gemini-pro" {
		t.Fatal("gemini stream/model")
	}
	o := channel.For(domain.ChannelOpenAI)
	r2, _ := http.NewRequest("POST", "http://x/v1/chat/completions", nil)
	if o.Stream(r2, []byte(`{"stream":false,"x":"\"stream\":true"}`)) || !o.Stream(r2, []byte(`{"stream": true}`)) {
		t.Fatal("openai stream")
	}
	r3, _ := http.NewRequest("GET", "http://x/v1/models?stream=true", nil)
	if !o.Stream(r3, nil) {
		t.Fatal("query stream")
	}
	az := channel.For(domain.ChannelAzureOpenAI)
	if az.Model("/openai/deployments/dep-1/chat/completions", nil) != "dep-1" {
		t.Fatal("azure model")
	}
}
