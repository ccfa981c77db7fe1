// Package channel holds one adapter per provider wire format: how the upstream key is put
// on a request, how a streamed request is recognised, where the model is named, how a key
// is validated, and the provider's error shape. Adapters work on *http.Request and bytes
// only.
package channel

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"strings"

	"gpt-load/domain"
)

// Channel adapts the proxy to one provider's wire format.
type Channel interface {
	// Auth puts the upstream key on an outgoing request (a header, or Gemini's query).
	Auth(req *http.Request, key string)
	// Stream reports whether the client asked for a streamed (SSE) answer. body is the
	// client's body before any rewriting.
	Stream(r *http.Request, body []byte) bool
	// Model names the requested model: from the path for Gemini's native API, else the
	// body's "model".
	Model(path string, body []byte) string
	// Validation builds the request that checks a key (API.md 7.10) against upstream.
	Validation(ctx context.Context, upstream string, g *domain.Group, key string) (*http.Request, error)
}

// For returns the adapter of a channel type; unknown types get the OpenAI adapter, whose
// conventions most providers follow.
func For(ct domain.ChannelType) Channel {
	switch ct {
	case domain.ChannelGemini:
		return gemini{}
	case domain.ChannelAnthropic:
		return anthropic{}
	case domain.ChannelAzureOpenAI:
		return azure{}
	case domain.ChannelOpenAIResponse:
		return openAI{responses: true}
	}
	return openAI{}
}

// AnthropicVersion is sent when an Anthropic client sends no anthropic-version.
const AnthropicVersion = "2023-06-01"

// commonStream is the stream detection shared by every channel (API.md 7.3): an Accept of
// text/event-stream, ?stream=true, or "stream": true in the body.
func commonStream(r *http.Request, body []byte) bool {
	if strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		return true
	}
	if r.URL.RawQuery != "" && strings.Contains(r.URL.RawQuery, "stream=") && r.URL.Query().Get("stream") == "true" {
		return true
	}
	if len(body) == 0 || bytes.IndexByte(body, '{') < 0 || !bytes.Contains(body, []byte(`"stream"`)) {
		return false
	}
	v, ok := Field(body, "stream")
	return ok && string(v) == "true"
}

func bodyModel(body []byte) string {
	if len(body) == 0 || !bytes.Contains(body, []byte(`"model"`)) {
		return ""
	}
	m, _ := StringField(body, "model")
	return m
}

// validationURL joins an upstream base URL and an endpoint that may carry a query.
func validationURL(upstream, endpoint string) string {
	return strings.TrimRight(upstream, "/") + endpoint
}

func jsonRequest(ctx context.Context, target string, body string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return req, nil
}

func quote(s string) string {
	var b []byte
	b = appendQuoted(b, s)
	return string(b)
}

type openAI struct{ responses bool }

func (openAI) Auth(req *http.Request, key string) { req.Header.Set("Authorization", "Bearer "+key) }

func (openAI) Stream(r *http.Request, body []byte) bool { return commonStream(r, body) }

func (openAI) Model(_ string, body []byte) string { return bodyModel(body) }

func (c openAI) Validation(ctx context.Context, upstream string, g *domain.Group, key string) (*http.Request, error) {
	body := `{"model":` + quote(g.TestModel) + `,"messages":[{"role":"user","content":"hi"}]}`
	if c.responses {
		body = `{"model":` + quote(g.TestModel) + `,"input":"hi"}`
	}
	req, err := jsonRequest(ctx, validationURL(upstream, g.EffectiveValidationEndpoint()), body)
	if err != nil {
		return nil, err
	}
	c.Auth(req, key)
	return req, nil
}

type azure struct{}

func (azure) Auth(req *http.Request, key string) { req.Header.Set("Api-Key", key) }

func (azure) Stream(r *http.Request, body []byte) bool { return commonStream(r, body) }

// Model is the deployment named in the path (/openai/deployments/{name}/...), else the
// body's model.
func (azure) Model(path string, body []byte) string {
	if _, rest, ok := strings.Cut(path, "/deployments/"); ok {
		name, _, _ := strings.Cut(rest, "/")
		if name != "" {
			return name
		}
	}
	return bodyModel(body)
}

func (c azure) Validation(ctx context.Context, upstream string, g *domain.Group, key string) (*http.Request, error) {
	endpoint := strings.ReplaceAll(g.EffectiveValidationEndpoint(), "{model}", url.PathEscape(g.TestModel))
	body := `{"model":` + quote(g.TestModel) + `,"messages":[{"role":"user","content":"hi"}]}`
	req, err := jsonRequest(ctx, validationURL(upstream, endpoint), body)
	if err != nil {
		return nil, err
	}
	c.Auth(req, key)
	return req, nil
}

type anthropic struct{}

// Auth sets x-api-key and, when the client sent none, anthropic-version (API.md 11: the
// client's version is passed through).
func (anthropic) Auth(req *http.Request, key string) {
	req.Header.Set("X-Api-Key", key)
	if req.Header.Get("Anthropic-Version") == "" {
		req.Header.Set("Anthropic-Version", AnthropicVersion)
	}
}

func (anthropic) Stream(r *http.Request, body []byte) bool { return commonStream(r, body) }

func (anthropic) Model(_ string, body []byte) string { return bodyModel(body) }

func (c anthropic) Validation(ctx context.Context, upstream string, g *domain.Group, key string) (*http.Request, error) {
	body := `{"model":` + quote(g.TestModel) + `,"max_tokens":100,"messages":[{"role":"user","content":"hi"}]}`
	req, err := jsonRequest(ctx, validationURL(upstream, g.EffectiveValidationEndpoint()), body)
	if err != nil {
		return nil, err
	}
	c.Auth(req, key)
	return req, nil
}

type gemini struct{}

// IsGeminiOpenAI reports whether a Gemini path is the OpenAI-compatible API.
func IsGeminiOpenAI(path string) bool { return strings.Contains(path, "v1beta/openai") }

// Auth uses a Bearer token on the OpenAI-compatible path, the key query parameter
// elsewhere (API.md 7.3).
func (gemini) Auth(req *http.Request, key string) {
	if IsGeminiOpenAI(req.URL.Path) {
		req.Header.Set("Authorization", "Bearer "+key)
		return
	}
	q := "key=" + url.QueryEscape(key)
	if req.URL.RawQuery == "" {
		req.URL.RawQuery = q
	} else {
		req.URL.RawQuery += "&" + q
	}
}

func (gemini) Stream(r *http.Request, body []byte) bool {
	if strings.HasSuffix(r.URL.Path, ":streamGenerateContent") {
		return true
	}
	return commonStream(r, body)
}

// Model is the segment after "models/" up to ':' on the native API, else the body's model.
func (gemini) Model(path string, body []byte) string {
	if name, _, ok := GeminiPathModel(path); ok {
		return name
	}
	return bodyModel(body)
}

// GeminiPathModel finds the model of a native Gemini path: the segment after a "models"
// segment, up to ':'. start is its offset in path.
func GeminiPathModel(path string) (name string, start int, ok bool) {
	i := strings.Index(path, "/models/")
	if i < 0 {
		return "", 0, false
	}
	start = i + len("/models/")
	seg := path[start:]
	if j := strings.IndexByte(seg, '/'); j >= 0 {
		seg = seg[:j]
	}
	if j := strings.IndexByte(seg, ':'); j >= 0 {
		seg = seg[:j]
	}
	if seg == "" {
		return "", 0, false
	}
	return seg, start, true
}

func (c gemini) Validation(ctx context.Context, upstream string, g *domain.Group, key string) (*http.Request, error) {
	target := strings.TrimRight(upstream, "/") + "/v1beta/models/" + url.PathEscape(g.TestModel) + ":generateContent"
	req, err := jsonRequest(ctx, target, `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`)
	if err != nil {
		return nil, err
	}
	c.Auth(req, key)
	return req, nil
}
