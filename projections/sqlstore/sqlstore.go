// Package sqlstore opens the SQL database that request logs are projected into
// (SQLite, PostgreSQL or MySQL, chosen by DATABASE_DSN as gpt-load does), migrates its
// schema, and defines the bun models of its tables.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/rs/zerolog"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
	"github.com/uptrace/bun/dialect/mysqldialect"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/pgdriver"
	"github.com/uptrace/bun/schema"
	_ "modernc.org/sqlite" // registers the "sqlite" driver (pure Go)
)

// Dialect is the kind of database a DATABASE_DSN names.
type Dialect string

// The dialects DATABASE_DSN can name.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
	MySQL    Dialect = "mysql"
)

// DialectOf tells which database dsn names (API.md 8): a postgres:// or postgresql://
// URL is PostgreSQL, a DSN containing "@tcp" is MySQL (go-sql-driver form,
// user:password@tcp(host:port)/db), and anything else is the path of a SQLite file.
func DialectOf(dsn string) Dialect {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return Postgres
	case strings.Contains(dsn, "@tcp"):
		return MySQL
	default:
		return SQLite
	}
}

// Pool sizes. A server database is shared by every node of a cluster, so each node keeps
// a modest pool; MySQL closes idle connections after wait_timeout, so connections are
// recycled well before any sensible value of it.
const (
	serverMaxOpenConns = 10
	serverConnLifetime = 5 * time.Minute
	sqliteBusyTimeout  = 5 * time.Second
)

// Open opens the database dsn names, checks that it answers (bounded by ctx), and returns
// it ready for queries; Migrate then brings its schema up to date. Errors name
// DATABASE_DSN and the dialect, never the password.
func Open(ctx context.Context, dsn string, log zerolog.Logger) (*bun.DB, error) {
	if strings.TrimSpace(dsn) == "" {
		return nil, errors.New("DATABASE_DSN is empty")
	}
	d := DialectOf(dsn)
	shown, secrets := redact(dsn)
	fail := func(err error) error {
		return &openError{dialect: d, dsn: shown, secrets: secrets, err: err}
	}

	var (
		sqldb *sql.DB
		dia   schema.Dialect
		err   error
	)
	switch d {
	case Postgres:
		sqldb, dia, err = openPostgres(dsn)
	case MySQL:
		sqldb, dia, err = openMySQL(dsn)
	default:
		sqldb, dia, err = openSQLite(dsn)
	}
	if err != nil {
		return nil, fail(err)
	}
	// Ping before bun.NewDB: the MySQL dialect asks the server for its version there,
	// without a context, and should only do so once the server is known to answer.
	if err := sqldb.PingContext(ctx); err != nil {
		_ = sqldb.Close()
		return nil, fail(err)
	}

	// Unknown columns are skipped when scanning, so that during a rolling upgrade a node
	// still reads tables that a newer node has already given more columns.
	db := bun.NewDB(sqldb, dia, bun.WithDiscardUnknownColumns())
	if ev := log.Debug(); ev.Enabled() {
		ev.Discard()
		db.AddQueryHook(queryLogger{log: log})
	}
	log.Info().Str("dialect", string(d)).Str("dsn", shown).Msg("database opened")
	return db, nil
}

// openPostgres uses bun's own PostgreSQL driver; the DSN is a libpq-style URL
// (sslmode, connect_timeout, application_name… in the query).
func openPostgres(dsn string) (_ *sql.DB, _ schema.Dialect, err error) {
	// pgdriver panics on a DSN it cannot parse: check the URL first, so that the usual
	// mistakes get an error that does not quote the DSN (url.Parse's does).
	if _, err := url.Parse(dsn); err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, nil, fmt.Errorf("not a valid URL: %w", err)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	connector := pgdriver.NewConnector(
		pgdriver.WithApplicationName("gpt-load"), // the DSN's application_name wins
		pgdriver.WithDSN(dsn),
	)
	sqldb := sql.OpenDB(connector)
	sqldb.SetMaxOpenConns(serverMaxOpenConns)
	sqldb.SetMaxIdleConns(serverMaxOpenConns)
	sqldb.SetConnMaxLifetime(serverConnLifetime)
	return sqldb, pgdialect.New(), nil
}

// openMySQL uses go-sql-driver/mysql. Times are read as time.Time (parseTime, which
// gpt-load appends when absent; our models need it, so it is always on) and written by
// bun in the DSN's loc (UTC by default), so a time survives the round trip whatever
// time.Local is. Migrations run one statement at a time, so multiStatements is not
// needed.
func openMySQL(dsn string) (*sql.DB, schema.Dialect, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, nil, err
	}
	cfg.ParseTime = true
	if cfg.Loc == nil {
		cfg.Loc = time.UTC
	}
	if cfg.Loc == time.UTC {
		if _, ok := cfg.Params["time_zone"]; !ok {
			// Session time zone = loc, so that CURRENT_TIMESTAMP defaults are UTC too.
			if cfg.Params == nil {
				cfg.Params = map[string]string{}
			}
			cfg.Params["time_zone"] = "'+00:00'"
		}
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, nil, err
	}
	sqldb := sql.OpenDB(connector)
	sqldb.SetMaxOpenConns(serverMaxOpenConns)
	sqldb.SetMaxIdleConns(serverMaxOpenConns)
	sqldb.SetConnMaxLifetime(serverConnLifetime)
	return sqldb, mysqldialect.New(mysqldialect.WithTimeLocation(cfg.Loc.String())), nil
}

// openSQLite opens a SQLite file with modernc.org/sqlite (pure Go, no cgo), creating its
// directory. Every connection gets the same pragmas:
//   - busy_timeout=5000: a writer waits up to 5 s for another writer instead of failing;
//   - journal_mode=WAL: readers never block the writer, nor the writer the readers;
//   - foreign_keys=on, synchronous=NORMAL (durable in WAL mode except for the last
//     transactions before a power loss, and much faster than FULL);
//   - cache_size=-65536: 64 MiB of page cache per connection instead of 2 MiB. A batch
//     of request logs touches every index of request_logs; with the small cache the
//     pages of ten indexes evict each other and a batch spends most of its time
//     re-reading and spilling them (4,000 logs/s measured, against the figure in
//     docs/BENCHMARKS.md with this size).
//
// The pool is not limited to one connection: under WAL, readers (log queries) run
// beside the one writer (the log projector) and SQLite itself serializes writers, the
// second one waiting in busy_timeout. What makes that safe is _txlock=immediate:
// transactions take the write lock at BEGIN, where busy_timeout applies. A deferred
// transaction that reads and then writes would instead fail at once with SQLITE_BUSY
// whenever another connection committed in between, busy_timeout or not.
func openSQLite(dsn string) (*sql.DB, schema.Dialect, error) {
	path, query, _ := strings.Cut(dsn, "?")
	file := strings.TrimPrefix(path, "file:")
	memory := file == ":memory:" || strings.Contains(query, "mode=memory")
	if !memory {
		if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
			return nil, nil, fmt.Errorf("create the database directory: %w", err)
		}
	}
	params := url.Values{}
	params.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeout.Milliseconds()))
	params.Add("_pragma", "journal_mode(WAL)")
	params.Add("_pragma", "foreign_keys(1)")
	params.Add("_pragma", "synchronous(NORMAL)")
	params.Add("_pragma", "cache_size(-65536)")
	params.Set("_txlock", "immediate")
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	sqldb, err := sql.Open("sqlite", dsn+sep+params.Encode())
	if err != nil {
		return nil, nil, err
	}
	conns := max(2, runtime.GOMAXPROCS(0)) // reads are CPU-bound, in process
	if memory {
		conns = 1 // every connection to :memory: would be a database of its own
	}
	sqldb.SetMaxOpenConns(conns)
	sqldb.SetMaxIdleConns(conns)
	return sqldb, sqlitedialect.New(), nil
}

// openError is a failure to open DATABASE_DSN. Its message shows the DSN with the
// password replaced, and scrubs the password from the cause's text too, in case a
// driver ever quotes it.
type openError struct {
	dialect Dialect
	dsn     string
	secrets []string
	err     error
}

func (e *openError) Error() string {
	cause := e.err.Error()
	for _, s := range e.secrets {
		cause = strings.ReplaceAll(cause, s, redacted)
	}
	return fmt.Sprintf("DATABASE_DSN (%s %s): %s", e.dialect, e.dsn, cause)
}

func (e *openError) Unwrap() error { return e.err }

const redacted = "REDACTED"

// Redact returns dsn with its password replaced by REDACTED, fit for logs and errors.
func Redact(dsn string) string {
	shown, _ := redact(dsn)
	return shown
}

// redact returns dsn without its password, and the password's spellings found in it.
func redact(dsn string) (shown string, secrets []string) {
	shown = dsn
	switch DialectOf(dsn) {
	case Postgres:
		u, err := url.Parse(dsn)
		if err != nil {
			// Nothing can be told apart: show only the scheme.
			scheme, _, _ := strings.Cut(dsn, "://")
			return scheme + "://" + redacted, nil
		}
		if pw, ok := u.User.Password(); ok && pw != "" {
			secrets = append(secrets, pw, url.PathEscape(pw), url.QueryEscape(pw))
			u.User = url.UserPassword(u.User.Username(), redacted)
		}
		for k, vs := range u.Query() {
			if strings.EqualFold(k, "password") {
				for _, v := range vs {
					if v != "" {
						secrets = append(secrets, v, url.QueryEscape(v))
					}
				}
			}
		}
		shown = u.String()
	case MySQL:
		cfg, err := mysql.ParseDSN(dsn)
		if err != nil {
			// The user info ends at the last '@' before the address.
			at := strings.LastIndex(dsn[:strings.LastIndex(dsn, "@tcp")+1], "@")
			return redacted + dsn[at:], nil
		}
		if cfg.Passwd != "" {
			secrets = append(secrets, cfg.Passwd)
			if prefix := cfg.User + ":" + cfg.Passwd + "@"; strings.HasPrefix(dsn, prefix) {
				shown = cfg.User + ":" + redacted + "@" + dsn[len(prefix):]
			}
		}
	}
	return scrubPasswordParams(shown), secrets
}

// scrubPasswordParams replaces the value of every password=… parameter (URL query or
// key=value form) with REDACTED.
func scrubPasswordParams(s string) string {
	const key = "password="
	var b strings.Builder
	lower := strings.ToLower(s)
	for {
		i := strings.Index(lower, key)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		i += len(key)
		end := strings.IndexAny(s[i:], " &;")
		if end < 0 {
			end = len(s) - i
		}
		b.WriteString(s[:i])
		b.WriteString(redacted)
		s, lower = s[i+end:], lower[i+end:]
	}
}

// queryLogger logs each statement at debug level: its kind, duration and error. Not its
// text: bun inlines values, and those include upstream keys and request bodies.
type queryLogger struct{ log zerolog.Logger }

func (queryLogger) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context {
	return ctx
}

func (h queryLogger) AfterQuery(_ context.Context, e *bun.QueryEvent) {
	h.log.Debug().Str("op", e.Operation()).Dur("took_ms", time.Since(e.StartTime)).
		Err(e.Err).Msg("sql")
}

// Compact rewrites the tables that hold sealed key values and key hashes, so that rows
// replaced by an update (a re-sealing) do not linger in free pages or dead tuples of
// the database files: SQLite is vacuumed and its write-ahead log truncated, PostgreSQL's
// tables get VACUUM FULL, MySQL's OPTIMIZE TABLE. What the server keeps in its own
// write-ahead or redo logs until it recycles them is beyond a client's reach.
func Compact(ctx context.Context, db *bun.DB) error {
	var stmts []string
	switch db.Dialect().Name() {
	case dialect.SQLite:
		stmts = []string{"VACUUM", "PRAGMA wal_checkpoint(TRUNCATE)"}
	case dialect.PG:
		stmts = []string{"VACUUM FULL request_logs", "VACUUM FULL key_usage"}
	case dialect.MySQL:
		stmts = []string{"OPTIMIZE TABLE request_logs, key_usage"}
	}
	for _, s := range stmts {
		// OPTIMIZE TABLE answers with rows: read as a query, it works on every dialect.
		rows, err := db.QueryContext(ctx, s)
		if err == nil {
			for rows.Next() {
			}
			err = errors.Join(rows.Err(), rows.Close())
		}
		if err != nil {
			return fmt.Errorf("compact the database (%s): %w", s, err)
		}
	}
	return nil
}
