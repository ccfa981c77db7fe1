package sqllog

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"

	"gpt-load/projections/sqlstore"
)

// resealBatch is how many request logs one pass of Reseal reads and rewrites in one
// transaction.
const resealBatch = 1000

// StoredKey is the key a request log names, as stored: the sealed (or clear) value and
// its hash.
type StoredKey struct{ Value, Hash string }

// Reseal visits every request log that names a key value, in id order, and gives fn its
// stored value and hash. fn returns the new stored form, and whether it differs; with
// write false nothing is written (a verifying pass), else changed rows are rewritten a
// batch per transaction, so an interrupted pass leaves every row whole, old or new. It
// returns how many rows fn saw and how many it changed.
func Reseal(ctx context.Context, db *bun.DB, write bool, fn func(StoredKey) (StoredKey, bool, error)) (seen, changed int, err error) {
	after := ""
	for {
		var rows []sqlstore.RequestLog
		if err := db.NewSelect().Model(&rows).Column("id", "key_value", "key_hash").
			Where("key_value <> ''").Where("id > ?", after).
			OrderExpr("id ASC").Limit(resealBatch).Scan(ctx); err != nil {
			return seen, changed, fmt.Errorf("read request logs: %w", err)
		}
		if len(rows) == 0 {
			return seen, changed, nil
		}
		after = rows[len(rows)-1].ID
		var upd []sqlstore.RequestLog
		for _, r := range rows {
			seen++
			out, diff, err := fn(StoredKey{Value: r.KeyValue, Hash: r.KeyHash})
			if err != nil {
				return seen, changed, fmt.Errorf("request log %s: %w", r.ID, err)
			}
			if diff {
				upd = append(upd, sqlstore.RequestLog{ID: r.ID, KeyValue: out.Value, KeyHash: out.Hash})
			}
		}
		changed += len(upd)
		if !write || len(upd) == 0 {
			continue
		}
		if err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			for i := range upd {
				if _, err := tx.NewUpdate().Model(&upd[i]).Column("key_value", "key_hash").WherePK().Exec(ctx); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return seen, changed, fmt.Errorf("rewrite request logs: %w", err)
		}
	}
}

// RehashUsage renames the key hashes of key_usage: a row under hash old moves to
// rehash[old]. Rows of hashes not in rehash stay as they are.
func RehashUsage(ctx context.Context, db *bun.DB, rehash map[string]string) (int, error) {
	var rows []sqlstore.KeyUsage
	if err := db.NewSelect().Model(&rows).Column("group_id", "key_hash").Scan(ctx); err != nil {
		return 0, fmt.Errorf("read key usage: %w", err)
	}
	n := 0
	err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		for _, r := range rows {
			to, ok := rehash[r.KeyHash]
			if !ok || to == r.KeyHash {
				continue
			}
			if _, err := tx.NewUpdate().Model((*sqlstore.KeyUsage)(nil)).Set("key_hash = ?", to).
				Where("group_id = ?", r.GroupID).Where("key_hash = ?", r.KeyHash).Exec(ctx); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("rewrite key usage: %w", err)
	}
	return n, nil
}
