package proxy_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"gpt-load/domain"
)

// TestUsageOfAnAnswerReadInParts: the token usage of a plain (not SSE) answer is read
// also when the answer reaches the proxy in two reads cut inside its usage object, for
// each channel's usage shape, plain and gzipped. The upstream writes the second part only
// once the client has received the first, so the proxy cannot read both at once.
func TestUsageOfAnAnswerReadInParts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	// The usage comes first and the long part after it (still within the tail the proxy
	// keeps), so that the second read, longer than the first, overwrites all of the first
	// in the proxy's buffer.
	long := strings.Repeat("lorem ipsum ", 500)
	shapes := []struct {
		channel, path, head, usage, rest, cut string
	}{
		{"openai", "/v1/chat/completions", `{"id":"c","object":"chat.completion",`,
			`"usage":{"prompt_tokens":11,"completion_tokens":22,"total_tokens":33}`,
			`,"choices":[{"index":0,"message":{"role":"assistant","content":"` + long + `"},"finish_reason":"stop"}]}`, `"completion_`},
		{"anthropic", "/v1/messages", `{"id":"m","type":"message",`,
			`"usage":{"input_tokens":11,"output_tokens":22}`,
			`,"role":"assistant","content":[{"type":"text","text":"` + long + `"}],"stop_reason":"end_turn"}`, `"output_`},
		{"gemini", "/v1beta/models/m:generateContent", `{"modelVersion":"m",`,
			`"usageMetadata":{"promptTokenCount":11,"candidatesTokenCount":22,"totalTokenCount":33}`,
			`,"candidates":[{"content":{"parts":[{"text":"` + long + `"}],"role":"model"},"finishReason":"STOP"}]}`, `"candidates`},
	}
	for _, sh := range shapes {
		for _, zipped := range []bool{false, true} {
			name := sh.channel
			if zipped {
				name += "-gzip"
			}
			t.Run(name, func(t *testing.T) {
				answer := []byte(sh.head + sh.usage + sh.rest)
				if zipped {
					var b bytes.Buffer
					zw := gzip.NewWriter(&b)
					zw.Write(answer)
					zw.Close()
					answer = b.Bytes()
				}
				cut := len(sh.head) + strings.Index(sh.usage, sh.cut) + 3
				if zipped {
					cut = len(answer) / 3
				}
				received := make(chan struct{})
				up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, c call) {
					w.Header().Set("Content-Type", "application/json")
					if zipped {
						w.Header().Set("Content-Encoding", "gzip")
					}
					w.Write(answer[:cut])
					w.(http.Flusher).Flush()
					select {
					case <-received:
					case <-time.After(10 * time.Second):
					}
					w.Write(answer[cut:])
				})
				gname := "parts-" + name
				gid := e.group(gname, groupOpts{channel: sh.channel, upstreams: []string{up.URL}})
				e.addKeys(gid, "sk-"+gname)
				req, _ := http.NewRequest("POST", e.url(gname, sh.path), strings.NewReader(`{"model":"m"}`))
				req.Header.Set("Authorization", "Bearer sk-global")
				req.Header.Set("Accept-Encoding", "gzip") // no transparent unzipping
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				got := make([]byte, 0, len(answer))
				buf := make([]byte, 64<<10)
				signalled := false
				for {
					n, err := resp.Body.Read(buf)
					got = append(got, buf[:n]...)
					if !signalled && len(got) >= cut {
						close(received)
						signalled = true
					}
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				if resp.StatusCode != 200 || !bytes.Equal(got, answer) {
					t.Fatalf("%d: the answer was not relayed as it is", resp.StatusCode)
				}
				e.waitLogs(func(l []domain.RequestLog) error {
					for _, rec := range l {
						if rec.GroupID == gid {
							if rec.PromptTokens != 11 || rec.CompletionTokens != 22 || rec.TotalTokens != 33 {
								return fmt.Errorf("usage %d/%d/%d, want 11/22/33", rec.PromptTokens, rec.CompletionTokens, rec.TotalTokens)
							}
							return nil
						}
					}
					return fmt.Errorf("no log of group %s yet", gname)
				})
			})
		}
	}
}
