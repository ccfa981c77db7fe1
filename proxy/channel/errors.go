package channel

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"

	"gpt-load/domain"
)

func appendQuoted(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}

// MaxErrorMessage bounds a parsed upstream error message (API.md 7.6).
const MaxErrorMessage = 2048

// ErrorMessage extracts the message of an upstream error body (API.md 7.6): the first
// non-blank of error.message, error_msg, error (a string) and message, else the raw body;
// truncated to MaxErrorMessage bytes. A JSON array (Gemini sometimes wraps its error in
// one) is read through its first element.
func ErrorMessage(body []byte) string {
	b := bytes.TrimSpace(body)
	if len(b) > 0 && b[0] == '[' {
		var arr []json.RawMessage
		if json.Unmarshal(b, &arr) == nil && len(arr) > 0 {
			b = arr[0]
		}
	}
	if IsObject(b) {
		if e, ok := Field(b, "error"); ok {
			if m, ok := StringField(e, "message"); ok && strings.TrimSpace(m) != "" {
				return truncate(m)
			}
		}
		if m, ok := StringField(b, "error_msg"); ok && strings.TrimSpace(m) != "" {
			return truncate(m)
		}
		if m, ok := StringField(b, "error"); ok && strings.TrimSpace(m) != "" {
			return truncate(m)
		}
		if m, ok := StringField(b, "message"); ok && strings.TrimSpace(m) != "" {
			return truncate(m)
		}
	}
	return truncate(string(body))
}

func truncate(s string) string {
	if len(s) <= MaxErrorMessage {
		return s
	}
	s = s[:MaxErrorMessage]
	for len(s) > 0 && !utf8.ValidString(s[len(s)-utf8.UTFMax:]) {
		s = s[:len(s)-1]
	}
	return s
}

// Error codes of the proxy's own answers (API.md 0.2).
const (
	CodeUnauthorized   = "UNAUTHORIZED"
	CodeNotFound       = "NOT_FOUND"
	CodeBadRequest     = "BAD_REQUEST"
	CodeNoKeys         = "NO_KEYS_AVAILABLE"
	CodeUpstream       = "UPSTREAM_ERROR"
	CodeInternal       = "INTERNAL_SERVER_ERROR"
	CodeTooMany        = "TOO_MANY_REQUESTS"
	CodeTooLarge       = "REQUEST_TOO_LARGE"
	CodeClientClosed   = "CLIENT_CLOSED_REQUEST"
	CodeRequestTimeout = "REQUEST_TIMEOUT"
	CodeForbidden      = "FORBIDDEN"
	CodeQuota          = "INSUFFICIENT_QUOTA" // a proxy key's token quota is spent
)

// Shape is the error JSON shape a client of a channel expects.
type Shape uint8

const (
	ShapeOpenAI Shape = iota
	ShapeAnthropic
	ShapeGemini
)

// ShapeFor is the error shape of a channel's clients at a path: Gemini's
// OpenAI-compatible path gets OpenAI's.
func ShapeFor(ct domain.ChannelType, path string) Shape {
	switch ct {
	case domain.ChannelAnthropic:
		return ShapeAnthropic
	case domain.ChannelGemini:
		if IsGeminiOpenAI(path) {
			return ShapeOpenAI
		}
		return ShapeGemini
	}
	return ShapeOpenAI
}

// ShapeForPath is the error shape of the SDK that uses path, from the path alone: for
// answers given before the group may be disclosed (an authentication failure), which must
// not differ between a group that exists and one that does not.
func ShapeForPath(path string) Shape {
	switch {
	case strings.HasPrefix(path, "/v1/messages"):
		return ShapeAnthropic
	case IsGeminiOpenAI(path):
		return ShapeOpenAI
	case strings.HasPrefix(path, "/v1beta/") || strings.Contains(path, ":generateContent") ||
		strings.Contains(path, ":streamGenerateContent"):
		return ShapeGemini
	}
	return ShapeOpenAI
}

// ErrorBody is the body of an error the proxy answers itself. It keeps gpt-load's
// {"code": "<STRING>", "message": "..."} (API.md 0.2), so its scripts read it as before,
// and adds the members the provider's SDK reads, so that an SDK reports the message
// instead of an unreadable answer:
//
//	OpenAI, Azure:  "error": {"message", "type", "code"}
//	Anthropic:      "type": "error", "error": {"type", "message"}
//	Gemini:         "error": {"code": <status>, "message", "status"}
func ErrorBody(shape Shape, status int, code, message string) []byte {
	b := make([]byte, 0, 128+2*len(message))
	b = append(b, `{"code":`...)
	b = appendQuoted(b, code)
	b = append(b, `,"message":`...)
	b = appendQuoted(b, message)
	switch shape {
	case ShapeAnthropic:
		b = append(b, `,"type":"error","error":{"type":`...)
		b = appendQuoted(b, anthropicType(status))
		b = append(b, `,"message":`...)
		b = appendQuoted(b, message)
		b = append(b, '}')
	case ShapeGemini:
		b = append(b, `,"error":{"code":`...)
		b = appendInt(b, status)
		b = append(b, `,"message":`...)
		b = appendQuoted(b, message)
		b = append(b, `,"status":`...)
		b = appendQuoted(b, geminiStatus(status))
		b = append(b, '}')
	default:
		b = append(b, `,"error":{"message":`...)
		b = appendQuoted(b, message)
		b = append(b, `,"type":`...)
		b = appendQuoted(b, openAIType(status))
		b = append(b, `,"code":`...)
		b = appendQuoted(b, strings.ToLower(code))
		b = append(b, '}')
	}
	return append(b, '}')
}

func appendInt(b []byte, n int) []byte {
	q, _ := json.Marshal(n)
	return append(b, q...)
}

func anthropicType(status int) string {
	switch status {
	case 400, 422:
		return "invalid_request_error"
	case 401:
		return "authentication_error"
	case 403:
		return "permission_error"
	case 404:
		return "not_found_error"
	case 413:
		return "request_too_large"
	case 429:
		return "rate_limit_error"
	case 503, 529:
		return "overloaded_error"
	}
	return "api_error"
}

func geminiStatus(status int) string {
	switch status {
	case 400, 413, 422:
		return "INVALID_ARGUMENT"
	case 401:
		return "UNAUTHENTICATED"
	case 403:
		return "PERMISSION_DENIED"
	case 404:
		return "NOT_FOUND"
	case 429:
		return "RESOURCE_EXHAUSTED"
	case 503:
		return "UNAVAILABLE"
	case 504:
		return "DEADLINE_EXCEEDED"
	}
	return "INTERNAL"
}

func openAIType(status int) string {
	switch {
	case status == 401:
		return "authentication_error"
	case status == 403:
		return "permission_error"
	case status == 429:
		return "rate_limit_error"
	case status < 500:
		return "invalid_request_error"
	}
	return "server_error"
}
