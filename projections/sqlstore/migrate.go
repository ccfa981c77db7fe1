package sqlstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/rs/zerolog"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
	"github.com/uptrace/bun/driver/pgdriver"
	"github.com/uptrace/bun/migrate"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// The schema, one folder per dialect. The folders hold the same migrations (same
// YYYYMMDDHHMMSS_name), each written in its dialect's SQL; Migrate refuses to run when
// they differ. Files ending in .tx.up.sql run in a transaction (PostgreSQL and SQLite
// roll DDL back; MySQL commits it at once, so its files are plain .up.sql), and
// "--bun:split" separates statements, so no driver needs multi-statement support.
// Each statement is idempotent (IF NOT EXISTS): a migration is marked applied only
// after it succeeded, and may therefore run again after a crash in between.
//
// They are embedded: bun's DiscoverCaller reads the source tree, which a shipped binary
// does not have.
//
//go:embed migrations
var migrationFiles embed.FS

// migrationDirs maps each bun dialect to its folder under migrations/.
var migrationDirs = map[dialect.Name]string{
	dialect.SQLite: "sqlite",
	dialect.PG:     "pg",
	dialect.MySQL:  "mysql",
}

// How long Migrate waits for another node's migration lock before giving up, and how
// often it tries again meanwhile.
const (
	lockWait     = 2 * time.Minute
	lockRetryMax = time.Second
)

// Migrate brings the schema of db up to date. Several nodes may call it at once: they
// take turns under bun's migration lock (a row in bun_migration_locks), and the ones
// that come after the first find nothing left to do. A node that died while holding the
// lock leaves the row behind; Migrate then fails after waiting lockWait, and says so.
func Migrate(ctx context.Context, db *bun.DB) (err error) {
	ms, err := migrationsFor(db.Dialect().Name())
	if err != nil {
		return err
	}
	m := migrate.NewMigrator(db, ms, migrate.WithMarkAppliedOnSuccess(true))

	// Nodes starting together may all create bun's tables at once; PostgreSQL can then
	// fail one CREATE TABLE IF NOT EXISTS with a duplicate-object error. Try again.
	for attempt := 1; ; attempt++ {
		err := m.Init(ctx)
		if err == nil {
			break
		}
		if attempt == 5 || !isDuplicate(err) {
			return fmt.Errorf("migrate: create bun's migration tables: %w", err)
		}
		if err := sleep(ctx, time.Duration(attempt)*50*time.Millisecond); err != nil {
			return fmt.Errorf("migrate: create bun's migration tables: %w", err)
		}
	}

	if err := lock(ctx, m); err != nil {
		return err
	}
	defer func() {
		// Release the lock even when ctx has ended, or every later start would wait.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if uerr := m.Unlock(uctx); uerr != nil {
			err = errors.Join(err, fmt.Errorf("migrate: release the migration lock: %w", uerr))
		}
	}()

	group, err := m.Migrate(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if !group.IsZero() {
		zerolog.Ctx(ctx).Info().Str("migrations", group.Migrations.String()).
			Msg("database schema migrated")
	}
	return nil
}

// migrationsFor returns the migrations written for dialect name.
func migrationsFor(name dialect.Name) (*migrate.Migrations, error) {
	if err := checkMigrationDirs(); err != nil {
		return nil, err
	}
	dir, ok := migrationDirs[name]
	if !ok {
		return nil, fmt.Errorf("migrate: no migrations for dialect %s", name)
	}
	sub, err := fs.Sub(migrationFiles, path.Join("migrations", dir))
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	ms := migrate.NewMigrations()
	if err := ms.Discover(sub); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return ms, nil
}

// checkMigrationDirs makes sure every dialect has the same migrations, so that the
// schema cannot silently differ between a single node and a cluster.
func checkMigrationDirs() error {
	var want []string
	var wantDir string
	for _, dir := range []string{"sqlite", "pg", "mysql"} {
		entries, err := fs.ReadDir(migrationFiles, path.Join("migrations", dir))
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		var names []string
		for _, e := range entries {
			// 20261125000001_request_logs.tx.up.sql → 20261125000001_request_logs
			name, _, _ := strings.Cut(e.Name(), ".")
			names = append(names, name)
		}
		slices.Sort(names)
		if want == nil {
			want, wantDir = names, dir
			continue
		}
		if !slices.Equal(names, want) {
			return fmt.Errorf("migrate: migrations/%s has %v but migrations/%s has %v",
				dir, names, wantDir, want)
		}
	}
	return nil
}

// lock takes bun's migration lock, waiting while another node holds it.
func lock(ctx context.Context, m *migrate.Migrator) error {
	deadline := time.Now().Add(lockWait)
	delay := 20 * time.Millisecond
	for {
		err := m.Lock(ctx)
		if err == nil {
			return nil
		}
		if !isDuplicate(err) {
			return fmt.Errorf("migrate: take the migration lock: %w", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("migrate: the migration lock has been held for over %s: "+
				"another node is migrating, or one died while migrating "+
				"(then delete its row from bun_migration_locks): %w", lockWait, err)
		}
		if err := sleep(ctx, delay); err != nil {
			return fmt.Errorf("migrate: wait for the migration lock: %w", err)
		}
		delay = min(2*delay, lockRetryMax)
	}
}

// isDuplicate reports whether err says that a row or object already exists: a unique
// key violation, or (PostgreSQL) a table or type created meanwhile by someone else.
func isDuplicate(err error) bool {
	var pgErr pgdriver.Error
	if errors.As(err, &pgErr) {
		switch pgErr.Field('C') {
		case "23505", // unique_violation
			"42P07", // duplicate_table
			"42710": // duplicate_object
			return true
		}
		return false
	}
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) {
		return myErr.Number == 1062 || myErr.Number == 1050 // ER_DUP_ENTRY, ER_TABLE_EXISTS_ERROR
	}
	var liteErr *sqlite.Error
	if errors.As(err, &liteErr) {
		return liteErr.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE ||
			liteErr.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// IsOutOfSpace reports whether err says the database has no room left: a full disk or
// table, or (PostgreSQL) any shortage of resources. The database answers, yet no write
// can succeed until an operator makes room; the write is worth trying again then.
func IsOutOfSpace(err error) bool {
	var pgErr pgdriver.Error
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Field('C'), "53") // insufficient_resources: disk_full 53100, …
	}
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) {
		return myErr.Number == 1114 || myErr.Number == 1021 // ER_RECORD_FILE_FULL, ER_DISK_FULL
	}
	var liteErr *sqlite.Error
	if errors.As(err, &liteErr) {
		return liteErr.Code()&0xff == sqlite3.SQLITE_FULL
	}
	return false
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
