package channel

import "bytes"

// Usage is the token count of an answer.
type Usage struct {
	Prompt, Completion, Total int64
}

// Merge keeps the larger count of each field: streams repeat their usage (Gemini's is
// cumulative, Anthropic's input comes in message_start and its output in message_delta).
func (u *Usage) Merge(o Usage) {
	u.Prompt = max(u.Prompt, o.Prompt)
	u.Completion = max(u.Completion, o.Completion)
	u.Total = max(u.Total, o.Total)
}

// Final fills Total from the parts when the provider sent none.
func (u Usage) Final() Usage {
	if u.Total == 0 {
		u.Total = u.Prompt + u.Completion
	}
	return u
}

// IsZero reports an empty count.
func (u Usage) IsZero() bool { return u == Usage{} }

type usageFields struct {
	PromptTokens, CompletionTokens, TotalTokens             int64
	InputTokens, OutputTokens                               int64
	PromptTokenCount, CandidatesTokenCount, TotalTokenCount int64
}

// parseUsage reads the integer members of a usage object that name token counts; other
// members (nested details, cache counts) are skipped.
func parseUsage(obj []byte) (usageFields, bool) {
	var f usageFields
	ok := eachMember(obj, func(m member) bool {
		v := obj[m.valStart:m.end]
		n, isInt := parseCount(v)
		if !isInt {
			return true
		}
		switch string(m.key[1 : len(m.key)-1]) {
		case "prompt_tokens":
			f.PromptTokens = n
		case "completion_tokens":
			f.CompletionTokens = n
		case "total_tokens":
			f.TotalTokens = n
		case "input_tokens":
			f.InputTokens = n
		case "output_tokens":
			f.OutputTokens = n
		case "promptTokenCount":
			f.PromptTokenCount = n
		case "candidatesTokenCount":
			f.CandidatesTokenCount = n
		case "totalTokenCount":
			f.TotalTokenCount = n
		}
		return true
	})
	return f, ok
}

// parseCount reads a non-negative JSON integer.
func parseCount(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

var (
	usageKey     = []byte(`"usage"`)
	usageMetaKey = []byte(`"usageMetadata"`)
)

// HasUsage is a cheap test for a usage object in b.
func HasUsage(b []byte) bool {
	return bytes.Contains(b, usageKey) || bytes.Contains(b, usageMetaKey)
}

// FindUsage reads the last usage object in b, which may be a whole response, its tail, or
// one streamed event: OpenAI's and Anthropic's "usage" (prompt_tokens, completion_tokens,
// total_tokens; input_tokens, output_tokens), Gemini's "usageMetadata" (promptTokenCount,
// candidatesTokenCount, totalTokenCount). A quoted "usage" followed by ':' can only be a
// key: inside a JSON string its quotes would be escaped.
func FindUsage(b []byte) (Usage, bool) {
	var u Usage
	found := false
	for _, key := range [][]byte{usageMetaKey, usageKey} {
		end := len(b)
		for end > 0 {
			i := bytes.LastIndex(b[:end], key)
			if i < 0 {
				break
			}
			end = i
			j := skipSpace(b, i+len(key))
			if j >= len(b) || b[j] != ':' {
				continue
			}
			vs := skipSpace(b, j+1)
			if vs >= len(b) || b[vs] != '{' {
				continue
			}
			ve := skipValue(b, vs)
			if ve < 0 {
				continue
			}
			f, ok := parseUsage(b[vs:ve])
			if !ok {
				continue
			}
			u.Merge(Usage{
				Prompt:     max(f.PromptTokens, f.InputTokens, f.PromptTokenCount),
				Completion: max(f.CompletionTokens, f.OutputTokens, f.CandidatesTokenCount),
				Total:      max(f.TotalTokens, f.TotalTokenCount),
			})
			found = true
			break
		}
	}
	return u, found
}
