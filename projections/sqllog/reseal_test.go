package sqllog_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/uptrace/bun"

	"gpt-load/projections/sqllog"
	"gpt-load/projections/sqlstore"
	"gpt-load/projections/sqlstore/sqlstoretest"
)

// Reseal rewrites the stored key of every request log that names one, and only those fn
// changes; a verifying pass writes nothing, and an error stops it naming the log.
// RehashUsage moves key_usage rows to their new hashes. Compact runs on every database.
func TestReseal(t *testing.T) {
	sqlstoretest.EachDB(t, func(t *testing.T, dsn string, _ *bun.DB) {
		db := sqlstoretest.Migrated(t, dsn)
		ctx := context.Background()
		recs := genLogs(0, 2500) // more than one batch
		recs[3].KeyValue, recs[3].KeyHash = "", ""
		if _, err := sqllog.NewWriter(db).Write(ctx, recs); err != nil {
			t.Fatal(err)
		}
		reseal := func(k sqllog.StoredKey) (sqllog.StoredKey, bool, error) {
			if strings.HasPrefix(k.Value, "new-") {
				return k, false, nil
			}
			return sqllog.StoredKey{Value: "new-" + k.Value, Hash: "new-" + k.Hash}, true, nil
		}
		seen, changed, err := sqllog.Reseal(ctx, db, false, reseal)
		if err != nil || seen != 2499 || changed != 2499 {
			t.Fatalf("verifying pass: %d seen, %d changed, %v", seen, changed, err)
		}
		if n := sqlstoretest.Count(t, db, "request_logs", "key_value LIKE 'new-%'"); n != 0 {
			t.Fatalf("a verifying pass wrote %d rows", n)
		}
		if _, _, err := sqllog.Reseal(ctx, db, true, func(k sqllog.StoredKey) (sqllog.StoredKey, bool, error) {
			return k, false, errors.New("does not open")
		}); err == nil || !strings.Contains(err.Error(), recs[0].ID) {
			t.Fatalf("failing pass: %v, want the log named", err)
		}
		if _, changed, err = sqllog.Reseal(ctx, db, true, reseal); err != nil || changed != 2499 {
			t.Fatalf("resealing pass: %d changed, %v", changed, err)
		}
		if n := sqlstoretest.Count(t, db, "request_logs", "key_value LIKE 'new-sealed-%' AND key_hash LIKE 'new-hash-%'"); n != 2499 {
			t.Fatalf("%d rows resealed, want 2499", n)
		}
		if _, changed, _ = sqllog.Reseal(ctx, db, true, reseal); changed != 0 {
			t.Fatalf("a second pass changed %d rows", changed)
		}
		before := sqlstoretest.Count(t, db, "key_usage")
		n, err := sqllog.RehashUsage(ctx, db, map[string]string{"hash-0": "new-hash-0", "hash-1": "new-hash-1"})
		if err != nil || n == 0 {
			t.Fatalf("RehashUsage = %d, %v", n, err)
		}
		if got := sqlstoretest.Count(t, db, "key_usage", "key_hash IN ('hash-0', 'hash-1')"); got != 0 {
			t.Fatalf("%d key_usage rows kept the old hash", got)
		}
		if got := sqlstoretest.Count(t, db, "key_usage"); got != before {
			t.Fatalf("key_usage has %d rows, had %d", got, before)
		}
		if err := sqlstore.Compact(ctx, db); err != nil {
			t.Fatal(err)
		}
	})
}
