package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Request types of a request log (API.md 6.1).
const (
	RequestRetry = "retry" // a failed attempt that was followed by another
	RequestFinal = "final" // the attempt that produced the client's response
)

// Limits of the request-log text fields (API.md 6.1).
const (
	MaxLogPathLen = 500
	MaxLogBodyLen = 65000
)

// RequestLog records one proxy attempt (API.md 6.1) with the token usage read from the
// response. The proxy writes one per attempt; a batch projector stores them in SQL, where
// the id (a UUID) keeps the insert idempotent.
type RequestLog struct {
	ID              string    `json:"id"`        // UUID v7 (NewRequestID)
	Timestamp       time.Time `json:"timestamp"` // when the attempt finished
	GroupID         uint64    `json:"group_id"`  // the group that served (the member of an aggregate)
	GroupName       string    `json:"group_name"`
	ParentGroupID   uint64    `json:"parent_group_id,omitempty"` // the aggregate, when used through one
	ParentGroupName string    `json:"parent_group_name,omitempty"`
	KeyID           uint64    `json:"key_id,omitempty"`    // 0 when no key was chosen
	KeyValue        string    `json:"key_value,omitempty"` // encrypted in the log when encryption is on
	KeyHash         string    `json:"key_hash,omitempty"`
	Model           string    `json:"model,omitempty"`
	IsSuccess       bool      `json:"is_success"`
	SourceIP        string    `json:"source_ip,omitempty"`
	StatusCode      int       `json:"status_code"`
	RequestPath     string    `json:"request_path"`
	DurationMS      int64     `json:"duration_ms"` // from the start of the request, earlier attempts included
	ErrorMessage    string    `json:"error_message,omitempty"`
	UserAgent       string    `json:"user_agent,omitempty"` // only with body logging
	RequestType     string    `json:"request_type"`         // RequestRetry or RequestFinal
	UpstreamAddr    string    `json:"upstream_addr,omitempty"`
	IsStream        bool      `json:"is_stream"`
	RequestBody     string    `json:"request_body,omitempty"` // only with body logging

	PromptTokens     int64 `json:"prompt_tokens,omitempty"`
	CompletionTokens int64 `json:"completion_tokens,omitempty"`
	TotalTokens      int64 `json:"total_tokens,omitempty"`

	// The proxy key the client used: its fingerprint (ProxyKeyFingerprint), never the key,
	// and its name ("global" or "group" for the unnamed ones). A named key also gives its
	// id, which a rotation keeps while the fingerprint changes.
	ProxyKeyFP   string `json:"proxy_key_fp,omitempty"`
	ProxyKeyName string `json:"proxy_key_name,omitempty"`
	ProxyKeyID   uint64 `json:"proxy_key_id,omitempty"`

	// UpstreamNS is how long the upstream took to answer this attempt with its headers, in
	// nanoseconds (0: no upstream answered or was asked). It is for metrics only: not
	// stored, not sent in the log stream.
	UpstreamNS int64 `json:"-"`
}

// Names of the unnamed proxy keys in request logs.
const (
	ProxyKeyGlobal = "global" // one of the global proxy_keys
	ProxyKeyGroup  = "group"  // one of the group's own proxy_keys
)

// ProxyKeyFingerprint identifies a proxy key in request logs and usage figures without
// revealing it: the first 12 hex digits of its SHA-256. 48 bits tell a deployment's
// proxy keys apart, and are far too few to test guesses of a key against.
func ProxyKeyFingerprint(key string) string {
	if key == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:6])
}
