package httpapi

import (
	"context"
	"encoding/csv"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gpt-load/domain"
	"gpt-load/projections/sqllog"
)

// LogQueries reads request logs and their aggregates from SQL; sqllog.Queries provides
// it.
type LogQueries interface {
	Logs(ctx context.Context, f sqllog.LogFilter, offset, limit int) ([]sqllog.LogRow, error)
	CountLogs(ctx context.Context, f sqllog.LogFilter, most int) (n int, capped bool, err error)
	EachLog(ctx context.Context, f sqllog.LogFilter, batch int, fn func(*sqllog.LogRow) error) error
	EachDistinctKey(ctx context.Context, f sqllog.LogFilter, fn func(sqllog.KeyRow) error) error
	CountFinal(ctx context.Context, from, to time.Time) (int64, error)
	Hourly(ctx context.Context, groupIDs []uint64, from, to time.Time) ([]sqllog.HourRow, error)
	KeyUsage(ctx context.Context, groupID uint64, hashes []string) (map[string]sqllog.KeyUsage, error)
	Usage(ctx context.Context, q sqllog.UsageQuery) ([]sqllog.UsageRow, error)
}

const (
	codeDatabase = "DATABASE_ERROR"
	// logCountCap is how many matching logs GET /api/logs counts at most: an exact count
	// of millions of rows costs seconds, so past it total_items is a lower bound and the
	// pagination says so.
	logCountCap = 10_000
	// exportBatchRows is how many log rows an export reads per query.
	exportBatchRows = 500
	decryptFailed   = "failed-to-decrypt"
)

func errDatabase() *apiError {
	return &apiError{status: http.StatusInternalServerError, code: codeDatabase, msg: msgDatabase}
}

func errLogsUnavailable() *apiError {
	return &apiError{status: http.StatusServiceUnavailable, code: codeUnavailable, msg: msgLogsUnavailable}
}

// logJSON is a request log (API.md 6.1) with token usage and the proxy key used.
type logJSON struct {
	ID               string    `json:"id"`
	Timestamp        time.Time `json:"timestamp"`
	GroupID          uint64    `json:"group_id"`
	GroupName        string    `json:"group_name"`
	ParentGroupID    uint64    `json:"parent_group_id"`
	ParentGroupName  string    `json:"parent_group_name"`
	KeyValue         string    `json:"key_value"`
	KeyHash          string    `json:"key_hash"`
	Model            string    `json:"model"`
	IsSuccess        bool      `json:"is_success"`
	SourceIP         string    `json:"source_ip"`
	StatusCode       int       `json:"status_code"`
	RequestPath      string    `json:"request_path"`
	DurationMs       int64     `json:"duration_ms"`
	ErrorMessage     string    `json:"error_message"`
	UserAgent        string    `json:"user_agent"`
	RequestType      string    `json:"request_type"`
	UpstreamAddr     string    `json:"upstream_addr"`
	IsStream         bool      `json:"is_stream"`
	RequestBody      string    `json:"request_body"`
	PromptTokens     int64     `json:"prompt_tokens"`
	CompletionTokens int64     `json:"completion_tokens"`
	TotalTokens      int64     `json:"total_tokens"`
	ProxyKeyFP       string    `json:"proxy_key_fp"`
	ProxyKeyName     string    `json:"proxy_key_name"`
}

// keyText decrypts a stored key value for display: "" when the log has no key,
// failed-to-decrypt when it cannot be opened (API.md 6.1).
func (a *admin) keyText(stored string) string {
	if stored == "" {
		return ""
	}
	v, err := a.cipher.Decrypt(stored)
	if err != nil {
		return decryptFailed
	}
	return v
}

// maskedKeyText is a stored key as request logs show it, masked: only the key exports
// (the distinct-keys CSV and GET /api/keys/export) show keys in clear.
func (a *admin) maskedKeyText(stored string) string {
	v := a.keyText(stored)
	if v == "" || v == decryptFailed {
		return v
	}
	return domain.MaskKey(v)
}

func (a *admin) logOut(r *sqllog.LogRow) logJSON {
	return logJSON{
		ID: r.ID, Timestamp: r.Timestamp.Local(), GroupID: r.GroupID, GroupName: r.GroupName,
		ParentGroupID: r.ParentGroupID, ParentGroupName: r.ParentGroupName,
		KeyValue: a.maskedKeyText(r.KeyValue), KeyHash: r.KeyHash, Model: r.Model, IsSuccess: r.IsSuccess,
		SourceIP: r.SourceIP, StatusCode: r.StatusCode, RequestPath: r.RequestPath, DurationMs: r.DurationMs,
		ErrorMessage: r.ErrorMessage, UserAgent: r.UserAgent, RequestType: r.RequestType,
		UpstreamAddr: r.UpstreamAddr, IsStream: r.IsStream, RequestBody: r.RequestBody,
		PromptTokens: r.PromptTokens, CompletionTokens: r.CompletionTokens, TotalTokens: r.TotalTokens,
		ProxyKeyFP: r.ProxyKeyFP, ProxyKeyName: r.ProxyKeyName,
	}
}

// proxyKeyFP reads a proxy key filter: a fingerprint (12 hex digits) as it is, anything
// else as the proxy key itself, reduced to its fingerprint so the secret is never
// compared or kept.
func proxyKeyFP(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	if len(s) == 12 {
		if _, err := hex.DecodeString(s); err == nil {
			return strings.ToLower(s)
		}
	}
	return domain.ProxyKeyFingerprint(s)
}

// groupIDsNamed returns the ids of the groups whose name contains sub (any case), or of
// the aggregates among them when aggregates is set: the substring filters on group
// names (API.md 6.2), resolved here so that SQL filters by indexed id.
func (a *admin) groupIDsNamed(sub string, aggregates bool) []uint64 {
	sub = strings.ToLower(sub)
	ids := []uint64{}
	a.state.Read(func(s *domain.State) {
		for _, g := range s.Groups() {
			if aggregates && g.Type != domain.GroupAggregate {
				continue
			}
			if strings.Contains(strings.ToLower(g.Name), sub) {
				ids = append(ids, g.ID)
			}
		}
	})
	return ids
}

// logFilter reads the filters of GET /api/logs and its export (API.md 6.2, plus
// proxy_key). Unparsable booleans, status codes and times are ignored, as gpt-load does.
// A text filter with a NUL character or invalid UTF-8 is a 400 naming it: no stored
// text holds either (PostgreSQL refuses them, SQLite fails on them).
func (a *admin) logFilter(r *http.Request) (sqllog.LogFilter, error) {
	q := r.URL.Query()
	var f sqllog.LogFilter
	for _, name := range []string{"group_name", "parent_group_name", "model", "error_contains", "key_value", "request_type", "source_ip", "proxy_key"} {
		if v := q.Get(name); strings.ContainsRune(v, 0) || !utf8.ValidString(v) {
			return f, errField(codeValidation, name, "must be UTF-8 text without NUL characters")
		}
	}
	if v := q.Get("group_name"); v != "" {
		f.GroupIDs = a.groupIDsNamed(v, false)
	}
	if v := q.Get("parent_group_name"); v != "" {
		f.ParentGroupIDs = a.groupIDsNamed(v, true)
	}
	f.Model = q.Get("model")
	f.ErrorContains = q.Get("error_contains")
	if v := strings.TrimSpace(q.Get("key_value")); v != "" {
		f.KeyHash = a.cipher.Hash(v).String()
	}
	if b, err := strconv.ParseBool(q.Get("is_success")); err == nil {
		f.IsSuccess = &b
	}
	f.RequestType = q.Get("request_type")
	if c, err := strconv.Atoi(q.Get("status_code")); err == nil {
		f.StatusCode = &c
	}
	f.SourceIP = q.Get("source_ip")
	f.ProxyKeyFP = proxyKeyFP(q.Get("proxy_key"))
	if t, err := time.Parse(time.RFC3339, q.Get("start_time")); err == nil {
		f.Start = t
	}
	if t, err := time.Parse(time.RFC3339, q.Get("end_time")); err == nil {
		f.End = t
	}
	return f, nil
}

// logPage is the pagination of GET /api/logs: that of API.md 0.4, plus whether
// total_items is only a lower bound (more than logCountCap logs match).
type logPage struct {
	pageFigure
	TotalIsLowerBound bool `json:"total_is_lower_bound"`
}

// listLogs is GET /api/logs (API.md 6.2): a page of the matching logs, newest first.
func (a *admin) listLogs(w http.ResponseWriter, r *http.Request) {
	if a.logs == nil {
		fail(w, r, errLogsUnavailable())
		return
	}
	page, size := pagination(r)
	f, err := a.logFilter(r)
	if err != nil {
		fail(w, r, err)
		return
	}
	skip := offset(page, size)
	rows, err := a.logs.Logs(r.Context(), f, skip, size)
	if err != nil {
		a.failDB(w, r, err)
		return
	}
	// Count at least past this page, so that the page shown is always within the total.
	// A substring of error messages has no index: counting its matches scans the table
	// until the cap, so it counts only one past this page (enough to offer the next).
	most := max(logCountCap, skip+size)
	if f.ErrorContains != "" {
		most = skip + size + 1
	}
	n, capped, err := a.logs.CountLogs(r.Context(), f, most)
	if err != nil {
		a.failDB(w, r, err)
		return
	}
	items := make([]logJSON, len(rows))
	for i := range rows {
		items[i] = a.logOut(&rows[i])
	}
	n = max(n, skip+len(items))
	out := struct {
		Items      []logJSON `json:"items"`
		Pagination logPage   `json:"pagination"`
	}{items, logPage{newPage[logJSON](nil, page, size, n).Pagination, capped}}
	ok(w, r, out)
}

// failDB answers a failed SQL query: 500 DATABASE_ERROR, or 503 when the client left.
func (a *admin) failDB(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		fail(w, r, err)
		return
	}
	a.d.Log.Error().Err(err).Str("path", r.URL.Path).Msg("request log query failed")
	fail(w, r, errDatabase())
}

// exportLogs is GET /api/logs/export with the filters of GET /api/logs. By default (and
// with distinct=keys) it is gpt-load's key export (API.md 6.3): one line per distinct key
// of the matching logs, from its newest log, keys in clear. With format=csv-logs it
// streams the matching logs themselves, newest first, read a batch at a time so memory
// stays bounded whatever their number; key values are masked there (the key export is the
// way to get keys in clear).
func (a *admin) exportLogs(w http.ResponseWriter, r *http.Request) {
	if a.logs == nil {
		fail(w, r, errLogsUnavailable())
		return
	}
	q := r.URL.Query()
	format := q.Get("format")
	if d := q.Get("distinct"); d != "" && d != "keys" {
		fail(w, r, errField(codeValidation, "distinct", "must be keys"))
		return
	}
	if format != "" && format != "csv-keys" && format != "csv-logs" {
		fail(w, r, errField(codeValidation, "format", "must be csv-keys or csv-logs"))
		return
	}
	f, err := a.logFilter(r)
	if err != nil {
		fail(w, r, err)
		return
	}
	stamp := a.now().Format("20060102150405")
	out := &lazyCSV{w: w}
	if format == "csv-logs" {
		out.name = "logs_export_" + stamp + ".csv"
		out.header = logCSVHeader
		err = a.logs.EachLog(r.Context(), f, exportBatchRows, func(l *sqllog.LogRow) error {
			return out.write(a.logCSV(l))
		})
	} else {
		out.name = "log_keys_export_" + stamp + ".csv"
		out.header = []string{"key_value", "group_name", "status_code"}
		err = a.logs.EachDistinctKey(r.Context(), f, func(k sqllog.KeyRow) error {
			return out.write([]string{a.keyText(k.KeyValue), k.GroupName, strconv.Itoa(k.StatusCode)})
		})
	}
	if err == nil {
		err = out.finish()
	}
	if err != nil {
		if out.started {
			// Too late for a status: cut the response, so the client sees it incomplete.
			a.d.Log.Warn().Err(err).Msg("log export stopped")
			panic(http.ErrAbortHandler)
		}
		a.d.Log.Error().Err(err).Msg("log export failed")
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": tr(r, msgExportFailed)})
	}
}

var logCSVHeader = []string{"id", "timestamp", "group_id", "group_name", "parent_group_id", "parent_group_name",
	"key_value", "key_hash", "model", "is_success", "source_ip", "status_code", "request_path", "duration_ms",
	"error_message", "user_agent", "request_type", "upstream_addr", "is_stream", "prompt_tokens",
	"completion_tokens", "total_tokens", "proxy_key_fp", "proxy_key_name", "request_body"}

func (a *admin) logCSV(l *sqllog.LogRow) []string {
	key := a.maskedKeyText(l.KeyValue)
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	i := func(v int64) string { return strconv.FormatInt(v, 10) }
	return []string{l.ID, l.Timestamp.Local().Format(time.RFC3339Nano), u(l.GroupID), l.GroupName,
		u(l.ParentGroupID), l.ParentGroupName, key, l.KeyHash, l.Model, strconv.FormatBool(l.IsSuccess),
		l.SourceIP, strconv.Itoa(l.StatusCode), l.RequestPath, i(l.DurationMs), l.ErrorMessage, l.UserAgent,
		l.RequestType, l.UpstreamAddr, strconv.FormatBool(l.IsStream), i(l.PromptTokens),
		i(l.CompletionTokens), i(l.TotalTokens), l.ProxyKeyFP, l.ProxyKeyName, l.RequestBody}
}

// lazyCSV writes a CSV attachment whose headers are sent with its first row (or at the
// end when there is none), so that a query that fails at once can still be answered
// with an error status. It flushes every csvFlushRows rows: the client sees progress and
// nothing piles up in memory.
type lazyCSV struct {
	w       http.ResponseWriter
	name    string
	header  []string
	cw      *csv.Writer
	rows    int
	started bool
}

const csvFlushRows = 256

func (c *lazyCSV) start() error {
	c.started = true
	h := c.w.Header()
	h.Set(headerContentType, "text/csv; charset=utf-8")
	h.Set("Content-Disposition", "attachment; filename="+c.name)
	c.w.WriteHeader(http.StatusOK)
	c.cw = csv.NewWriter(c.w)
	return c.cw.Write(c.header)
}

func (c *lazyCSV) write(rec []string) error {
	if !c.started {
		if err := c.start(); err != nil {
			return err
		}
	}
	if err := c.cw.Write(rec); err != nil {
		return err
	}
	if c.rows++; c.rows%csvFlushRows == 0 {
		c.cw.Flush()
		if err := c.cw.Error(); err != nil {
			return err
		}
		_ = http.NewResponseController(c.w).Flush()
	}
	return nil
}

func (c *lazyCSV) finish() error {
	if !c.started {
		if err := c.start(); err != nil {
			return err
		}
	}
	c.cw.Flush()
	return c.cw.Error()
}
