package sqlstore

import (
	"time"

	"github.com/uptrace/bun"
)

// Column sizes of request_logs. PostgreSQL refuses a longer value (failing the whole
// batch insert with it), MySQL refuses it too in strict mode but silently cuts it under
// INSERT IGNORE, and SQLite keeps it whole: whoever fills a RequestLog cuts the strings
// to these sizes first, so that every database stores the same thing.
const (
	MaxGroupNameLen    = 255
	MaxKeyHashLen      = 128
	MaxSourceIPLen     = 64
	MaxRequestPathLen  = 500
	MaxRequestTypeLen  = 16
	MaxUpstreamAddrLen = 500
	MaxProxyKeyFPLen   = 16
	MaxProxyKeyNameLen = 255
	// MaxUsageModelLen bounds usage_hourly.model (part of its key); request_logs.model is
	// TEXT and keeps the whole name.
	MaxUsageModelLen = 255
	// MaxRequestBodyLen is in bytes (API.md 6.1).
	MaxRequestBodyLen = 65000
)

// RequestLog is one row of request_logs: one proxy attempt (API.md 6.1), plus the token
// usage the upstream reported. ID is the record's UUID, so inserting with Ignore() makes
// a redelivered record a no-op:
//
//	db.NewInsert().Model(&rows).Ignore().Exec(ctx)
//
// Strings are never NULL in the table; empty means absent. Times are stored in UTC with
// microsecond precision.
type RequestLog struct {
	bun.BaseModel `bun:"table:request_logs"`

	ID              string    `bun:"id,pk"`
	Timestamp       time.Time `bun:"timestamp,notnull"`
	GroupID         uint64    `bun:"group_id,notnull"`
	GroupName       string    `bun:"group_name,notnull"`
	ParentGroupID   uint64    `bun:"parent_group_id,notnull"`
	ParentGroupName string    `bun:"parent_group_name,notnull"`
	// KeyValue is the upstream key as stored: encrypted when ENCRYPTION_KEY is set.
	KeyValue     string `bun:"key_value,notnull"`
	KeyHash      string `bun:"key_hash,notnull"`
	Model        string `bun:"model,notnull"`
	IsSuccess    bool   `bun:"is_success,notnull"`
	SourceIP     string `bun:"source_ip,notnull"`
	StatusCode   int    `bun:"status_code,notnull"`
	RequestPath  string `bun:"request_path,notnull"`
	DurationMs   int64  `bun:"duration_ms,notnull"`
	ErrorMessage string `bun:"error_message,notnull"`
	UserAgent    string `bun:"user_agent,notnull"`
	// RequestType is "retry" or "final".
	RequestType  string `bun:"request_type,notnull"`
	UpstreamAddr string `bun:"upstream_addr,notnull"`
	IsStream     bool   `bun:"is_stream,notnull"`
	RequestBody  string `bun:"request_body,notnull"`

	PromptTokens     int64 `bun:"prompt_tokens,notnull"`
	CompletionTokens int64 `bun:"completion_tokens,notnull"`
	TotalTokens      int64 `bun:"total_tokens,notnull"`

	// ProxyKeyFP is the fingerprint of the proxy key the client used: the first 12 hex
	// digits of its SHA-256 (domain.ProxyKeyFingerprint), never the key itself.
	// ProxyKeyName names it: "global" or "group" for the unnamed ones, a named key's name
	// otherwise. Both are empty when unknown. ProxyKeyID is a named key's id (0: unnamed).
	ProxyKeyFP   string `bun:"proxy_key_fp,notnull"`
	ProxyKeyName string `bun:"proxy_key_name,notnull"`
	ProxyKeyID   uint64 `bun:"proxy_key_id,notnull"`
}

// The indexes of request_logs, one per filter of GET /api/logs, each ending in
// "timestamp" so that the newest page of one filter is a range scan of one index:
// (timestamp), (group_id, timestamp), (parent_group_id, timestamp), (key_hash, timestamp),
// (status_code, timestamp), (is_success, timestamp), (request_type, timestamp),
// (source_ip, timestamp), (model, timestamp) (a 191-character prefix of model on MySQL)
// and (proxy_key_fp, timestamp).

// GroupHourlyStat is one row of group_hourly_stats: the success and failure counts of a
// group in the hour that starts at Time (API.md 9.3). (Time, GroupID) is unique. Every
// log that is not a retry adds 1 to SuccessCount or FailureCount of its group's row and,
// when it came through an aggregate, of the aggregate's row too; dashboards therefore
// leave aggregate groups out of totals. Hours are cut in UTC. A zero
// CreatedAt or UpdatedAt is left to the database default, the current time.
type GroupHourlyStat struct {
	bun.BaseModel `bun:"table:group_hourly_stats"`

	ID           int64     `bun:"id,pk,autoincrement"`
	Time         time.Time `bun:"time,notnull"`
	GroupID      uint64    `bun:"group_id,notnull"`
	SuccessCount int64     `bun:"success_count,notnull"`
	FailureCount int64     `bun:"failure_count,notnull"`
	// Token sums of the hour's logs (retries included: they carry usage only when the
	// upstream reported some).
	PromptTokens     int64     `bun:"prompt_tokens,notnull"`
	CompletionTokens int64     `bun:"completion_tokens,notnull"`
	TotalTokens      int64     `bun:"total_tokens,notnull"`
	CreatedAt        time.Time `bun:"created_at,nullzero,notnull,default:current_timestamp"`
	UpdatedAt        time.Time `bun:"updated_at,nullzero,notnull,default:current_timestamp"`
}

// KeyUsage is one row of key_usage: how many successful requests an upstream key served
// in a group, and when it last did (API.md 9.2). (GroupID, KeyHash) is the primary key;
// KeyID is the key's id when the log carried one (the latest seen).
type KeyUsage struct {
	bun.BaseModel `bun:"table:key_usage"`

	GroupID      uint64    `bun:"group_id,pk"`
	KeyHash      string    `bun:"key_hash,pk"`
	KeyID        uint64    `bun:"key_id,notnull"`
	RequestCount int64     `bun:"request_count,notnull"`
	LastUsedAt   time.Time `bun:"last_used_at,notnull"`
}

// UsageHourly is one row of usage_hourly, the rollup behind GET /api/usage: what the logs
// of one hour (cut in UTC) of one group, model, proxy key and upstream key add up to.
// Its primary key is (Time, GroupID, ParentGroupID, Model, ProxyKeyFP, KeyID): GroupID is
// the group that served, ParentGroupID the aggregate it was reached through (0 when
// none), so a query for an aggregate matches parent_group_id and one for a standard group
// matches group_id. Requests counts the logs that are not retries (a client's requests)
// and Failures those of them that failed; the token sums take every log. Model is cut to
// MaxUsageModelLen. Log retention never deletes from this table.
type UsageHourly struct {
	bun.BaseModel `bun:"table:usage_hourly"`

	Time             time.Time `bun:"time,pk"`
	GroupID          uint64    `bun:"group_id,pk"`
	ParentGroupID    uint64    `bun:"parent_group_id,pk"`
	Model            string    `bun:"model,pk"`
	ProxyKeyFP       string    `bun:"proxy_key_fp,pk"`
	KeyID            uint64    `bun:"key_id,pk"`
	ProxyKeyName     string    `bun:"proxy_key_name,notnull"`
	ProxyKeyID       uint64    `bun:"proxy_key_id,notnull"` // a named key's id, 0 for the unnamed
	Requests         int64     `bun:"requests,notnull"`
	Failures         int64     `bun:"failures,notnull"`
	PromptTokens     int64     `bun:"prompt_tokens,notnull"`
	CompletionTokens int64     `bun:"completion_tokens,notnull"`
	TotalTokens      int64     `bun:"total_tokens,notnull"`
}
