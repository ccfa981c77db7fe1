package channel_test

import (
	"hash/maphash"
	"strings"
	"testing"

	"gpt-load/proxy/channel"
)

func conversation(seed maphash.Seed, body string) (uint64, bool) {
	var h maphash.Hash
	h.SetSeed(seed)
	ok := channel.Conversation(&h, []byte(body))
	return h.Sum64(), ok
}

func TestConversation(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", channel.MaxConversationPart)
	tests := []struct {
		name      string
		a, b      string
		same, has bool
	}{
		{"openai turns share system and first user message",
			`{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}`,
			`{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"more"}]}`,
			true, true},
		{"another first user message is another conversation",
			`{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}`,
			`{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"bye"}]}`,
			false, true},
		{"anthropic system prompt counts",
			`{"system":"you are a poet","messages":[{"role":"user","content":"hi"}]}`,
			`{"system":"you are a cook","messages":[{"role":"user","content":"hi"}]}`,
			false, true},
		{"anthropic turns",
			`{"system":"s","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`,
			`{"max_tokens":99,"system":"s","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"x"},{"role":"user","content":"y"}],"stream":true}`,
			true, true},
		{"gemini contents",
			`{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`,
			`{"contents":[{"role":"user","parts":[{"text":"hi"}]},{"role":"model","parts":[{"text":"yo"}]},{"role":"user","parts":[{"text":"again"}]}]}`,
			true, true},
		{"prompt_cache_key wins over the messages",
			`{"prompt_cache_key":"conv-1","messages":[{"role":"user","content":"a"}]}`,
			`{"messages":[{"role":"user","content":"b"}],"prompt_cache_key":"conv-1"}`,
			true, true},
		{"prompt_cache_key wins over user",
			`{"prompt_cache_key":"conv-1","user":"alice"}`,
			`{"prompt_cache_key":"conv-2","user":"alice"}`,
			false, true},
		{"user names the conversation",
			`{"user":"alice","messages":[{"role":"user","content":"a"}]}`,
			`{"user":"alice","messages":[{"role":"user","content":"b"}]}`,
			true, true},
		{"anthropic metadata.user_id",
			`{"metadata":{"user_id":"u1"},"messages":[{"role":"user","content":"a"}]}`,
			`{"metadata":{"user_id":"u1"},"messages":[{"role":"user","content":"b"}]}`,
			true, true},
		{"gemini cachedContent",
			`{"cachedContent":"cachedContents/abc","contents":[{"role":"user","parts":[{"text":"a"}]}]}`,
			`{"cachedContent":"cachedContents/abc","contents":[{"role":"user","parts":[{"text":"b"}]}]}`,
			true, true},
		{"an explicit name and the messages never collide",
			`{"user":"x"}`, `{"input":"x"}`, false, true},
		{"an empty explicit name falls back to the messages",
			`{"user":"","messages":[{"role":"user","content":"a"}]}`,
			`{"messages":[{"role":"user","content":"a"}]}`,
			true, true},
		{"responses input string",
			`{"instructions":"i","input":"hello"}`, `{"instructions":"i","input":"hello","previous_response_id":"r"}`,
			true, true},
		{"bounded: only the first part of a long message counts",
			`{"messages":[{"role":"user","content":"` + long + `a"}]}`,
			`{"messages":[{"role":"user","content":"` + long + `b"}]}`,
			true, true},
		{"no conversation in a body without messages", `{"model":"m"}`, `{"model":"m"}`, true, false},
		{"no conversation in something that is not JSON", `hello`, `hello`, true, false},
	}
	seed := maphash.MakeSeed()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, okA := conversation(seed, tt.a)
			b, okB := conversation(seed, tt.b)
			if okA != tt.has || okB != tt.has {
				t.Fatalf("found = %v, %v; want %v", okA, okB, tt.has)
			}
			if tt.has && (a == b) != tt.same {
				t.Fatalf("same conversation = %v, want %v", a == b, tt.same)
			}
		})
	}
}

func BenchmarkConversation(b *testing.B) {
	body := []byte(`{"model":"gpt-4o","stream":true,"messages":[{"role":"system","content":"` + strings.Repeat("You are helpful. ", 40) +
		`"},{"role":"user","content":"What is the capital of France?"},{"role":"assistant","content":"Paris."},{"role":"user","content":"And of Italy?"}]}`)
	seed := maphash.MakeSeed()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var h maphash.Hash
		h.SetSeed(seed)
		if !channel.Conversation(&h, body) {
			b.Fatal("no conversation")
		}
		_ = h.Sum64()
	}
}
