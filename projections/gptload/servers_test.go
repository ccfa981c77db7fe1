package gptload_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"gpt-load/projections/gptload"
	"gpt-load/projections/sqlstore/sqlstoretest"
)

// gptloadMySQL are gpt-load 1.x's tables as GORM creates them on MySQL (in the column
// order of schema-sqlite.sql); gptloadDDL derives the PostgreSQL ones.
var gptloadMySQL = []string{
	"CREATE TABLE `system_settings` (`id` bigint unsigned AUTO_INCREMENT PRIMARY KEY, `setting_key` varchar(255) NOT NULL UNIQUE, `setting_value` text NOT NULL, `description` varchar(512), `created_at` datetime(3) NULL, `updated_at` datetime(3) NULL)",
	"CREATE TABLE `groups` (`id` bigint unsigned AUTO_INCREMENT PRIMARY KEY, `name` varchar(255) NOT NULL UNIQUE, `display_name` varchar(255), `proxy_keys` text, `description` varchar(512), `group_type` varchar(50) DEFAULT 'standard', `upstreams` json NOT NULL, `validation_endpoint` varchar(255), `channel_type` varchar(50) NOT NULL, `sort` bigint DEFAULT 0, `test_model` varchar(255) NOT NULL, `param_overrides` json, `config` json, `header_rules` json, `model_redirect_rules` json, `model_redirect_strict` boolean DEFAULT false, `last_validated_at` datetime(3) NULL, `created_at` datetime(3) NULL, `updated_at` datetime(3) NULL)",
	"CREATE TABLE `group_sub_groups` (`id` bigint unsigned AUTO_INCREMENT PRIMARY KEY, `group_id` bigint unsigned NOT NULL, `sub_group_id` bigint unsigned NOT NULL, `weight` bigint DEFAULT 0, `created_at` datetime(3) NULL, `updated_at` datetime(3) NULL)",
	"CREATE TABLE `api_keys` (`id` bigint unsigned AUTO_INCREMENT PRIMARY KEY, `key_value` text NOT NULL, `key_hash` varchar(128), `group_id` bigint unsigned NOT NULL, `status` varchar(50) NOT NULL DEFAULT 'active', `notes` varchar(255) DEFAULT '', `request_count` bigint NOT NULL DEFAULT 0, `failure_count` bigint NOT NULL DEFAULT 0, `last_used_at` datetime(3) NULL, `created_at` datetime(3) NULL, `updated_at` datetime(3) NULL)",
	"CREATE TABLE `request_logs` (`id` varchar(36) PRIMARY KEY, `timestamp` datetime(3) NOT NULL, `group_id` bigint unsigned NOT NULL, `group_name` varchar(255), `parent_group_id` bigint unsigned, `parent_group_name` varchar(255), `key_value` text, `key_hash` varchar(128), `model` varchar(255), `is_success` boolean NOT NULL, `source_ip` varchar(64), `status_code` bigint NOT NULL, `request_path` varchar(500), `duration` bigint NOT NULL, `error_message` text, `user_agent` varchar(512), `request_type` varchar(20) NOT NULL DEFAULT 'final', `upstream_addr` varchar(500), `is_stream` boolean NOT NULL, `request_body` text)",
	"CREATE TABLE `group_hourly_stats` (`id` bigint unsigned AUTO_INCREMENT PRIMARY KEY, `time` datetime(3) NOT NULL, `group_id` bigint unsigned NOT NULL, `success_count` bigint NOT NULL DEFAULT 0, `failure_count` bigint NOT NULL DEFAULT 0, `created_at` datetime(3) NULL, `updated_at` datetime(3) NULL, UNIQUE KEY idx_group_time (`time`,`group_id`))",
}

func gptloadDDL(dialect string) []string {
	if dialect == "mysql" {
		return gptloadMySQL
	}
	out := make([]string, len(gptloadMySQL))
	for i, s := range gptloadMySQL {
		s = strings.ReplaceAll(s, "`", `"`)
		s = strings.ReplaceAll(s, "bigint unsigned AUTO_INCREMENT PRIMARY KEY", "bigserial PRIMARY KEY")
		s = strings.ReplaceAll(s, "bigint unsigned", "bigint")
		s = strings.ReplaceAll(s, "datetime(3)", "timestamptz")
		s = strings.ReplaceAll(s, "UNIQUE KEY idx_group_time (", "UNIQUE (")
		out[i] = s
	}
	return out
}

var boolColumns = map[string]bool{"model_redirect_strict": true, "is_success": true, "is_stream": true}

// loadFixture creates gpt-load's tables in db and fills them with every row of the
// SQLite fixture file.
func loadFixture(t *testing.T, dialect string, db *bun.DB, file string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, ddl := range gptloadDDL(dialect) {
		if _, err := db.ExecContext(ctx, ddl); err != nil {
			t.Fatalf("%s: %v", ddl, err)
		}
	}
	src, err := sql.Open("sqlite", "file:"+file+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	q := func(s string) string {
		if dialect == "mysql" {
			return "`" + s + "`"
		}
		return `"` + s + `"`
	}
	for _, table := range []string{"system_settings", "groups", "group_sub_groups", "api_keys", "request_logs", "group_hourly_stats"} {
		rows, err := src.QueryContext(ctx, "SELECT * FROM "+q(table))
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		var names, phs []string
		for _, c := range cols {
			names = append(names, q(c))
			phs = append(phs, "?") // bun turns them into the dialect's own
		}
		ins := fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", q(table), strings.Join(names, ","), strings.Join(phs, ","))
		var all [][]any
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, c := range cols {
				if s, ok := vals[i].(string); ok && (strings.HasSuffix(c, "_at") || c == "time" || c == "timestamp") {
					if tm, err := time.Parse("2006-01-02 15:04:05.999999999-07:00", s); err == nil {
						vals[i] = tm.UTC()
					}
				}
				if boolColumns[c] {
					if n, ok := vals[i].(int64); ok {
						vals[i] = n != 0
					}
				}
			}
			all = append(all, vals)
		}
		rows.Close()
		for _, vals := range all {
			if _, err := db.ExecContext(ctx, ins, vals...); err != nil {
				t.Fatalf("%s %v: %v", ins, vals, err)
			}
		}
	}
}

// TestImportFromServers imports the fixture from a MySQL and a PostgreSQL database made
// with gpt-load's tables (when TEST_MYSQL_DSN / TEST_POSTGRES_DSN are set), keys encrypted,
// request logs included, and compares everything with expected.json.
func TestImportFromServers(t *testing.T) {
	t.Parallel()
	e := loadExpected(t)
	for _, dialect := range []string{"postgres", "mysql"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			dsn := sqlstoretest.DSN(t, dialect)
			loadFixture(t, dialect, sqlstoretest.Open(t, dsn), fixture(t, "encrypted.db"))
			db := sqlstoretest.Migrated(t, sqlstoretest.DSN(t, "sqlite"))
			n := startNode(t, "", db)
			sum := mustRun(t, n, dsn, gptload.Options{EncryptionKey: fixtureKey, WithLogs: true})
			if sum.Keys.Active != 94 || sum.Keys.Invalid != 6 || sum.Logs.RequestLogs != e.RequestLogs.Count || sum.Logs.HourlyStats != len(e.HourlyStats) {
				t.Fatalf("summary %+v %+v", sum, sum.Logs)
			}
			checkAgainstExpected(t, n, e)
			again := mustRun(t, n, dsn, gptload.Options{EncryptionKey: fixtureKey, WithLogs: true})
			if !again.Empty() {
				t.Errorf("second run %+v", again)
			}
			if _, err := run(t, n, dsn, gptload.Options{EncryptionKey: "wrong-key-for-the-servers"}); err != gptload.ErrKeyWrong {
				t.Errorf("wrong key: %v", err)
			}
		})
	}
}
