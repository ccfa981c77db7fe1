package sqllog_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/driver/pgdriver"

	"gpt-load/projections/sqllog"
	"gpt-load/projections/sqlstore/sqlstoretest"
)

// benchRows is the size of the log table the page benchmarks read: 10,000,000 unless
// GL_BENCH_LOG_ROWS says otherwise.
func benchRows(b *testing.B) int {
	if s := os.Getenv("GL_BENCH_LOG_ROWS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1000 {
			b.Fatalf("GL_BENCH_LOG_ROWS=%q: want a number of at least 1000", s)
		}
		return n
	}
	return 10_000_000
}

// BenchmarkLogsFirstPage measures what GET /api/logs asks of the database for its first
// page (15 logs, newest first, and the count capped at 10,000) with each filter alone,
// on a table of benchRows logs spread over 72 hours, on SQLite and on PostgreSQL when
// TEST_POSTGRES_DSN is set. It reports p50 and p99 latencies; filling the table takes
// minutes and is not measured. GL_BENCH_SQLITE_FILE keeps the SQLite table in that file
// and reuses it on later runs; GL_BENCH_SLOW adds a substring that matches nothing, which
// reads every row.
//
//	go test -run '^$' -bench LogsFirstPage -benchtime 200x -timeout 2h ./projections/sqllog/
func BenchmarkLogsFirstPage(b *testing.B) {
	n := benchRows(b)
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			dsn := ""
			if f := os.Getenv("GL_BENCH_SQLITE_FILE"); f != "" && name == "sqlite" {
				dsn = f // kept between runs: filled once
			} else {
				dsn = sqlstoretest.DSN(b, name)
			}
			db := sqlstoretest.Migrated(b, dsn)
			var have int
			if err := db.NewSelect().TableExpr("request_logs").ColumnExpr("COUNT(*)").Scan(context.Background(), &have); err != nil {
				b.Fatal(err)
			}
			if have != n {
				if have != 0 {
					b.Fatalf("%s holds %d logs, not %d", dsn, have, n)
				}
				start := time.Now()
				fillLogs(b, db, dsn, n)
				b.Logf("%s: %d logs written in %s", name, n, time.Since(start).Round(time.Second))
			}
			q := sqllog.NewQueries(db)
			mid := benchBase.Add(36 * time.Hour)
			cases := []struct {
				name string
				f    sqllog.LogFilter
			}{
				{"none", sqllog.LogFilter{}},
				{"group", sqllog.LogFilter{GroupIDs: []uint64{7}}},
				{"group_name_11_groups", sqllog.LogFilter{GroupIDs: []uint64{1, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}}},
				{"parent_group", sqllog.LogFilter{ParentGroupIDs: []uint64{100}}},
				{"model_exact", sqllog.LogFilter{Model: "gpt-4o-mini"}},
				{"model_substring_2", sqllog.LogFilter{Model: "claude"}},
				{"key", sqllog.LogFilter{KeyHash: "k1234"}},
				{"is_success_false", sqllog.LogFilter{IsSuccess: ptr(false)}},
				{"request_type_retry", sqllog.LogFilter{RequestType: "retry"}},
				{"status_500", sqllog.LogFilter{StatusCode: ptr(500)}},
				{"source_ip", sqllog.LogFilter{SourceIP: "10.0.1.17"}},
				{"proxy_key", sqllog.LogFilter{ProxyKeyFP: "fp7"}},
				{"time_range_1h", sqllog.LogFilter{Start: mid, End: mid.Add(time.Hour)}},
				{"error_contains_common", sqllog.LogFilter{ErrorContains: "rate limit"}},
			}
			if os.Getenv("GL_BENCH_SLOW") != "" {
				// No index can serve a substring that matches nothing: every row is read.
				// Minutes at 200 runs; set GL_BENCH_SLOW to include it.
				cases = append(cases, struct {
					name string
					f    sqllog.LogFilter
				}{"error_contains_absent", sqllog.LogFilter{ErrorContains: "no such text"}})
			}
			for _, c := range cases {
				b.Run(c.name, func(b *testing.B) {
					ctx := context.Background()
					lat := make([]time.Duration, 0, b.N)
					b.ResetTimer()
					for range b.N {
						t0 := time.Now()
						rows, err := q.Logs(ctx, c.f, 0, 15)
						if err != nil {
							b.Fatal(err)
						}
						most := 10_000 // as GET /api/logs counts
						if c.f.ErrorContains != "" {
							most = 16
						}
						if _, _, err := q.CountLogs(ctx, c.f, most); err != nil {
							b.Fatal(err)
						}
						lat = append(lat, time.Since(t0))
						if len(rows) == 0 && !strings.HasSuffix(c.name, "_absent") {
							b.Fatalf("%s: no rows", c.name)
						}
					}
					slices.Sort(lat)
					ms := func(p float64) float64 {
						return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
					}
					b.ReportMetric(ms(0.5), "p50-ms")
					b.ReportMetric(ms(0.99), "p99-ms")
				})
			}
		})
	}
}

var benchBase = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// fillLogs writes n logs in SQL itself (a recursive CTE on SQLite, generate_series on
// PostgreSQL), with the secondary indexes dropped during the load and built again after
// it from their own definitions, as a bulk load would be done.
func fillLogs(b *testing.B, db *bun.DB, dsn string, n int) {
	ctx := context.Background()
	sqlite := db.Dialect().Name() == dialect.SQLite
	if !sqlite {
		// One connection without the pool's 10-second read timeout: the load and each
		// index build take longer, and the session's maintenance_work_mem must hold.
		conn := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(dsn),
			pgdriver.WithReadTimeout(time.Hour), pgdriver.WithWriteTimeout(time.Hour)))
		conn.SetMaxOpenConns(1)
		db = bun.NewDB(conn, pgdialect.New())
		defer db.Close()
		if _, err := db.ExecContext(ctx, "SET maintenance_work_mem = '1GB'"); err != nil {
			b.Fatal(err)
		}
	}
	var defs []string
	var names []string
	if sqlite {
		if err := db.NewRaw(`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'request_logs' AND sql IS NOT NULL ORDER BY name`).Scan(ctx, &names); err != nil {
			b.Fatal(err)
		}
		if err := db.NewRaw(`SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'request_logs' AND sql IS NOT NULL ORDER BY name`).Scan(ctx, &defs); err != nil {
			b.Fatal(err)
		}
	} else {
		if err := db.NewRaw(`SELECT indexname FROM pg_indexes WHERE tablename = 'request_logs' AND indexname <> 'request_logs_pkey' ORDER BY indexname`).Scan(ctx, &names); err != nil {
			b.Fatal(err)
		}
		if err := db.NewRaw(`SELECT indexdef FROM pg_indexes WHERE tablename = 'request_logs' AND indexname <> 'request_logs_pkey' ORDER BY indexname`).Scan(ctx, &defs); err != nil {
			b.Fatal(err)
		}
	}
	if len(defs) < 10 {
		b.Fatalf("only %d indexes on request_logs: %v", len(defs), names)
	}
	for _, name := range names {
		if _, err := db.ExecContext(ctx, "DROP INDEX "+name); err != nil {
			b.Fatal(err)
		}
	}
	step := (72 * time.Hour).Seconds() / float64(n)
	// Columns from i: 20 groups (1–4 reached through aggregate 100), 10,000 keys, 10
	// models, 4 % 429 and 1 % each 500 and 401 (2 % retries), 1,000 client addresses,
	// 50 proxy keys.
	const cols = `(id, "timestamp", group_id, group_name, parent_group_id, parent_group_name, key_value, key_hash, model,
		is_success, source_ip, status_code, request_path, duration_ms, error_message, user_agent, request_type,
		upstream_addr, is_stream, request_body, prompt_tokens, completion_tokens, total_tokens, proxy_key_fp, proxy_key_name)`
	const exprs = `%[1]s, %[2]s, 1 + (i * 7) %% 20, 'group-' || (1 + (i * 7) %% 20),
		CASE WHEN 1 + (i * 7) %% 20 <= 4 THEN 100 ELSE 0 END, CASE WHEN 1 + (i * 7) %% 20 <= 4 THEN 'pool' ELSE '' END,
		'sk-' || (i %% 10000), 'k' || (i %% 10000),
		CASE i %% 10 WHEN 0 THEN 'gpt-4o' WHEN 1 THEN 'gpt-4o-mini' WHEN 2 THEN 'claude-3-opus' WHEN 3 THEN 'claude-3-haiku'
			WHEN 4 THEN 'gemini-1.5-pro' WHEN 5 THEN 'gemini-1.5-flash' WHEN 6 THEN 'o1' WHEN 7 THEN 'o3-mini'
			WHEN 8 THEN 'gpt-4.1' ELSE 'gpt-4.1-nano' END,
		i %% 100 >= 6, '10.0.' || (i %% 4) || '.' || (i %% 250),
		CASE WHEN i %% 100 < 4 THEN 429 WHEN i %% 100 = 4 THEN 500 WHEN i %% 100 = 5 THEN 401 ELSE 200 END,
		'/v1/chat/completions', i %% 3000,
		CASE WHEN i %% 100 < 4 THEN 'rate limit exceeded' WHEN i %% 100 = 4 THEN 'upstream error' WHEN i %% 100 = 5 THEN 'invalid api key' ELSE '' END,
		'', CASE WHEN i %% 100 < 2 THEN 'retry' ELSE 'final' END,
		'https://api.example.com/v1/chat/completions', FALSE, '', i %% 500, i %% 300, i %% 500 + i %% 300,
		'fp' || (i %% 50), 'global'`
	var query string
	if sqlite {
		id := `printf('%08x-0000-4000-8000-000000000000', i)`
		ts := fmt.Sprintf(`strftime('%%Y-%%m-%%d %%H:%%M:%%S', %d + i * %v, 'unixepoch') || '+00:00'`, benchBase.Unix(), step)
		query = `WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < ?)
			INSERT INTO request_logs ` + cols + ` SELECT ` + fmt.Sprintf(exprs, id, ts) + ` FROM c`
	} else {
		id := `lpad(to_hex(i), 8, '0') || '-0000-4000-8000-000000000000'`
		ts := fmt.Sprintf(`to_timestamp(%d + i * %v)`, benchBase.Unix(), step)
		query = `INSERT INTO request_logs ` + cols + ` SELECT ` + fmt.Sprintf(exprs, id, ts) + ` FROM generate_series(0, ?) AS i`
	}
	if _, err := db.ExecContext(ctx, query, n-1); err != nil {
		b.Fatalf("fill: %v", err)
	}
	for _, def := range defs {
		if _, err := db.ExecContext(ctx, def); err != nil {
			b.Fatalf("%s: %v", def, err)
		}
	}
	// PostgreSQL's index-only scans need the visibility map that autovacuum would have
	// built by the time a table is this old.
	analyze := "VACUUM ANALYZE request_logs"
	if sqlite {
		analyze = "ANALYZE"
	}
	if _, err := db.ExecContext(ctx, analyze); err != nil {
		b.Fatal(err)
	}
}
