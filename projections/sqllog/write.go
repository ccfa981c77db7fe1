package sqllog

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"gpt-load/domain"
	"gpt-load/projections/sqlstore"
)

// Statement bounds of a write: rows per INSERT, and bytes of row text per INSERT (a
// request body may be 65,000 bytes; MySQL's max_allowed_packet is 16 MiB by default on
// older servers).
const (
	insertRows  = 1000
	insertBytes = 4 << 20
)

// Writer writes request logs into SQL: the rows, and what they add to the hourly stats,
// the key usage and the usage rollup, in one transaction. Each log counts exactly once:
// a log whose id is already in request_logs (a redelivered message, or another node that
// wrote the same message meanwhile) is skipped by the insert and adds nothing to the
// aggregates, which are computed from the rows this transaction actually inserted.
type Writer struct {
	db *bun.DB
}

// NewWriter returns a writer into db, whose schema sqlstore.Migrate has brought up to date.
func NewWriter(db *bun.DB) *Writer {
	if db == nil {
		panic("sqllog: nil database")
	}
	return &Writer{db: db}
}

// Write stores recs in one transaction and returns how many of them were new. Key values
// are stored as they come (encrypted when ENCRYPTION_KEY is set), never decrypted here.
func (w *Writer) Write(ctx context.Context, recs []domain.RequestLog) (inserted int, err error) {
	if len(recs) == 0 {
		return 0, nil
	}
	rows := make([]sqlstore.RequestLog, 0, len(recs))
	keyIDs := make([]uint64, 0, len(recs)) // request_logs has no key_id; the aggregates do
	seen := make(map[string]struct{}, len(recs))
	for i := range recs {
		if _, dup := seen[recs[i].ID]; dup || recs[i].ID == "" {
			continue
		}
		seen[recs[i].ID] = struct{}{}
		rows = append(rows, toRow(&recs[i]))
		keyIDs = append(keyIDs, recs[i].KeyID)
	}
	var opts *sql.TxOptions
	if w.db.Dialect().Name() == dialect.MySQL {
		// freshMySQL relies on a snapshot taken before the insert.
		opts = &sql.TxOptions{Isolation: sql.LevelRepeatableRead}
	}
	err = w.db.RunInTx(ctx, opts, func(ctx context.Context, tx bun.Tx) error {
		fresh := make([]freshLog, 0, len(rows))
		for start := 0; start < len(rows); {
			end, size := start, 0
			for end < len(rows) && end-start < insertRows && (end == start || size+rowSize(&rows[end]) <= insertBytes) {
				size += rowSize(&rows[end])
				end++
			}
			chunk, first := rows[start:end], start
			start = end
			ids, err := w.insert(ctx, tx, chunk)
			if err != nil {
				return err
			}
			for i := range chunk {
				if _, ok := ids[chunk[i].ID]; ok {
					fresh = append(fresh, freshLog{&chunk[i], keyIDs[first+i]})
				}
			}
		}
		inserted = len(fresh)
		if len(fresh) == 0 {
			return nil
		}
		return w.aggregate(ctx, tx, fresh)
	})
	if err != nil {
		return 0, fmt.Errorf("write %d request logs: %w", len(rows), err)
	}
	return inserted, nil
}

// insert inserts rows, skipping ids already stored, and returns the ids it inserted.
func (w *Writer) insert(ctx context.Context, tx bun.Tx, rows []sqlstore.RequestLog) (map[string]struct{}, error) {
	ids := make(map[string]struct{}, len(rows))
	if w.db.Dialect().Name() != dialect.MySQL {
		// ON CONFLICT DO NOTHING RETURNING names exactly the rows this statement inserted;
		// a row another transaction inserts concurrently makes this one wait for it, then
		// skips it.
		var got []string
		if _, err := tx.NewInsert().Model(&rows).Ignore().Returning("id").Exec(ctx, &got); err != nil {
			return nil, err
		}
		for _, id := range got {
			ids[id] = struct{}{}
		}
		return ids, nil
	}
	return freshMySQL(ctx, tx, rows)
}

// freshMySQL inserts rows with INSERT IGNORE, which reports how many rows it inserted but
// not which. Under REPEATABLE READ the transaction reads from a snapshot taken at its
// first read; ids present in that snapshot were there before, and ids it sees after the
// insert that were not there before are its own (rows other transactions commit
// meanwhile stay out of its snapshot).
func freshMySQL(ctx context.Context, tx bun.Tx, rows []sqlstore.RequestLog) (map[string]struct{}, error) {
	all := make([]string, len(rows))
	for i := range rows {
		all[i] = rows[i].ID
	}
	selectIDs := func() (map[string]struct{}, error) {
		var got []string
		if err := tx.NewSelect().Model((*sqlstore.RequestLog)(nil)).Column("id").
			Where("id IN (?)", bun.List(all)).Scan(ctx, &got); err != nil {
			return nil, err
		}
		m := make(map[string]struct{}, len(got))
		for _, id := range got {
			m[id] = struct{}{}
		}
		return m, nil
	}
	before, err := selectIDs()
	if err != nil {
		return nil, err
	}
	res, err := tx.NewInsert().Model(&rows).Ignore().Exec(ctx)
	if err != nil {
		return nil, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return nil, err
	}
	if int(n) == len(rows)-len(before) {
		// Everything not there before is ours: the usual case, one query saved.
		fresh := make(map[string]struct{}, n)
		for _, id := range all {
			if _, old := before[id]; !old {
				fresh[id] = struct{}{}
			}
		}
		return fresh, nil
	}
	after, err := selectIDs()
	if err != nil {
		return nil, err
	}
	for id := range before {
		delete(after, id)
	}
	if len(after) != int(n) {
		return nil, fmt.Errorf("insert reported %d new request logs, the transaction sees %d", n, len(after))
	}
	return after, nil
}

// freshLog is a row this transaction inserted, with the record's key id.
type freshLog struct {
	*sqlstore.RequestLog
	keyID uint64
}

type hourKey struct {
	hour  time.Time
	group uint64
}

type keyUsageKey struct {
	group uint64
	hash  string
}

type usageKey struct {
	hour          time.Time
	group, parent uint64
	model, fp     string
	keyID         uint64
}

// aggregate adds the fresh rows to the hourly stats (API.md 9.2), the key usage and the
// usage rollup. Rows are upserted in key order, so that nodes writing at once take their
// row locks in the same order and do not deadlock.
func (w *Writer) aggregate(ctx context.Context, tx bun.Tx, fresh []freshLog) error {
	hourly := map[hourKey]*sqlstore.GroupHourlyStat{}
	keys := map[keyUsageKey]*sqlstore.KeyUsage{}
	usage := map[usageKey]*sqlstore.UsageHourly{}
	addHour := func(hour time.Time, group uint64, r freshLog) {
		k := hourKey{hour, group}
		s := hourly[k]
		if s == nil {
			s = &sqlstore.GroupHourlyStat{Time: hour, GroupID: group}
			hourly[k] = s
		}
		if r.RequestType != domain.RequestRetry {
			if r.IsSuccess {
				s.SuccessCount++
			} else {
				s.FailureCount++
			}
		}
		s.PromptTokens += r.PromptTokens
		s.CompletionTokens += r.CompletionTokens
		s.TotalTokens += r.TotalTokens
	}
	for _, r := range fresh {
		hour := r.Timestamp.UTC().Truncate(time.Hour)
		addHour(hour, r.GroupID, r)
		if r.ParentGroupID != 0 {
			addHour(hour, r.ParentGroupID, r)
		}
		if r.IsSuccess && r.KeyHash != "" {
			k := keyUsageKey{r.GroupID, r.KeyHash}
			u := keys[k]
			if u == nil {
				u = &sqlstore.KeyUsage{GroupID: r.GroupID, KeyHash: r.KeyHash}
				keys[k] = u
			}
			u.RequestCount++
			if r.Timestamp.After(u.LastUsedAt) {
				u.LastUsedAt = r.Timestamp
			}
			if r.keyID != 0 {
				u.KeyID = r.keyID
			}
		}
		uk := usageKey{hour, r.GroupID, r.ParentGroupID, cut(r.Model, sqlstore.MaxUsageModelLen), r.ProxyKeyFP, r.keyID}
		u := usage[uk]
		if u == nil {
			u = &sqlstore.UsageHourly{Time: hour, GroupID: uk.group, ParentGroupID: uk.parent, Model: uk.model,
				ProxyKeyFP: uk.fp, KeyID: uk.keyID}
			usage[uk] = u
		}
		if r.ProxyKeyName != "" {
			u.ProxyKeyName = r.ProxyKeyName
		}
		if r.ProxyKeyID != 0 {
			u.ProxyKeyID = r.ProxyKeyID
		}
		if r.RequestType != domain.RequestRetry {
			u.Requests++
			if !r.IsSuccess {
				u.Failures++
			}
		}
		u.PromptTokens += r.PromptTokens
		u.CompletionTokens += r.CompletionTokens
		u.TotalTokens += r.TotalTokens
	}

	hourRows := sortedValues(hourly, func(a, b hourKey) int {
		return cmp.Or(a.hour.Compare(b.hour), cmp.Compare(a.group, b.group))
	})
	keyRows := sortedValues(keys, func(a, b keyUsageKey) int {
		return cmp.Or(cmp.Compare(a.group, b.group), strings.Compare(a.hash, b.hash))
	})
	usageRows := sortedValues(usage, func(a, b usageKey) int {
		return cmp.Or(a.hour.Compare(b.hour), cmp.Compare(a.group, b.group), cmp.Compare(a.parent, b.parent),
			strings.Compare(a.model, b.model), strings.Compare(a.fp, b.fp), cmp.Compare(a.keyID, b.keyID))
	})

	mysql := w.db.Dialect().Name() == dialect.MySQL
	for c := range slices.Chunk(hourRows, insertRows) {
		q := tx.NewInsert().Model(&c)
		if mysql {
			q = q.On("DUPLICATE KEY UPDATE").
				Set("success_count = success_count + VALUES(success_count)").
				Set("failure_count = failure_count + VALUES(failure_count)").
				Set("prompt_tokens = prompt_tokens + VALUES(prompt_tokens)").
				Set("completion_tokens = completion_tokens + VALUES(completion_tokens)").
				Set("total_tokens = total_tokens + VALUES(total_tokens)").
				Set("updated_at = CURRENT_TIMESTAMP(6)")
		} else {
			q = q.On("CONFLICT (?, group_id) DO UPDATE", bun.Ident("time")).
				Set("success_count = ?TableAlias.success_count + EXCLUDED.success_count").
				Set("failure_count = ?TableAlias.failure_count + EXCLUDED.failure_count").
				Set("prompt_tokens = ?TableAlias.prompt_tokens + EXCLUDED.prompt_tokens").
				Set("completion_tokens = ?TableAlias.completion_tokens + EXCLUDED.completion_tokens").
				Set("total_tokens = ?TableAlias.total_tokens + EXCLUDED.total_tokens").
				Set("updated_at = CURRENT_TIMESTAMP")
		}
		if _, err := q.Exec(ctx); err != nil {
			return fmt.Errorf("hourly stats: %w", err)
		}
	}
	for c := range slices.Chunk(keyRows, insertRows) {
		q := tx.NewInsert().Model(&c)
		if mysql {
			q = q.On("DUPLICATE KEY UPDATE").
				Set("request_count = request_count + VALUES(request_count)").
				Set("last_used_at = GREATEST(last_used_at, VALUES(last_used_at))").
				Set("key_id = IF(VALUES(key_id) <> 0, VALUES(key_id), key_id)")
		} else {
			q = q.On("CONFLICT (group_id, key_hash) DO UPDATE").
				Set("request_count = ?TableAlias.request_count + EXCLUDED.request_count").
				Set("last_used_at = CASE WHEN EXCLUDED.last_used_at > ?TableAlias.last_used_at THEN EXCLUDED.last_used_at ELSE ?TableAlias.last_used_at END").
				Set("key_id = CASE WHEN EXCLUDED.key_id <> 0 THEN EXCLUDED.key_id ELSE ?TableAlias.key_id END")
		}
		if _, err := q.Exec(ctx); err != nil {
			return fmt.Errorf("key usage: %w", err)
		}
	}
	for c := range slices.Chunk(usageRows, insertRows) {
		q := tx.NewInsert().Model(&c)
		if mysql {
			q = q.On("DUPLICATE KEY UPDATE").
				Set("requests = requests + VALUES(requests)").
				Set("failures = failures + VALUES(failures)").
				Set("prompt_tokens = prompt_tokens + VALUES(prompt_tokens)").
				Set("completion_tokens = completion_tokens + VALUES(completion_tokens)").
				Set("total_tokens = total_tokens + VALUES(total_tokens)").
				Set("proxy_key_name = IF(VALUES(proxy_key_name) <> '', VALUES(proxy_key_name), proxy_key_name)").
				Set("proxy_key_id = IF(VALUES(proxy_key_id) <> 0, VALUES(proxy_key_id), proxy_key_id)")
		} else {
			q = q.On("CONFLICT (?, group_id, parent_group_id, model, proxy_key_fp, key_id) DO UPDATE", bun.Ident("time")).
				Set("requests = ?TableAlias.requests + EXCLUDED.requests").
				Set("failures = ?TableAlias.failures + EXCLUDED.failures").
				Set("prompt_tokens = ?TableAlias.prompt_tokens + EXCLUDED.prompt_tokens").
				Set("completion_tokens = ?TableAlias.completion_tokens + EXCLUDED.completion_tokens").
				Set("total_tokens = ?TableAlias.total_tokens + EXCLUDED.total_tokens").
				Set("proxy_key_name = CASE WHEN EXCLUDED.proxy_key_name <> '' THEN EXCLUDED.proxy_key_name ELSE ?TableAlias.proxy_key_name END").
				Set("proxy_key_id = CASE WHEN EXCLUDED.proxy_key_id <> 0 THEN EXCLUDED.proxy_key_id ELSE ?TableAlias.proxy_key_id END")
		}
		if _, err := q.Exec(ctx); err != nil {
			return fmt.Errorf("usage rollup: %w", err)
		}
	}
	return nil
}

func sortedValues[K comparable, V any](m map[K]*V, compare func(a, b K) int) []V {
	ks := make([]K, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, compare)
	vs := make([]V, len(ks))
	for i, k := range ks {
		vs[i] = *m[k]
	}
	return vs
}

// toRow turns a record into its row, each string cut to its column (at a rune
// boundary) and without NUL characters, which PostgreSQL refuses in text: every
// database then stores the same thing, and no row is refused for its text.
func toRow(r *domain.RequestLog) sqlstore.RequestLog {
	return sqlstore.RequestLog{
		ID:               r.ID,
		Timestamp:        r.Timestamp.UTC(),
		GroupID:          r.GroupID,
		GroupName:        clean(r.GroupName, sqlstore.MaxGroupNameLen),
		ParentGroupID:    r.ParentGroupID,
		ParentGroupName:  clean(r.ParentGroupName, sqlstore.MaxGroupNameLen),
		KeyValue:         clean(r.KeyValue, 0),
		KeyHash:          clean(r.KeyHash, sqlstore.MaxKeyHashLen),
		Model:            clean(r.Model, 0),
		IsSuccess:        r.IsSuccess,
		SourceIP:         clean(r.SourceIP, sqlstore.MaxSourceIPLen),
		StatusCode:       r.StatusCode,
		RequestPath:      clean(r.RequestPath, sqlstore.MaxRequestPathLen),
		DurationMs:       r.DurationMS,
		ErrorMessage:     clean(r.ErrorMessage, 0),
		UserAgent:        clean(r.UserAgent, 0),
		RequestType:      clean(r.RequestType, sqlstore.MaxRequestTypeLen),
		UpstreamAddr:     clean(r.UpstreamAddr, sqlstore.MaxUpstreamAddrLen),
		IsStream:         r.IsStream,
		RequestBody:      clean(r.RequestBody, sqlstore.MaxRequestBodyLen),
		PromptTokens:     r.PromptTokens,
		CompletionTokens: r.CompletionTokens,
		TotalTokens:      r.TotalTokens,
		ProxyKeyFP:       clean(r.ProxyKeyFP, sqlstore.MaxProxyKeyFPLen),
		ProxyKeyName:     clean(r.ProxyKeyName, sqlstore.MaxProxyKeyNameLen),
		ProxyKeyID:       r.ProxyKeyID,
	}
}

func rowSize(r *sqlstore.RequestLog) int {
	return 256 + len(r.KeyValue) + len(r.Model) + len(r.ErrorMessage) + len(r.UserAgent) +
		len(r.RequestPath) + len(r.UpstreamAddr) + len(r.RequestBody)
}

// clean drops NUL characters and invalid UTF-8 from s and cuts it to at most max bytes
// (0: no limit) at a rune boundary.
func clean(s string, max int) string {
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "")
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return cut(s, max)
}

func cut(s string, max int) string {
	if max <= 0 || len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}
