package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	anthropicoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"google.golang.org/genai"

	"gpt-load/domain"
)

// providers is one fake upstream speaking the three wire formats, plain and SSE, which
// fails with a 401 for keys starting with "bad".
func providers(t *testing.T) *upstream {
	return newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
		if strings.HasPrefix(c.Key, "bad") {
			jsonError(w, 401, "invalid api key")
			return
		}
		stream := strings.Contains(c.Body, `"stream":true`) || strings.HasSuffix(r.URL.Path, ":streamGenerateContent")
		fl := w.(http.Flusher)
		switch {
		case strings.HasSuffix(r.URL.Path, "/chat/completions"):
			if !stream {
				chatOK(w, "hello from openai")
				return
			}
			sseChat(w, "hello ", "from ", "openai")
		case strings.HasSuffix(r.URL.Path, "/v1/messages"):
			w.Header().Set("Content-Type", "application/json")
			if !stream {
				io.WriteString(w, `{"id":"msg_1","type":"message","role":"assistant","model":"claude-test","content":[{"type":"text","text":"hello from anthropic"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":11,"output_tokens":4}}`)
				return
			}
			w.Header().Set("Content-Type", "text/event-stream")
			evs := []string{
				`event: message_start` + "\n" + `data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-test","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":11,"output_tokens":1}}}`,
				`event: content_block_start` + "\n" + `data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`,
				`event: content_block_delta` + "\n" + `data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hello from "}}`,
				`event: content_block_delta` + "\n" + `data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"anthropic"}}`,
				`event: content_block_stop` + "\n" + `data: {"type":"content_block_stop","index":0}`,
				`event: message_delta` + "\n" + `data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":4}}`,
				`event: message_stop` + "\n" + `data: {"type":"message_stop"}`,
			}
			for _, ev := range evs {
				io.WriteString(w, ev+"\n\n")
				fl.Flush()
			}
		case strings.Contains(r.URL.Path, ":generateContent") || strings.Contains(r.URL.Path, ":streamGenerateContent"):
			chunk := func(text string, total int) string {
				return fmt.Sprintf(`{"candidates":[{"content":{"parts":[{"text":%q}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":6,"candidatesTokenCount":%d,"totalTokenCount":%d},"modelVersion":"gemini-test"}`, text, total-6, total)
			}
			if !stream {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, chunk("hello from gemini", 9))
				return
			}
			w.Header().Set("Content-Type", "text/event-stream")
			for i, part := range []string{"hello ", "from ", "gemini"} {
				io.WriteString(w, "data: "+chunk(part, 7+i)+"\r\n\r\n")
				fl.Flush()
			}
		default:
			http.NotFound(w, r)
		}
	})
}

func TestSDKClients(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	up := providers(t)
	oa := e.group("oa", groupOpts{upstreams: []string{up.URL}, channel: "openai"})
	an := e.group("an", groupOpts{upstreams: []string{up.URL}, channel: "anthropic"})
	gm := e.group("gm", groupOpts{upstreams: []string{up.URL}, channel: "gemini"})
	e.addKeys(oa, "bad-oa", "good-oa")
	e.addKeys(an, "bad-an", "good-an")
	e.addKeys(gm, "bad-gm", "good-gm")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	oc := openai.NewClient(option.WithBaseURL(e.srv.URL+"/proxy/oa/v1/"), option.WithAPIKey("sk-group-oa"), option.WithMaxRetries(0))
	params := openai.ChatCompletionNewParams{Model: "gpt-test", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}}
	ac := anthropic.NewClient(anthropicoption.WithBaseURL(e.srv.URL+"/proxy/an/"), anthropicoption.WithAPIKey("sk-group-an"), anthropicoption.WithMaxRetries(0))
	aparams := anthropic.MessageNewParams{Model: "claude-test", MaxTokens: 100, Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}}
	gc, err := genai.NewClient(ctx, &genai.ClientConfig{APIKey: "sk-group-gm", Backend: genai.BackendGeminiAPI, HTTPOptions: genai.HTTPOptions{BaseURL: e.srv.URL + "/proxy/gm/"}})
	if err != nil {
		t.Fatal(err)
	}

	// Twice each: one of them meets the bad key first and fails over.
	for range 2 {
		t.Run("openai", func(t *testing.T) {
			res, err := oc.Chat.Completions.New(ctx, params)
			if err != nil || res.Choices[0].Message.Content != "hello from openai" {
				t.Fatalf("%v %+v", err, res)
			}
		})
		t.Run("openai-stream", func(t *testing.T) {
			s := oc.Chat.Completions.NewStreaming(ctx, params)
			var text strings.Builder
			for s.Next() {
				if c := s.Current(); len(c.Choices) > 0 {
					text.WriteString(c.Choices[0].Delta.Content)
				}
			}
			if err := s.Err(); err != nil || text.String() != "hello from openai" {
				t.Fatalf("%v %q", err, text.String())
			}
		})
		t.Run("anthropic", func(t *testing.T) {
			msg, err := ac.Messages.New(ctx, aparams)
			if err != nil || len(msg.Content) != 1 || msg.Content[0].Text != "hello from anthropic" {
				t.Fatalf("%v %+v", err, msg)
			}
		})
		t.Run("anthropic-stream", func(t *testing.T) {
			s := ac.Messages.NewStreaming(ctx, aparams)
			var msg anthropic.Message
			for s.Next() {
				if err := msg.Accumulate(s.Current()); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Err(); err != nil || len(msg.Content) != 1 || msg.Content[0].Text != "hello from anthropic" {
				t.Fatalf("%v %+v", err, msg)
			}
		})
		t.Run("gemini", func(t *testing.T) {
			res, err := gc.Models.GenerateContent(ctx, "gemini-test", genai.Text("hi"), nil)
			if err != nil || res.Text() != "hello from gemini" {
				t.Fatalf("%v %+v", err, res)
			}
		})
		t.Run("gemini-stream", func(t *testing.T) {
			var text strings.Builder
			for res, err := range gc.Models.GenerateContentStream(ctx, "gemini-test", genai.Text("hi"), nil) {
				if err != nil {
					t.Fatal(err)
				}
				text.WriteString(res.Text())
			}
			if text.String() != "hello from gemini" {
				t.Fatalf("%q", text.String())
			}
		})
	}

	// Errors reach the SDKs in their own shape.
	bad := openai.NewClient(option.WithBaseURL(e.srv.URL+"/proxy/oa/v1/"), option.WithAPIKey("wrong"), option.WithMaxRetries(0))
	_, err = bad.Chat.Completions.New(ctx, params)
	var oerr *openai.Error
	if !errors.As(err, &oerr) || oerr.StatusCode != 401 || !strings.Contains(oerr.Message, "Authentication failed") {
		t.Fatalf("openai error: %v", err)
	}

	logs := e.waitLogs(func(l []domain.RequestLog) error {
		finals := 0
		for _, x := range l {
			if x.RequestType == domain.RequestFinal && x.IsSuccess {
				finals++
			}
		}
		if finals < 12 {
			return fmt.Errorf("%d successful logs", finals)
		}
		return nil
	})
	usage := map[string]int64{}
	for _, l := range logs {
		if l.IsSuccess {
			key := l.GroupName
			if l.IsStream {
				key += "-stream"
			}
			usage[key] = l.TotalTokens
		}
	}
	want := map[string]int64{"oa": 10, "oa-stream": 7, "an": 15, "an-stream": 15, "gm": 9, "gm-stream": 9}
	for k, v := range want {
		if usage[k] != v {
			t.Errorf("tokens of %s: %d, want %d (all: %v)", k, usage[k], v, usage)
		}
	}
}
