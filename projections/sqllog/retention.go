package sqllog

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"gpt-load/projections/sqlstore"
)

// RetentionConfig tunes log retention. Zero values take the defaults.
type RetentionConfig struct {
	// Every is the time between two passes (default 1 h); the first runs at once.
	Every time.Duration
	// BatchRows is the most rows one transaction deletes (default 5,000), and Pause the
	// rest between two of them (default 50 ms): no lock is held for long, and writers get
	// their turn.
	BatchRows int
	Pause     time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (c *RetentionConfig) setDefaults() {
	if c.Every <= 0 {
		c.Every = time.Hour
	}
	if c.BatchRows <= 0 {
		c.BatchRows = 5000
	}
	if c.Pause <= 0 {
		c.Pause = 50 * time.Millisecond
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Retention deletes request logs older than request_log_retention_days. One node runs
// it (the one that runs key revalidation). The hourly stats, key usage and usage rollup
// are kept: they are what remains of old logs.
type Retention struct {
	db   *bun.DB
	days func() int
	cfg  RetentionConfig
	log  zerolog.Logger
}

// NewRetention returns the job; days reads the setting in force (0: keep forever).
func NewRetention(db *bun.DB, days func() int, cfg RetentionConfig, log zerolog.Logger) *Retention {
	if db == nil || days == nil {
		panic("sqllog: nil dependency")
	}
	cfg.setDefaults()
	return &Retention{db: db, days: days, cfg: cfg, log: log}
}

// Run deletes old logs now and every Every until ctx ends. A failed pass is logged and
// tried again at the next one.
func (r *Retention) Run(ctx context.Context) error {
	for {
		start := time.Now()
		n, err := r.Pass(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			r.log.Error().Err(err).Int64("deleted", n).Msg("request-log retention failed; trying again later")
		} else if n > 0 {
			r.log.Info().Int64("deleted", n).Int("retention_days", r.days()).
				Int64("took_ms", time.Since(start).Milliseconds()).Msg("old request logs deleted")
		}
		if sleep(ctx, r.cfg.Every) != nil {
			return nil
		}
	}
}

// Pass deletes the logs older than the retention in force, if any, and returns how many.
func (r *Retention) Pass(ctx context.Context) (int64, error) {
	days := r.days()
	if days <= 0 {
		return 0, nil
	}
	return r.DeleteBefore(ctx, r.cfg.Now().Add(-time.Duration(days)*24*time.Hour))
}

// DeleteBefore deletes the logs older than cutoff, BatchRows per transaction, and
// returns how many it deleted.
func (r *Retention) DeleteBefore(ctx context.Context, cutoff time.Time) (int64, error) {
	var total int64
	cutoff = cutoff.UTC()
	for {
		var res interface{ RowsAffected() (int64, error) }
		var err error
		if r.db.Dialect().Name() == dialect.MySQL {
			// MySQL takes a LIMIT on DELETE, but none in an IN subquery.
			res, err = r.db.NewDelete().Model((*sqlstore.RequestLog)(nil)).
				Where("? < ?", bun.Ident("timestamp"), cutoff).
				OrderExpr("?", bun.Ident("timestamp")).Limit(int64(r.cfg.BatchRows)).Exec(ctx)
		} else {
			sub := r.db.NewSelect().Model((*sqlstore.RequestLog)(nil)).Column("id").
				Where("? < ?", bun.Ident("timestamp"), cutoff).Limit(int64(r.cfg.BatchRows))
			res, err = r.db.NewDelete().Model((*sqlstore.RequestLog)(nil)).
				Where("id IN (?)", sub).Exec(ctx)
		}
		if err != nil {
			return total, fmt.Errorf("delete request logs before %s: %w", cutoff.Format(time.RFC3339), err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, err
		}
		total += n
		if n < int64(r.cfg.BatchRows) {
			return total, nil
		}
		if err := sleep(ctx, r.cfg.Pause); err != nil {
			return total, err
		}
	}
}
