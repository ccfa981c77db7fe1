package channel

import "hash/maphash"

// A provider's prompt cache pays off when the requests of one conversation reach the same
// key. Conversation tells which conversation a request belongs to, from the body the proxy
// holds anyway, in one scan of its top-level members (and of the leading elements of its
// message list), without decoding it.

// MaxConversationPart bounds each part of a request that names its conversation by its
// leading messages: the system prompt, and each leading message up to the first user one.
const MaxConversationPart = 4 << 10

// maxLeadingMessages bounds the messages read for the first user message.
const maxLeadingMessages = 4

// The top-level members Conversation reads, in the order an explicit name wins.
var conversationFields = [...]string{
	// Explicit names of a conversation or of its user.
	"prompt_cache_key", // OpenAI
	"user",             // OpenAI
	"metadata",         // Anthropic: metadata.user_id
	"cachedContent",    // Gemini
	// The system prompt.
	"system",            // Anthropic
	"instructions",      // OpenAI Responses
	"systemInstruction", // Gemini
	// The message list.
	"messages", // OpenAI chat, Anthropic
	"contents", // Gemini
	"input",    // OpenAI Responses
}

const (
	convCacheKey = iota
	convUser
	convMetadata
	convCachedContent
	convSystem
	convInstructions
	convSystemInstruction
	convMessages
	convContents
	convInput
)

// Conversation writes into h what names the conversation of a request body: the first of
// prompt_cache_key, user, metadata.user_id and cachedContent that is a non-empty string,
// else the system prompt and the leading messages up to the first user message (each part
// cut at MaxConversationPart bytes), which later turns of the conversation repeat as they
// were. It reports false, with h untouched, when the body names none (not a JSON object,
// or none of these members).
func Conversation(h *maphash.Hash, body []byte) bool {
	if len(body) == 0 {
		return false
	}
	var spans [len(conversationFields)][]byte
	found := false
	eachMember(body, func(m member) bool {
		for i, name := range conversationFields {
			if spans[i] == nil && keyIs(m.key, name) {
				spans[i], found = body[m.valStart:m.end], true
				break
			}
		}
		return true
	})
	if !found {
		return false
	}
	for i := convCacheKey; i <= convCachedContent; i++ {
		v := spans[i]
		if i == convMetadata && v != nil {
			v, _ = Field(v, "user_id")
		}
		if len(v) > 2 && v[0] == '"' {
			h.WriteByte(byte('a' + i))
			h.Write(v)
			return true
		}
	}
	wrote := false
	part := func(tag byte, v []byte) {
		h.WriteByte(tag)
		h.Write(v[:min(len(v), MaxConversationPart)])
		wrote = true
	}
	for i := convSystem; i <= convSystemInstruction; i++ {
		if v := spans[i]; len(v) > 0 && string(v) != "null" {
			part('s', v)
		}
	}
	for i := convMessages; i <= convInput; i++ {
		v := spans[i]
		if len(v) == 0 {
			continue
		}
		if v[0] == '"' { // a Responses input given as one string
			part('m', v)
			break
		}
		n := 0
		eachElement(v, func(elem []byte) bool {
			part('m', elem)
			n++
			role, _ := Field(elem, "role")
			return string(role) != `"user"` && n < maxLeadingMessages
		})
		break
	}
	return wrote
}

// eachElement calls f for the elements of the JSON array b, in order, until f returns
// false or the array ends; it stops at the first malformed element.
func eachElement(b []byte, f func(elem []byte) bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return
	}
	for i = skipSpace(b, i+1); i < len(b) && b[i] != ']'; {
		end := skipValue(b, i)
		if end < 0 || !f(b[i:end]) {
			return
		}
		i = skipSpace(b, end)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
}
