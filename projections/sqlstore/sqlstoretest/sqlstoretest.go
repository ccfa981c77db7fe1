// Package sqlstoretest gives tests a database of each dialect to themselves: a SQLite
// file in t.TempDir(), and a fresh PostgreSQL or MySQL/MariaDB database created on the
// servers TEST_POSTGRES_DSN and TEST_MYSQL_DSN name, dropped when the test ends. CI and
// other suites share those servers; a database per test keeps them out of each other's
// tables. For _test.go files only, like net/http/httptest.
package sqlstoretest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/rs/zerolog"
	"github.com/uptrace/bun"

	"gpt-load/projections/sqlstore"
)

// Example DSNs, shown when a variable is unset.
const (
	examplePostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	exampleMySQL    = "root:@tcp(127.0.0.1:3306)/test"
)

// Dialects are the names EachDB gives its subtests.
var Dialects = []string{"sqlite", "postgres", "mysql"}

// EachDB runs f in a parallel subtest per dialect (sqlite, postgres, mysql) on a fresh,
// empty database of that dialect, not migrated; the server dialects are skipped with a
// message when their variable is unset.
func EachDB(t *testing.T, f func(t *testing.T, dsn string, db *bun.DB)) {
	t.Helper()
	for _, name := range Dialects {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dsn := DSN(t, name)
			f(t, dsn, Open(t, dsn))
		})
	}
}

// DSN returns the DSN of a fresh database of the named dialect ("sqlite", "postgres" or
// "mysql"), dropped at the end of the test; it skips t when the server's variable is
// unset.
func DSN(t testing.TB, name string) string {
	t.Helper()
	switch name {
	case "sqlite":
		return filepath.Join(t.TempDir(), "data", "gpt-load.db")
	case "postgres":
		return freshPostgres(t, server(t, "TEST_POSTGRES_DSN", examplePostgres))
	case "mysql":
		return freshMySQL(t, server(t, "TEST_MYSQL_DSN", exampleMySQL))
	}
	t.Fatalf("sqlstoretest: unknown dialect %q", name)
	return ""
}

// Migrated opens dsn and migrates it.
func Migrated(t testing.TB, dsn string) *bun.DB {
	t.Helper()
	db := Open(t, dsn)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := sqlstore.Migrate(ctx, db); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return db
}

// Open opens dsn with sqlstore.Open, closed at the end of the test.
func Open(t testing.TB, dsn string) *bun.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := sqlstore.Open(ctx, dsn, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel))
	if err != nil {
		t.Fatalf("open %s: %v", sqlstore.DialectOf(dsn), err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func server(t testing.TB, env, example string) string {
	t.Helper()
	dsn := os.Getenv(env)
	if dsn == "" {
		t.Skipf("%s is not set: skipping (e.g. %s=%s)", env, env, example)
	}
	return dsn
}

func dbName() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "gl_test_" + hex.EncodeToString(b[:])
}

func freshPostgres(t testing.TB, admin string) string {
	t.Helper()
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("TEST_POSTGRES_DSN: %v", err)
	}
	name := dbName()
	adminDB := Open(t, admin)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := adminDB.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// Connections of the test may linger in the pool a moment: force them out.
		if _, err := adminDB.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

func freshMySQL(t testing.TB, admin string) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(admin)
	if err != nil {
		t.Fatalf("TEST_MYSQL_DSN: %v", err)
	}
	name := dbName()
	adminDB := Open(t, admin)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := adminDB.ExecContext(ctx, "CREATE DATABASE "+name+" CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := adminDB.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	cfg.DBName = name
	return cfg.FormatDSN()
}

// Count returns the number of rows of table, or fails t.
func Count(t testing.TB, db *bun.DB, table string, where ...string) int64 {
	t.Helper()
	q := db.NewSelect().Table(table)
	for _, w := range where {
		q = q.Where(w)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := q.Count(ctx)
	if err != nil {
		t.Fatalf("count %s %s: %v", table, strings.Join(where, " AND "), err)
	}
	return n
}
