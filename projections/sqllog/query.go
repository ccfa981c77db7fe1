// Package sqllog writes request logs from the GL_REQLOG stream into SQL and serves the
// queries the admin API asks of them: log pages and exports, hourly figures, key usage
// and the usage rollup.
package sqllog

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
)

// LogRow is one request log as the queries read it (API.md 6.1 plus token usage and the
// proxy key). KeyValue is the stored form: encrypted when ENCRYPTION_KEY is set.
type LogRow struct {
	bun.BaseModel `bun:"table:request_logs,alias:rl"`

	ID               string    `bun:"id,pk"`
	Timestamp        time.Time `bun:"timestamp"`
	GroupID          uint64    `bun:"group_id"`
	GroupName        string    `bun:"group_name"`
	ParentGroupID    uint64    `bun:"parent_group_id"`
	ParentGroupName  string    `bun:"parent_group_name"`
	KeyValue         string    `bun:"key_value"`
	KeyHash          string    `bun:"key_hash"`
	Model            string    `bun:"model"`
	IsSuccess        bool      `bun:"is_success"`
	SourceIP         string    `bun:"source_ip"`
	StatusCode       int       `bun:"status_code"`
	RequestPath      string    `bun:"request_path"`
	DurationMs       int64     `bun:"duration_ms"`
	ErrorMessage     string    `bun:"error_message"`
	UserAgent        string    `bun:"user_agent"`
	RequestType      string    `bun:"request_type"`
	UpstreamAddr     string    `bun:"upstream_addr"`
	IsStream         bool      `bun:"is_stream"`
	RequestBody      string    `bun:"request_body"`
	PromptTokens     int64     `bun:"prompt_tokens"`
	CompletionTokens int64     `bun:"completion_tokens"`
	TotalTokens      int64     `bun:"total_tokens"`
	ProxyKeyFP       string    `bun:"proxy_key_fp"`
	ProxyKeyName     string    `bun:"proxy_key_name"`
}

// LogFilter selects request logs (API.md 6.2). Every field is optional; set fields are
// combined with AND. The substring filters on group names are resolved to group ids by
// the caller (from the projected state), so that the (group_id, timestamp) indexes serve
// them: a nil id list means no filter, an empty non-nil one matches nothing.
type LogFilter struct {
	GroupIDs       []uint64
	ParentGroupIDs []uint64
	// Model matches model names containing it (case-insensitive). It is resolved to the
	// exact names present in the table first, so that (model, timestamp) serves it.
	Model string
	// ErrorContains matches error messages containing it (case-insensitive); no index
	// serves it.
	ErrorContains string
	KeyHash       string
	IsSuccess     *bool
	RequestType   string
	StatusCode    *int
	SourceIP      string
	ProxyKeyFP    string
	// Start and End bound the timestamp, both inclusive; zero means unbounded.
	Start, End time.Time
}

// Queries reads request logs and their aggregates. It is safe for concurrent use.
type Queries struct {
	db  *bun.DB
	now func() time.Time

	mu       sync.Mutex
	models   []string // distinct models, cached for modelsTTL
	modelsAt time.Time
	modelsOK bool // models is the complete list
}

// NewQueries returns the query side over db, whose schema Migrate has brought up to date.
func NewQueries(db *bun.DB) *Queries {
	if db == nil {
		panic("sqllog: nil database")
	}
	return &Queries{db: db, now: time.Now}
}

const (
	// maxFanOut is the most values of one filter that Logs queries one by one (each an
	// index range scan in timestamp order) and merges; beyond it one query takes them all.
	maxFanOut = 32
	// maxFanOutDepth is the deepest page (offset + limit) that a fan-out serves.
	maxFanOutDepth = 10_000
	// modelsTTL is how long the list of distinct models is reused.
	modelsTTL = 10 * time.Second
	// maxModels is the most distinct models the model filter resolves; with more, it falls
	// back to a LIKE on the timestamp order.
	maxModels = 1000
)

// Logs returns the logs that match f, newest first, skipping offset and returning at
// most limit.
func (q *Queries) Logs(ctx context.Context, f LogFilter, offset, limit int) ([]LogRow, error) {
	p, err := q.plan(ctx, f)
	if err != nil || p.none {
		return nil, err
	}
	if col, vals := p.fanOut(); len(vals) > 1 && len(vals) <= maxFanOut && offset+limit <= maxFanOutDepth {
		var all []LogRow
		for _, v := range vals {
			var rows []LogRow
			sq := q.db.NewSelect().Model(&rows)
			p.apply(sq, col)
			sq.Where("? = ?", bun.Ident("rl."+col), v)
			if err := sq.OrderExpr("rl.? DESC, rl.id DESC", bun.Ident("timestamp")).Limit(int64(offset + limit)).Scan(ctx); err != nil {
				return nil, fmt.Errorf("request logs: %w", err)
			}
			all = append(all, rows...)
		}
		slices.SortFunc(all, newestFirst)
		if offset >= len(all) {
			return nil, nil
		}
		return all[offset:min(len(all), offset+limit)], nil
	}
	var rows []LogRow
	sq := q.db.NewSelect().Model(&rows)
	p.apply(sq, "")
	sq.OrderExpr("rl.? DESC, rl.id DESC", bun.Ident("timestamp")).Offset(int64(offset)).Limit(int64(limit))
	if err := sq.Scan(ctx); err != nil {
		return nil, fmt.Errorf("request logs: %w", err)
	}
	return rows, nil
}

func newestFirst(a, b LogRow) int {
	if c := b.Timestamp.Compare(a.Timestamp); c != 0 {
		return c
	}
	return cmp.Compare(b.ID, a.ID)
}

// CountLogs counts the logs that match f, but stops at most: an exact count over millions
// of rows costs seconds. capped tells that there are more than most.
func (q *Queries) CountLogs(ctx context.Context, f LogFilter, most int) (n int, capped bool, err error) {
	p, err := q.plan(ctx, f)
	if err != nil || p.none {
		return 0, false, err
	}
	sub := q.db.NewSelect().TableExpr("request_logs AS rl").ColumnExpr("1")
	p.apply(sub, "")
	sub.Limit(int64(most + 1))
	err = q.db.NewSelect().TableExpr("(?) AS t", sub).ColumnExpr("COUNT(*)").Scan(ctx, &n)
	if err != nil {
		return 0, false, fmt.Errorf("count request logs: %w", err)
	}
	if n > most {
		return most, true, nil
	}
	return n, false, nil
}

// EachLog calls fn with every log that matches f, newest first, reading batch rows at a
// time (keyset pagination on timestamp and id), so memory stays bounded whatever the
// number of rows. It stops at fn's first error and returns it.
func (q *Queries) EachLog(ctx context.Context, f LogFilter, batch int, fn func(*LogRow) error) error {
	p, err := q.plan(ctx, f)
	if err != nil || p.none {
		return err
	}
	var last *LogRow
	for {
		var rows []LogRow
		sq := q.db.NewSelect().Model(&rows)
		p.apply(sq, "")
		if last != nil {
			ts := bun.Ident("timestamp")
			sq.Where("(rl.? < ? OR (rl.? = ? AND rl.id < ?))", ts, last.Timestamp, ts, last.Timestamp, last.ID)
		}
		if err := sq.OrderExpr("rl.? DESC, rl.id DESC", bun.Ident("timestamp")).Limit(int64(batch)).Scan(ctx); err != nil {
			return fmt.Errorf("request logs: %w", err)
		}
		for i := range rows {
			if err := fn(&rows[i]); err != nil {
				return err
			}
		}
		if len(rows) < batch {
			return nil
		}
		last = &rows[len(rows)-1]
	}
}

// KeyRow is one line of the distinct-key export (API.md 6.3): a key and what its newest
// matching log says.
type KeyRow struct {
	KeyHash    string `bun:"key_hash"`
	KeyValue   string `bun:"key_value"`
	GroupName  string `bun:"group_name"`
	StatusCode int    `bun:"status_code"`
}

// EachDistinctKey calls fn once per distinct key hash among the logs that match f and
// have a key, with the newest such log's key value, group name and status, in key hash
// order. Rows are streamed from the database.
func (q *Queries) EachDistinctKey(ctx context.Context, f LogFilter, fn func(KeyRow) error) error {
	p, err := q.plan(ctx, f)
	if err != nil || p.none {
		return err
	}
	inner := q.db.NewSelect().TableExpr("request_logs AS rl").
		ColumnExpr("rl.key_hash, rl.key_value, rl.group_name, rl.status_code").
		ColumnExpr("ROW_NUMBER() OVER (PARTITION BY rl.key_hash ORDER BY rl.? DESC, rl.id DESC) AS rn", bun.Ident("timestamp")).
		Where("rl.key_hash <> ''")
	p.apply(inner, "")
	rows, err := q.db.NewSelect().TableExpr("(?) AS t", inner).
		ColumnExpr("t.key_hash, t.key_value, t.group_name, t.status_code").
		Where("t.rn = 1").OrderExpr("t.key_hash").Rows(ctx)
	if err != nil {
		return fmt.Errorf("distinct keys of request logs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k KeyRow
		if err := rows.Scan(&k.KeyHash, &k.KeyValue, &k.GroupName, &k.StatusCode); err != nil {
			return fmt.Errorf("distinct keys of request logs: %w", err)
		}
		if err := fn(k); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("distinct keys of request logs: %w", err)
	}
	return nil
}

// CountFinal counts the logs of type final with a timestamp in [from, to): the
// requests clients made (the dashboard's requests per minute, API.md 5.1).
func (q *Queries) CountFinal(ctx context.Context, from, to time.Time) (int64, error) {
	var n int64
	err := q.db.NewSelect().TableExpr("request_logs").ColumnExpr("COUNT(*)").
		Where("request_type = 'final'").
		Where("? >= ?", bun.Ident("timestamp"), from.UTC()).
		Where("? < ?", bun.Ident("timestamp"), to.UTC()).
		Scan(ctx, &n)
	if err != nil {
		return 0, fmt.Errorf("count final request logs: %w", err)
	}
	return n, nil
}

// plan is a LogFilter made ready for SQL: the model filter resolved to names.
type plan struct {
	f      LogFilter
	models []string // nil: no model filter, or filtered with LIKE (likeModel)
	like   bool     // the model filter is a LIKE
	pg     bool
	mysql  bool
	none   bool // nothing can match
}

func (q *Queries) plan(ctx context.Context, f LogFilter) (*plan, error) {
	name := q.db.Dialect().Name()
	p := &plan{f: f, pg: name == dialect.PG, mysql: name == dialect.MySQL}
	if (f.GroupIDs != nil && len(f.GroupIDs) == 0) || (f.ParentGroupIDs != nil && len(f.ParentGroupIDs) == 0) {
		p.none = true
		return p, nil
	}
	if f.Model != "" {
		all, complete, err := q.distinctModels(ctx)
		if err != nil {
			return nil, err
		}
		if !complete {
			p.like = true
			return p, nil
		}
		sub := strings.ToLower(f.Model)
		for _, m := range all {
			if strings.Contains(strings.ToLower(m), sub) {
				p.models = append(p.models, m)
			}
		}
		if len(p.models) == 0 {
			p.none = true
		}
	}
	return p, nil
}

// fanOut names the filter with several values whose values Logs may query one by one.
func (p *plan) fanOut() (string, []any) {
	switch {
	case len(p.f.GroupIDs) > 1:
		return "group_id", anys(p.f.GroupIDs)
	case len(p.f.ParentGroupIDs) > 1:
		return "parent_group_id", anys(p.f.ParentGroupIDs)
	case len(p.models) > 1:
		return "model", anys(p.models)
	}
	return "", nil
}

func anys[T any](vs []T) []any {
	out := make([]any, len(vs))
	for i, v := range vs {
		out[i] = v
	}
	return out
}

// apply adds the filter's conditions to sq (whose table has the alias rl), leaving out
// the column skip, which the caller sets itself.
func (p *plan) apply(sq *bun.SelectQuery, skip string) {
	f := p.f
	in := func(col string, vals []any) {
		if col == skip || vals == nil {
			return
		}
		if len(vals) == 1 {
			sq.Where("? = ?", bun.Ident("rl."+col), vals[0])
			return
		}
		sq.Where("? IN (?)", bun.Ident("rl."+col), bun.In(vals))
	}
	if f.GroupIDs != nil {
		in("group_id", anys(f.GroupIDs))
	}
	if f.ParentGroupIDs != nil {
		in("parent_group_id", anys(f.ParentGroupIDs))
	}
	if p.models != nil {
		in("model", anys(p.models))
	}
	if p.like {
		p.contains(sq, "rl.model", f.Model)
	}
	if f.ErrorContains != "" {
		p.contains(sq, "rl.error_message", f.ErrorContains)
	}
	eq := func(col string, v any) { sq.Where("? = ?", bun.Ident("rl."+col), v) }
	if f.KeyHash != "" {
		eq("key_hash", f.KeyHash)
	}
	if f.IsSuccess != nil {
		eq("is_success", *f.IsSuccess)
	}
	if f.RequestType != "" {
		eq("request_type", f.RequestType)
	}
	if f.StatusCode != nil {
		eq("status_code", *f.StatusCode)
	}
	if f.SourceIP != "" {
		eq("source_ip", f.SourceIP)
	}
	if f.ProxyKeyFP != "" {
		eq("proxy_key_fp", f.ProxyKeyFP)
	}
	if !f.Start.IsZero() {
		sq.Where("rl.? >= ?", bun.Ident("timestamp"), f.Start.UTC())
	}
	if !f.End.IsZero() {
		sq.Where("rl.? <= ?", bun.Ident("timestamp"), f.End.UTC())
	}
}

// contains adds a case-insensitive substring match of col, with LIKE's wildcards in s
// taken literally. MySQL's collation is case-insensitive already and its LIKE escapes
// with a backslash by default; PostgreSQL has ILIKE; SQLite's LIKE ignores ASCII case
// and needs the escape character named. SQLite also takes a LIKE for a selective
// condition and then reads and sorts the whole table for a page (3 s on 10M rows):
// likely() tells it that most rows match, so it walks the timestamp index from the
// newest and stops at the page's end.
func (p *plan) contains(sq *bun.SelectQuery, col, s string) {
	pat := "%" + strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s) + "%"
	switch {
	case p.pg:
		sq.Where("? ILIKE ?", bun.Safe(col), pat)
	case p.mysql:
		sq.Where("? LIKE ?", bun.Safe(col), pat)
	default:
		sq.Where(`likely(? LIKE ? ESCAPE '\')`, bun.Safe(col), pat)
	}
}

// distinctModels lists the distinct models of request_logs by a loose index scan of
// (model, timestamp): one index seek per model, cached for modelsTTL. complete is false
// when there are more than maxModels.
func (q *Queries) distinctModels(ctx context.Context) ([]string, bool, error) {
	q.mu.Lock()
	if !q.modelsAt.IsZero() && q.now().Sub(q.modelsAt) < modelsTTL {
		m, ok := q.models, q.modelsOK
		q.mu.Unlock()
		return m, ok, nil
	}
	q.mu.Unlock()
	var models []string
	err := q.db.NewRaw(`WITH RECURSIVE m(model) AS (
		SELECT MIN(model) FROM request_logs
		UNION ALL
		SELECT (SELECT MIN(r.model) FROM request_logs AS r WHERE r.model > m.model) FROM m WHERE m.model IS NOT NULL
	) SELECT model FROM m WHERE model IS NOT NULL LIMIT ?`, maxModels+1).Scan(ctx, &models)
	if err != nil {
		return nil, false, fmt.Errorf("distinct models of request logs: %w", err)
	}
	out := models
	complete := len(out) <= maxModels
	q.mu.Lock()
	q.models, q.modelsOK, q.modelsAt = out, complete, q.now()
	q.mu.Unlock()
	return out, complete, nil
}

// HourRow is what the logs of one hour add up to in group_hourly_stats, summed over
// the groups asked for.
type HourRow struct {
	Time             time.Time `bun:"time"`
	Success          int64     `bun:"success"`
	Failure          int64     `bun:"failure"`
	PromptTokens     int64     `bun:"prompt_tokens"`
	CompletionTokens int64     `bun:"completion_tokens"`
	TotalTokens      int64     `bun:"total_tokens"`
}

// Hourly returns the hourly figures of the groups (all groups when groupIDs is nil) for
// the hours starting in [from, to), oldest first; hours without rows are left out.
func (q *Queries) Hourly(ctx context.Context, groupIDs []uint64, from, to time.Time) ([]HourRow, error) {
	if groupIDs != nil && len(groupIDs) == 0 {
		return nil, nil
	}
	t := bun.Ident("time")
	sq := q.db.NewSelect().TableExpr("group_hourly_stats").
		ColumnExpr("? AS ?", t, t).
		ColumnExpr("SUM(success_count) AS success, SUM(failure_count) AS failure").
		ColumnExpr("SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens, SUM(total_tokens) AS total_tokens").
		Where("? >= ?", t, from.UTC()).Where("? < ?", t, to.UTC()).
		GroupExpr("?", t).OrderExpr("?", t)
	if groupIDs != nil {
		sq.Where("group_id IN (?)", bun.In(groupIDs))
	}
	var rows []HourRow
	if err := sq.Scan(ctx, &rows); err != nil {
		return nil, fmt.Errorf("hourly stats: %w", err)
	}
	return rows, nil
}

// KeyUsage is what key_usage holds of one upstream key.
type KeyUsage struct {
	KeyHash      string    `bun:"key_hash"`
	RequestCount int64     `bun:"request_count"`
	LastUsedAt   time.Time `bun:"last_used_at"`
}

// KeyUsage returns the usage of the keys of a group with the given hashes, by hash; keys
// never used are absent.
func (q *Queries) KeyUsage(ctx context.Context, groupID uint64, hashes []string) (map[string]KeyUsage, error) {
	out := make(map[string]KeyUsage, len(hashes))
	if len(hashes) == 0 {
		return out, nil
	}
	var rows []KeyUsage
	err := q.db.NewSelect().TableExpr("key_usage").ColumnExpr("key_hash, request_count, last_used_at").
		Where("group_id = ?", groupID).Where("key_hash IN (?)", bun.In(hashes)).Scan(ctx, &rows)
	if err != nil {
		return nil, fmt.Errorf("key usage: %w", err)
	}
	for _, r := range rows {
		out[r.KeyHash] = r
	}
	return out, nil
}

// UsageBy is how GET /api/usage groups its figures.
type UsageBy string

// The groupings of the usage rollup.
const (
	ByHour     UsageBy = "hour"
	ByDay      UsageBy = "day"
	ByModel    UsageBy = "model"
	ByKey      UsageBy = "key"
	ByProxyKey UsageBy = "proxy_key"
)

// UsageQuery selects and groups the usage rollup.
type UsageQuery struct {
	// GroupID, when set, keeps the rows of that group: those it served, or those that came
	// through it when it is an aggregate.
	GroupID    uint64
	ProxyKeyFP string
	ProxyKeyID uint64 // a named proxy key, across its rotations
	// From and To bound the hours: those that start in [From, To).
	From, To time.Time
	By       UsageBy
	// Loc is where days begin for ByDay (UTC when nil).
	Loc *time.Location
}

// UsageRow is one line of the usage figures. Only the fields of the grouping are set:
// Time for hour and day, Model, GroupID and KeyID for key, ProxyKeyFP (and the latest
// ProxyKeyName) for proxy_key, or for a named key ProxyKeyID, across its rotations.
type UsageRow struct {
	Time             time.Time `bun:"time"`
	Model            string    `bun:"model"`
	GroupID          uint64    `bun:"group_id"`
	KeyID            uint64    `bun:"key_id"`
	ProxyKeyFP       string    `bun:"proxy_key_fp"`
	ProxyKeyName     string    `bun:"proxy_key_name"`
	ProxyKeyID       uint64    `bun:"proxy_key_id"`
	Requests         int64     `bun:"requests"`
	Failures         int64     `bun:"failures"`
	PromptTokens     int64     `bun:"prompt_tokens"`
	CompletionTokens int64     `bun:"completion_tokens"`
	TotalTokens      int64     `bun:"total_tokens"`
}

// ErrBadUsageQuery is returned for a grouping Usage does not know.
var ErrBadUsageQuery = errors.New("sqllog: unknown usage grouping")

// Usage sums the usage rollup as uq asks: by hour and day oldest first, by model, key and
// proxy key with the most requests first.
func (q *Queries) Usage(ctx context.Context, uq UsageQuery) ([]UsageRow, error) {
	t := bun.Ident("time")
	sq := q.db.NewSelect().TableExpr("usage_hourly").
		ColumnExpr("SUM(requests) AS requests, SUM(failures) AS failures").
		ColumnExpr("SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens, SUM(total_tokens) AS total_tokens").
		Where("? >= ?", t, uq.From.UTC()).Where("? < ?", t, uq.To.UTC())
	if uq.GroupID != 0 {
		sq.Where("(group_id = ? OR parent_group_id = ?)", uq.GroupID, uq.GroupID)
	}
	if uq.ProxyKeyFP != "" {
		sq.Where("proxy_key_fp = ?", uq.ProxyKeyFP)
	}
	if uq.ProxyKeyID != 0 {
		sq.Where("proxy_key_id = ?", uq.ProxyKeyID)
	}
	switch uq.By {
	case ByHour, ByDay:
		sq.ColumnExpr("? AS ?", t, t).GroupExpr("?", t).OrderExpr("?", t)
	case ByModel:
		sq.ColumnExpr("model").GroupExpr("model").OrderExpr("requests DESC, model")
	case ByKey:
		sq.ColumnExpr("group_id, key_id").GroupExpr("group_id, key_id").OrderExpr("requests DESC, group_id, key_id")
	case ByProxyKey:
		// A named key is one line whatever its rotations; an unnamed one is its fingerprint.
		fp := "CASE WHEN proxy_key_id <> 0 THEN '' ELSE proxy_key_fp END"
		sq.ColumnExpr("proxy_key_id, " + fp + " AS proxy_key_fp, MAX(proxy_key_name) AS proxy_key_name").
			GroupExpr("proxy_key_id, " + fp).OrderExpr("requests DESC, proxy_key_id, proxy_key_fp")
	default:
		return nil, ErrBadUsageQuery
	}
	var rows []UsageRow
	if err := sq.Scan(ctx, &rows); err != nil {
		return nil, fmt.Errorf("usage: %w", err)
	}
	if uq.By != ByDay {
		return rows, nil
	}
	loc := uq.Loc
	if loc == nil {
		loc = time.UTC
	}
	var days []UsageRow
	for _, r := range rows {
		lt := r.Time.In(loc)
		day := time.Date(lt.Year(), lt.Month(), lt.Day(), 0, 0, 0, 0, loc)
		if n := len(days); n > 0 && days[n-1].Time.Equal(day) {
			d := &days[n-1]
			d.Requests += r.Requests
			d.Failures += r.Failures
			d.PromptTokens += r.PromptTokens
			d.CompletionTokens += r.CompletionTokens
			d.TotalTokens += r.TotalTokens
			continue
		}
		r.Time = day
		days = append(days, r)
	}
	return days, nil
}
