package sqlstore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"gpt-load/projections/sqlstore"
	"gpt-load/projections/sqlstore/sqlstoretest"
)

// The tables this package owns, bun's migration tables included.
var ownTables = []string{
	"request_logs", "group_hourly_stats", "key_usage", "usage_hourly", "bun_migrations", "bun_migration_locks",
}

// allMigrations is how many migrations each dialect has.
const allMigrations = 7

// testEachDB runs f once per available database: SQLite always, PostgreSQL and
// MySQL/MariaDB when TEST_POSTGRES_DSN / TEST_MYSQL_DSN name a server. Each run gets a
// database of its own, dropped at the end.
func testEachDB(t *testing.T, f func(t *testing.T, dsn string, db *bun.DB)) {
	sqlstoretest.EachDB(t, f)
}

func openDB(t *testing.T, dsn string) *bun.DB { return sqlstoretest.Open(t, dsn) }

func dropOwnTables(t *testing.T, db *bun.DB) {
	t.Helper()
	// Cleanups run after t.Context() is cancelled.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, table := range ownTables {
		if _, err := db.NewDropTable().Table(table).IfExists().Exec(ctx); err != nil {
			t.Errorf("drop %s: %v", table, err)
		}
	}
}

func TestStore(t *testing.T) {
	testEachDB(t, func(t *testing.T, dsn string, db *bun.DB) {
		ctx := t.Context()

		t.Run("migrate is idempotent", func(t *testing.T) {
			for i := range 2 {
				if err := sqlstore.Migrate(ctx, db); err != nil {
					t.Fatalf("Migrate #%d: %v", i+1, err)
				}
			}
			applied := appliedMigrations(t, db)
			if len(applied) != allMigrations {
				t.Errorf("bun_migrations holds %v, want the %d migrations once each", applied, allMigrations)
			}
		})

		t.Run("tables and indexes exist", func(t *testing.T) {
			for _, model := range []any{
				(*sqlstore.RequestLog)(nil), (*sqlstore.GroupHourlyStat)(nil),
				(*sqlstore.KeyUsage)(nil), (*sqlstore.UsageHourly)(nil),
			} {
				n, err := db.NewSelect().Model(model).Count(ctx)
				if err != nil || n != 0 {
					t.Errorf("count %T: %d, %v; want 0, nil", model, n, err)
				}
			}
			got := indexNames(t, db, "request_logs")
			for _, want := range []string{
				"idx_request_logs_timestamp", "idx_request_logs_group_timestamp",
				"idx_request_logs_parent_timestamp", "idx_request_logs_key_hash_timestamp",
				"idx_request_logs_status_timestamp", "idx_request_logs_success_timestamp",
				"idx_request_logs_type_timestamp", "idx_request_logs_source_ip_timestamp",
				"idx_request_logs_model_timestamp", "idx_request_logs_proxy_key_timestamp",
			} {
				if !slices.Contains(got, want) {
					t.Errorf("request_logs indexes %v lack %s", got, want)
				}
			}
		})

		t.Run("request log round trip", func(t *testing.T) {
			want := sampleLog("3f8c1a2e-0b7d-4c59-9a61-2d4e5f607182")
			if _, err := db.NewInsert().Model(&want).Exec(ctx); err != nil {
				t.Fatalf("insert: %v", err)
			}
			var got sqlstore.RequestLog
			if err := db.NewSelect().Model(&got).Where("id = ?", want.ID).Scan(ctx); err != nil {
				t.Fatalf("select: %v", err)
			}
			if d := got.Timestamp.Sub(want.Timestamp).Abs(); d >= time.Microsecond {
				t.Errorf("timestamp %s, want %s (off by %s)", got.Timestamp, want.Timestamp, d)
			}
			if len(got.RequestBody) != len(want.RequestBody) || got.RequestBody != want.RequestBody {
				t.Errorf("request_body: got %d bytes, want the same %d bytes", len(got.RequestBody), len(want.RequestBody))
			}
			got.Timestamp, want.Timestamp = time.Time{}, time.Time{}
			got.RequestBody, want.RequestBody = "", ""
			if got != want {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
			}
		})

		t.Run("insert ignore skips known ids", func(t *testing.T) {
			first := sampleLog("5b0e8d4c-1111-4a2b-8c3d-000000000001")
			first.RequestBody = "first"
			if _, err := db.NewInsert().Model(&first).Ignore().Exec(ctx); err != nil {
				t.Fatalf("insert: %v", err)
			}
			again := first
			again.RequestBody, again.StatusCode = "second", 500
			fresh := sampleLog("5b0e8d4c-1111-4a2b-8c3d-000000000002")
			batch := []sqlstore.RequestLog{again, fresh}
			res, err := db.NewInsert().Model(&batch).Ignore().Exec(ctx)
			if err != nil {
				t.Fatalf("insert ignore of a batch with a known id: %v", err)
			}
			if n, err := res.RowsAffected(); err != nil || n != 1 {
				t.Errorf("rows affected = %d, %v; want 1 (the new row only)", n, err)
			}
			var got sqlstore.RequestLog
			if err := db.NewSelect().Model(&got).Where("id = ?", first.ID).Scan(ctx); err != nil {
				t.Fatalf("select: %v", err)
			}
			if got.RequestBody != "first" || got.StatusCode != first.StatusCode {
				t.Errorf("the known row changed: body %q, status %d", got.RequestBody, got.StatusCode)
			}
			n, err := db.NewSelect().Model((*sqlstore.RequestLog)(nil)).
				Where("id IN (?)", bun.List([]string{first.ID, fresh.ID})).Count(ctx)
			if err != nil || n != 2 {
				t.Errorf("count = %d, %v; want 2", n, err)
			}
		})

		t.Run("hourly stats are unique per time and group", func(t *testing.T) {
			hour := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
			row := sqlstore.GroupHourlyStat{Time: hour, GroupID: 7, SuccessCount: 3, FailureCount: 1}
			if _, err := db.NewInsert().Model(&row).Exec(ctx); err != nil {
				t.Fatalf("insert: %v", err)
			}
			// The same instant in another zone is the same hour.
			shanghai := time.FixedZone("UTC+8", 8*3600)
			dup := sqlstore.GroupHourlyStat{Time: hour.In(shanghai), GroupID: 7, SuccessCount: 1}
			if _, err := db.NewInsert().Model(&dup).Exec(ctx); err == nil {
				t.Errorf("a second row for (%s, 7) was accepted", hour)
			}
			for _, other := range []sqlstore.GroupHourlyStat{
				{Time: hour, GroupID: 8},
				{Time: hour.Add(time.Hour), GroupID: 7},
			} {
				if _, err := db.NewInsert().Model(&other).Exec(ctx); err != nil {
					t.Errorf("insert (%s, %d): %v", other.Time, other.GroupID, err)
				}
			}
			var got sqlstore.GroupHourlyStat
			if err := db.NewSelect().Model(&got).Where("group_id = ?", 7).
				Where("? = ?", bun.Ident("time"), hour).Scan(ctx); err != nil {
				t.Fatalf("select: %v", err)
			}
			if got.ID == 0 || !got.Time.Equal(hour) || got.SuccessCount != 3 || got.FailureCount != 1 {
				t.Errorf("got %+v", got)
			}
			// created_at and updated_at come from the database default: now.
			for name, ts := range map[string]time.Time{"created_at": got.CreatedAt, "updated_at": got.UpdatedAt} {
				if d := time.Since(ts).Abs(); d > time.Minute {
					t.Errorf("%s = %s, %s away from now", name, ts, d)
				}
			}
		})

		t.Run("key usage and usage rollup round trip", func(t *testing.T) {
			hour := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
			ku := sqlstore.KeyUsage{GroupID: 3, KeyHash: "ab12", KeyID: 0, RequestCount: 5, LastUsedAt: hour.Add(90 * time.Second)}
			if _, err := db.NewInsert().Model(&ku).Exec(ctx); err != nil {
				t.Fatalf("insert key usage: %v", err)
			}
			if _, err := db.NewInsert().Model(&ku).Exec(ctx); err == nil {
				t.Error("a second key_usage row for the same (group_id, key_hash) was accepted")
			}
			var gotKU sqlstore.KeyUsage
			if err := db.NewSelect().Model(&gotKU).Where("group_id = 3").Scan(ctx); err != nil {
				t.Fatalf("select key usage: %v", err)
			}
			if !gotKU.LastUsedAt.Equal(ku.LastUsedAt) || gotKU.RequestCount != 5 || gotKU.KeyHash != "ab12" {
				t.Errorf("key usage round trip: got %+v, want %+v", gotKU, ku)
			}
			// Rows differing in one key column only, zero ids and empty strings included;
			// models differing in case are different models.
			base := sqlstore.UsageHourly{Time: hour, GroupID: 3, Model: "gpt-4o", ProxyKeyName: "global", Requests: 2, TotalTokens: 9}
			rows := []sqlstore.UsageHourly{base, base, base, base, base, base}
			rows[1].ParentGroupID = 9
			rows[2].Model = "GPT-4o"
			rows[3].ProxyKeyFP = "a1b2c3d4e5f6"
			rows[4].KeyID = 77
			rows[5].Time = hour.Add(time.Hour)
			if _, err := db.NewInsert().Model(&rows).Exec(ctx); err != nil {
				t.Fatalf("insert usage rows: %v", err)
			}
			dup := base
			if _, err := db.NewInsert().Model(&dup).Exec(ctx); err == nil {
				t.Error("a second usage_hourly row with the same key was accepted")
			}
			var got []sqlstore.UsageHourly
			if err := db.NewSelect().Model(&got).Where("group_id = 3").Scan(ctx); err != nil {
				t.Fatalf("select usage: %v", err)
			}
			if len(got) != len(rows) {
				t.Errorf("usage_hourly holds %d rows, want %d", len(got), len(rows))
			}
		})

		t.Run("concurrent read-then-write transactions", func(t *testing.T) {
			// What the log projector does, from several goroutines: read, then write, in
			// one transaction. None may fail for want of the (SQLite) write lock.
			const writers, txs = 4, 25
			var wg sync.WaitGroup
			errs := make(chan error, writers*txs)
			for w := range writers {
				wg.Go(func() {
					for i := range txs {
						errs <- db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
							if _, err := tx.NewSelect().Model((*sqlstore.RequestLog)(nil)).Count(ctx); err != nil {
								return err
							}
							row := sampleLog(fmt.Sprintf("00000000-0000-4000-8000-%06d%06d", w, i))
							row.RequestBody = "small"
							_, err := tx.NewInsert().Model(&row).Ignore().Exec(ctx)
							return err
						})
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatalf("transaction: %v", err)
				}
			}
		})

		t.Run("concurrent migrate", func(t *testing.T) {
			for _, shared := range []bool{true, false} {
				name := map[bool]string{true: "one handle", false: "one handle each"}[shared]
				t.Run(name, func(t *testing.T) {
					dropOwnTables(t, db)
					var wg sync.WaitGroup
					errs := make([]error, 3)
					for i := range errs {
						node := db
						if !shared {
							node = openDB(t, dsn)
						}
						wg.Go(func() { errs[i] = sqlstore.Migrate(ctx, node) })
					}
					wg.Wait()
					for i, err := range errs {
						if err != nil {
							t.Errorf("Migrate #%d: %v", i, err)
						}
					}
					if applied := appliedMigrations(t, db); len(applied) != allMigrations {
						t.Errorf("bun_migrations holds %v, want the %d migrations once each", applied, allMigrations)
					}
					var locks int
					if err := db.NewRaw("SELECT COUNT(*) FROM ?", bun.Ident("bun_migration_locks")).
						Scan(ctx, &locks); err != nil || locks != 0 {
						t.Errorf("bun_migration_locks holds %d rows (%v), want 0", locks, err)
					}
				})
			}
		})
	})
}

// sampleLog is a request log with every column set; its body is 65,000 bytes of text
// that needs escaping (quotes, backslashes, newlines, multi-byte runes).
func sampleLog(id string) sqlstore.RequestLog {
	var body strings.Builder
	body.WriteString(`{"model":"gpt-4o","messages":[{"role":"user","content":"`)
	for body.Len() < sqlstore.MaxRequestBodyLen-100 {
		body.WriteString(`héllo \"wörld\" 'quoted' back\\slash 你好 🚀\n`)
	}
	for body.Len() < sqlstore.MaxRequestBodyLen {
		body.WriteByte('x')
	}
	return sqlstore.RequestLog{
		ID: id,
		// Microseconds, and a zone other than UTC and time.Local.
		Timestamp:        time.Date(2026, 11, 25, 21, 14, 15, 123456789, time.FixedZone("UTC+8", 8*3600)),
		GroupID:          42,
		GroupName:        "openai-sub",
		ParentGroupID:    7,
		ParentGroupName:  "aggregate",
		KeyValue:         "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		KeyHash:          "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
		Model:            "gpt-4o-mini",
		IsSuccess:        true,
		SourceIP:         "203.0.113.9",
		StatusCode:       200,
		RequestPath:      "/proxy/openai/v1/chat/completions?x=1",
		DurationMs:       1234,
		ErrorMessage:     "upstream said: \"rate limited\"; retry",
		UserAgent:        "curl/8.5.0",
		RequestType:      "final",
		UpstreamAddr:     "https://api.openai.com/v1/chat/completions",
		IsStream:         true,
		RequestBody:      body.String(),
		PromptTokens:     11,
		CompletionTokens: 22,
		TotalTokens:      33,
		ProxyKeyFP:       "a1b2c3d4e5f6",
		ProxyKeyName:     "global",
	}
}

func appliedMigrations(t *testing.T, db *bun.DB) []string {
	t.Helper()
	var names []string
	if err := db.NewRaw("SELECT ? FROM ? ORDER BY ?", bun.Ident("name"), bun.Ident("bun_migrations"), bun.Ident("name")).
		Scan(t.Context(), &names); err != nil {
		t.Fatalf("read bun_migrations: %v", err)
	}
	return names
}

func indexNames(t *testing.T, db *bun.DB, table string) []string {
	t.Helper()
	var q string
	switch db.Dialect().Name() {
	case dialect.SQLite:
		q = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
	case dialect.PG:
		q = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = ?"
	case dialect.MySQL:
		q = "SELECT DISTINCT index_name FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = ?"
	default:
		t.Fatalf("no index query for %s", db.Dialect().Name())
	}
	var names []string
	if err := db.NewRaw(q, table).Scan(t.Context(), &names); err != nil {
		t.Fatalf("list indexes of %s: %v", table, err)
	}
	return names
}

func TestDialectOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		dsn  string
		want sqlstore.Dialect
	}{
		{"./data/gpt-load.db", sqlstore.SQLite},
		{"/var/lib/gpt-load/gpt-load.db", sqlstore.SQLite},
		{"file:gpt-load.db?cache=shared", sqlstore.SQLite},
		{":memory:", sqlstore.SQLite},
		{"postgres://u:p@db:5432/gpt?sslmode=disable", sqlstore.Postgres},
		{"postgresql://db/gpt", sqlstore.Postgres},
		{"postgres://u:p@tcp.example/gpt", sqlstore.Postgres}, // the prefix decides first
		{"root:@tcp(127.0.0.1:3306)/test", sqlstore.MySQL},
		{"u:p@tcp(db:3306)/gpt?charset=utf8mb4&parseTime=true", sqlstore.MySQL},
		{"mysql://u:p@db/gpt", sqlstore.SQLite}, // not a form gpt-load knows
		{"host=db user=u dbname=gpt", sqlstore.SQLite},
	}
	for _, tt := range tests {
		t.Run(tt.dsn, func(t *testing.T) {
			t.Parallel()
			if got := sqlstore.DialectOf(tt.dsn); got != tt.want {
				t.Errorf("DialectOf(%q) = %q, want %q", tt.dsn, got, tt.want)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	tests := []struct{ dsn, want string }{
		{"data/gpt-load.db", "data/gpt-load.db"},
		{"postgres://user:s3cret@db:5432/gpt?sslmode=disable", "postgres://user:REDACTED@db:5432/gpt?sslmode=disable"},
		{"postgres://db/gpt?password=s3cret&sslmode=disable", "postgres://db/gpt?password=REDACTED&sslmode=disable"},
		{"user:s3cret@tcp(db:3306)/gpt?parseTime=true", "user:REDACTED@tcp(db:3306)/gpt?parseTime=true"},
		{"user:s3c@ret@tcp(db:3306)/gpt", "user:REDACTED@tcp(db:3306)/gpt"},
		{"root:@tcp(127.0.0.1:3306)/test", "root:@tcp(127.0.0.1:3306)/test"},
	}
	for _, tt := range tests {
		t.Run(tt.dsn, func(t *testing.T) {
			t.Parallel()
			if got := sqlstore.Redact(tt.dsn); got != tt.want {
				t.Errorf("Redact(%q) = %q, want %q", tt.dsn, got, tt.want)
			}
		})
	}
}

func TestOpenFailsFastWithoutPassword(t *testing.T) {
	t.Parallel()
	const password = "Hunter2-not-for-logs"
	tests := []struct {
		name, dsn string
	}{
		{"postgres unreachable", "postgres://gpt:" + password + "@127.0.0.1:1/gpt?sslmode=disable"},
		{"postgres password in query", "postgres://gpt@127.0.0.1:1/gpt?sslmode=disable&password=" + password},
		{"postgres bad URL", "postgres://gpt:" + password + "@127.0.0.1:port/gpt"},
		{"mysql unreachable", "gpt:" + password + "@tcp(127.0.0.1:1)/gpt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			start := time.Now()
			db, err := sqlstore.Open(ctx, tt.dsn, zerolog.New(zerolog.NewTestWriter(t)))
			if err == nil {
				_ = db.Close()
				t.Fatal("Open succeeded")
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("Open took %s to fail", took)
			}
			msg := err.Error()
			if !strings.Contains(msg, "DATABASE_DSN") {
				t.Errorf("error does not name DATABASE_DSN: %s", msg)
			}
			if want := string(sqlstore.DialectOf(tt.dsn)); !strings.Contains(msg, want) {
				t.Errorf("error does not name the dialect %s: %s", want, msg)
			}
			if strings.Contains(msg, password) || strings.Contains(fmt.Sprintf("%+v", err), password) {
				t.Errorf("error shows the password: %s", msg)
			}
		})
	}
}

func TestOpenSQLiteCreatesPrivateDirectory(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "nested", "data")
	db, err := sqlstore.Open(t.Context(), filepath.Join(dir, "gpt-load.db"), zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer db.Close()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("directory mode %o, want 700", perm)
	}
	for pragma, want := range map[string]string{
		"journal_mode": "wal", "busy_timeout": "5000", "foreign_keys": "1", "synchronous": "1",
	} {
		var got string
		if err := db.NewRaw("PRAGMA "+pragma).Scan(t.Context(), &got); err != nil {
			t.Fatalf("PRAGMA %s: %v", pragma, err)
		}
		if !strings.EqualFold(got, want) {
			t.Errorf("PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
}
