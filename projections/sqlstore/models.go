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
}

// GroupHourlyStat is one row of group_hourly_stats: the success and failure counts of a
// group in the hour that starts at Time (API.md 9.3). (Time, GroupID) is unique. A zero
// CreatedAt or UpdatedAt is left to the database default, the current time.
type GroupHourlyStat struct {
	bun.BaseModel `bun:"table:group_hourly_stats"`

	ID           int64     `bun:"id,pk,autoincrement"`
	Time         time.Time `bun:"time,notnull"`
	GroupID      uint64    `bun:"group_id,notnull"`
	SuccessCount int64     `bun:"success_count,notnull"`
	FailureCount int64     `bun:"failure_count,notnull"`
	CreatedAt    time.Time `bun:"created_at,nullzero,notnull,default:current_timestamp"`
	UpdatedAt    time.Time `bun:"updated_at,nullzero,notnull,default:current_timestamp"`
}
