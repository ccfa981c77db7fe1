// Package gptload brings a gpt-load 1.x database (SQLite, MySQL or PostgreSQL) into a node:
// its settings, groups (ids kept), aggregate members and keys (ids, statuses, notes, failure
// counts and times kept) as events of the node's log, and, when asked, its request logs,
// hourly stats and key usage into the node's SQL tables.
//
// It lives under projections because it needs both sides a node is made of: the command
// services of events, and the SQL store of request logs (projections/sqlstore). The admin
// API (httpapi) and the command line (cmd/gpt-load) both reach it from here.
package gptload

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	_ "modernc.org/sqlite" // the "sqlite" driver, for gpt-load's SQLite files

	"gpt-load/projections/sqlstore"
)

// Source is an open gpt-load 1.x database. It is only read.
type Source struct {
	db      *sql.DB
	close   func() error
	dialect sqlstore.Dialect
	shown   string // the DSN without its password
	keyCols string // see keyColumns
}

// Open opens the gpt-load database dsn names, recognised as gpt-load does (API.md 8): a
// postgres:// URL, a MySQL DSN with "@tcp", or else the path of a SQLite file, which is
// opened read-only and must exist.
func Open(ctx context.Context, dsn string) (*Source, error) {
	dsn = strings.TrimSpace(dsn)
	if dsn == "" {
		return nil, errors.New("the gpt-load DSN is empty")
	}
	s := &Source{dialect: sqlstore.DialectOf(dsn), shown: sqlstore.Redact(dsn)}
	if s.dialect == sqlstore.SQLite {
		path := strings.TrimPrefix(strings.SplitN(dsn, "?", 2)[0], "file:")
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("gpt-load database %s: %w", path, err)
		}
		q := url.Values{}
		q.Set("mode", "ro")
		q.Add("_pragma", "busy_timeout(5000)")
		db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
		if err != nil {
			return nil, fmt.Errorf("gpt-load database %s: %w", path, err)
		}
		db.SetMaxOpenConns(1)
		if err := db.PingContext(ctx); err != nil {
			db.Close()
			return nil, fmt.Errorf("gpt-load database %s: %w", path, err)
		}
		s.db, s.close = db, db.Close
	} else {
		db, err := sqlstore.Open(ctx, dsn, zerolog.Nop())
		if err != nil {
			return nil, fmt.Errorf("gpt-load database: %w", err)
		}
		s.db, s.close = db.DB, db.Close
	}
	if err := s.check(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the database.
func (s *Source) Close() error { return s.close() }

// String names the source without its password.
func (s *Source) String() string { return fmt.Sprintf("%s %s", s.dialect, s.shown) }

// check makes sure the tables of gpt-load 1.x are there.
func (s *Source) check(ctx context.Context) error {
	for _, t := range []string{"system_settings", "groups", "api_keys"} {
		if !s.hasTable(ctx, t) {
			return fmt.Errorf("%s is not a gpt-load 1.x database: it has no %s table", s, t)
		}
	}
	return nil
}

func (s *Source) hasTable(ctx context.Context, name string) bool {
	rows, err := s.db.QueryContext(ctx, "SELECT * FROM "+s.quote(name)+" WHERE 1=0")
	if err != nil {
		return false
	}
	rows.Close()
	return true
}

// quote quotes a table name: `groups` is a reserved word in MySQL 8.
func (s *Source) quote(name string) string {
	if s.dialect == sqlstore.MySQL {
		return "`" + name + "`"
	}
	return `"` + name + `"`
}

// ph is the placeholder of the n-th argument (from 1).
func (s *Source) ph(n int) string {
	if s.dialect == sqlstore.Postgres {
		return "$" + strconv.Itoa(n)
	}
	return "?"
}

// row is one row by column name, whatever the driver made of each value.
type row map[string]any

// query runs q and calls f for every row; columns are read by name, so a column an older
// 1.x version lacks reads as absent (zero).
func (s *Source) query(ctx context.Context, q string, args []any, f func(r row) error) error {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("read gpt-load database: %w", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	// One map for every row: f reads what it needs before the next one (row's readers
	// copy what they keep).
	r := make(row, len(cols))
	for i := range cols {
		cols[i] = strings.ToLower(cols[i])
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("read gpt-load database: %w", err)
		}
		for i, c := range cols {
			r[c] = vals[i]
		}
		if err := f(r); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (r row) str(col string) string {
	switch v := r[col].(type) {
	case nil:
		return ""
	case string:
		return v
	case []byte:
		return string(v)
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano)
	default:
		return fmt.Sprint(v)
	}
}

// raw is a JSON column as bytes; SQL NULL reads as nil.
func (r row) raw(col string) []byte {
	switch v := r[col].(type) {
	case nil:
		return nil
	case []byte:
		return append([]byte(nil), v...)
	default:
		return []byte(r.str(col))
	}
}

func (r row) int(col string) int64 {
	switch v := r[col].(type) {
	case int64:
		return v
	case int32:
		return int64(v)
	case int:
		return int64(v)
	case uint64:
		return int64(v)
	case float64:
		return int64(v)
	case bool:
		if v {
			return 1
		}
		return 0
	case nil:
		return 0
	default:
		n, _ := strconv.ParseInt(strings.TrimSpace(r.str(col)), 10, 64)
		return n
	}
}

// bool reads SQLite's numeric 0/1, MySQL's tinyint and PostgreSQL's boolean alike.
func (r row) bool(col string) bool {
	switch v := r[col].(type) {
	case bool:
		return v
	case nil:
		return false
	case string, []byte:
		s := strings.ToLower(strings.TrimSpace(r.str(col)))
		return s == "1" || s == "true" || s == "t"
	default:
		return r.int(col) != 0
	}
}

// timeLayouts are the ways gpt-load's drivers write times as text (the Go SQLite driver
// writes "2026-11-25 21:20:49.305156836+00:00").
var timeLayouts = []string{
	"2006-01-02 15:04:05.999999999-07:00",
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
}

// time reads a time column; zero when NULL or unreadable.
func (r row) time(col string) time.Time {
	switch v := r[col].(type) {
	case time.Time:
		return v.UTC()
	case nil:
		return time.Time{}
	}
	s := strings.TrimSpace(r.str(col))
	if s == "" {
		return time.Time{}
	}
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

// settings reads system_settings.
func (s *Source) settings(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	err := s.query(ctx, "SELECT * FROM "+s.quote("system_settings"), nil, func(r row) error {
		out[r.str("setting_key")] = r.str("setting_value")
		return nil
	})
	return out, err
}

// srcGroup is a row of groups.
type srcGroup struct {
	ID                  uint64
	Name                string
	DisplayName         string
	Description         string
	Type                string
	ChannelType         string
	Sort                int
	TestModel           string
	ValidationEndpoint  string
	ProxyKeys           string
	Upstreams           []byte
	ParamOverrides      []byte
	Config              []byte
	HeaderRules         []byte
	ModelRedirectRules  []byte
	ModelRedirectStrict bool
	LastValidatedAt     time.Time
	CreatedAt           time.Time
	UpdatedAt           time.Time
}

func (s *Source) groups(ctx context.Context) ([]srcGroup, error) {
	var out []srcGroup
	err := s.query(ctx, "SELECT * FROM "+s.quote("groups")+" ORDER BY id", nil, func(r row) error {
		out = append(out, srcGroup{
			ID: uint64(r.int("id")), Name: r.str("name"), DisplayName: r.str("display_name"),
			Description: r.str("description"), Type: r.str("group_type"), ChannelType: r.str("channel_type"),
			Sort: int(r.int("sort")), TestModel: r.str("test_model"), ValidationEndpoint: r.str("validation_endpoint"),
			ProxyKeys: r.str("proxy_keys"), Upstreams: r.raw("upstreams"), ParamOverrides: r.raw("param_overrides"),
			Config: r.raw("config"), HeaderRules: r.raw("header_rules"), ModelRedirectRules: r.raw("model_redirect_rules"),
			ModelRedirectStrict: r.bool("model_redirect_strict"), LastValidatedAt: r.time("last_validated_at"),
			CreatedAt: r.time("created_at"), UpdatedAt: r.time("updated_at"),
		})
		return nil
	})
	return out, err
}

// srcSub is a row of group_sub_groups.
type srcSub struct {
	GroupID, SubGroupID uint64
	Weight              int
}

func (s *Source) subGroups(ctx context.Context) ([]srcSub, error) {
	if !s.hasTable(ctx, "group_sub_groups") {
		return nil, nil
	}
	var out []srcSub
	err := s.query(ctx, "SELECT * FROM "+s.quote("group_sub_groups")+" ORDER BY id", nil, func(r row) error {
		out = append(out, srcSub{GroupID: uint64(r.int("group_id")), SubGroupID: uint64(r.int("sub_group_id")), Weight: int(r.int("weight"))})
		return nil
	})
	return out, err
}

// srcKey is a row of api_keys.
type srcKey struct {
	ID           uint64
	GroupID      uint64
	Value        string // as stored: encrypted when gpt-load had ENCRYPTION_KEY
	Hash         string
	Status       string
	Notes        string
	RequestCount int64
	FailureCount int64
	LastUsedAt   time.Time
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

func keyOf(r row) srcKey {
	return srcKey{
		ID: uint64(r.int("id")), GroupID: uint64(r.int("group_id")), Value: r.str("key_value"), Hash: r.str("key_hash"),
		Status: r.str("status"), Notes: r.str("notes"), RequestCount: r.int("request_count"),
		FailureCount: r.int("failure_count"), LastUsedAt: r.time("last_used_at"),
		CreatedAt: r.time("created_at"), UpdatedAt: r.time("updated_at"),
	}
}

// keyColumns is the select list of keyPage: the columns of api_keys an import reads (of
// those the table has: older 1.x versions lack some), the times as text on SQLite, where
// the driver would otherwise try layout after layout on each of them.
func (s *Source) keyColumns(ctx context.Context) (string, error) {
	if s.keyCols != "" {
		return s.keyCols, nil
	}
	rows, err := s.db.QueryContext(ctx, "SELECT * FROM "+s.quote("api_keys")+" WHERE 1=0")
	if err != nil {
		return "", fmt.Errorf("read gpt-load database: %w", err)
	}
	cols, err := rows.Columns()
	rows.Close()
	if err != nil {
		return "", err
	}
	var list []string
	for _, c := range cols {
		switch c = strings.ToLower(c); c {
		case "id", "key_value", "group_id", "status", "notes", "request_count", "failure_count":
			list = append(list, c)
		case "last_used_at", "created_at", "updated_at":
			if s.dialect == sqlstore.SQLite {
				list = append(list, fmt.Sprintf("CAST(%s AS TEXT) AS %s", c, c))
			} else {
				list = append(list, c)
			}
		}
	}
	s.keyCols = strings.Join(list, ", ")
	return s.keyCols, nil
}

// keyPage reads up to limit keys with ids above after, in id order.
func (s *Source) keyPage(ctx context.Context, after uint64, limit int) ([]srcKey, error) {
	cols, err := s.keyColumns(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]srcKey, 0, limit)
	q := fmt.Sprintf("SELECT %s FROM %s WHERE id > %s ORDER BY id LIMIT %d", cols, s.quote("api_keys"), s.ph(1), limit)
	err = s.query(ctx, q, []any{int64(after)}, func(r row) error {
		out = append(out, keyOf(r))
		return nil
	})
	return out, err
}

// sampleKeys reads up to n keys spread over the table, for the encryption check.
func (s *Source) sampleKeys(ctx context.Context, n int) ([]srcKey, error) {
	var out []srcKey
	q := fmt.Sprintf("SELECT * FROM %s ORDER BY id LIMIT %d", s.quote("api_keys"), n)
	err := s.query(ctx, q, nil, func(r row) error {
		out = append(out, keyOf(r))
		return nil
	})
	return out, err
}

// keyCounts counts the keys of each group by status.
func (s *Source) keyCounts(ctx context.Context) (map[uint64]map[string]int, error) {
	out := map[uint64]map[string]int{}
	q := fmt.Sprintf("SELECT group_id, status, COUNT(*) AS n FROM %s GROUP BY group_id, status", s.quote("api_keys"))
	err := s.query(ctx, q, nil, func(r row) error {
		g := uint64(r.int("group_id"))
		if out[g] == nil {
			out[g] = map[string]int{}
		}
		out[g][r.str("status")] += int(r.int("n"))
		return nil
	})
	return out, err
}

// srcLog is a row of request_logs.
type srcLog struct {
	ID              string
	Timestamp       time.Time
	GroupID         uint64
	GroupName       string
	ParentGroupID   uint64
	ParentGroupName string
	KeyValue        string
	KeyHash         string
	Model           string
	IsSuccess       bool
	SourceIP        string
	StatusCode      int
	RequestPath     string
	DurationMs      int64
	ErrorMessage    string
	UserAgent       string
	RequestType     string
	UpstreamAddr    string
	IsStream        bool
	RequestBody     string
}

// logPage reads up to limit request logs with ids above after, in id order.
func (s *Source) logPage(ctx context.Context, after string, limit int) ([]srcLog, error) {
	out := make([]srcLog, 0, limit)
	q := fmt.Sprintf("SELECT * FROM %s WHERE id > %s ORDER BY id LIMIT %d", s.quote("request_logs"), s.ph(1), limit)
	err := s.query(ctx, q, []any{after}, func(r row) error {
		rt := r.str("request_type")
		if rt == "" {
			rt = "final"
		}
		out = append(out, srcLog{
			ID: r.str("id"), Timestamp: r.time("timestamp"), GroupID: uint64(r.int("group_id")), GroupName: r.str("group_name"),
			ParentGroupID: uint64(r.int("parent_group_id")), ParentGroupName: r.str("parent_group_name"),
			KeyValue: r.str("key_value"), KeyHash: r.str("key_hash"), Model: r.str("model"), IsSuccess: r.bool("is_success"),
			SourceIP: r.str("source_ip"), StatusCode: int(r.int("status_code")), RequestPath: r.str("request_path"),
			DurationMs: r.int("duration"), ErrorMessage: r.str("error_message"), UserAgent: r.str("user_agent"),
			RequestType: rt, UpstreamAddr: r.str("upstream_addr"), IsStream: r.bool("is_stream"), RequestBody: r.str("request_body"),
		})
		return nil
	})
	return out, err
}

// count counts the rows of a table; 0 when it is missing.
func (s *Source) count(ctx context.Context, table string) (int, error) {
	if !s.hasTable(ctx, table) {
		return 0, nil
	}
	n := 0
	err := s.query(ctx, "SELECT COUNT(*) AS n FROM "+s.quote(table), nil, func(r row) error {
		n = int(r.int("n"))
		return nil
	})
	return n, err
}

// srcStat is a row of group_hourly_stats.
type srcStat struct {
	Time             time.Time
	GroupID          uint64
	Success, Failure int64
}

func (s *Source) hourlyStats(ctx context.Context) ([]srcStat, error) {
	if !s.hasTable(ctx, "group_hourly_stats") {
		return nil, nil
	}
	var out []srcStat
	err := s.query(ctx, "SELECT * FROM "+s.quote("group_hourly_stats")+" ORDER BY id", nil, func(r row) error {
		out = append(out, srcStat{Time: r.time("time"), GroupID: uint64(r.int("group_id")),
			Success: r.int("success_count"), Failure: r.int("failure_count")})
		return nil
	})
	return out, err
}
