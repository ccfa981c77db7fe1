package sqllog_test

import (
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/uptrace/bun"

	"gpt-load/projections/sqllog"
	"gpt-load/projections/sqlstore/sqlstoretest"
)

func TestRetention(t *testing.T) {
	sqlstoretest.EachDB(t, func(t *testing.T, dsn string, _ *bun.DB) {
		db := sqlstoretest.Migrated(t, dsn)
		all := genLogs(0, 1200) // spread over 2026-12-01 08:00–10:00 UTC
		if _, err := sqllog.NewWriter(db).Write(t.Context(), all); err != nil {
			t.Fatal(err)
		}
		cutoff := hour0.Add(time.Hour) // half of them are older
		var older int64
		for _, r := range all {
			if r.Timestamp.Before(cutoff) {
				older++
			}
		}
		hourly := sqlstoretest.Count(t, db, "group_hourly_stats")
		usage := sqlstoretest.Count(t, db, "usage_hourly")

		t.Run("0 keeps everything", func(t *testing.T) {
			r := sqllog.NewRetention(db, func() int { return 0 }, sqllog.RetentionConfig{
				Now: func() time.Time { return hour0.Add(1000 * 24 * time.Hour) },
			}, zerolog.Nop())
			if n, err := r.Pass(t.Context()); n != 0 || err != nil {
				t.Errorf("Pass = %d, %v; want 0, nil", n, err)
			}
			if n := sqlstoretest.Count(t, db, "request_logs"); n != int64(len(all)) {
				t.Errorf("%d rows left, want all %d", n, len(all))
			}
		})

		t.Run("deletes old logs in small batches and keeps the aggregates", func(t *testing.T) {
			r := sqllog.NewRetention(db, func() int { return 2 }, sqllog.RetentionConfig{
				BatchRows: 100, Pause: time.Millisecond,
				Now: func() time.Time { return cutoff.Add(2 * 24 * time.Hour) },
			}, zerolog.Nop())
			n, err := r.DeleteBefore(t.Context(), cutoff)
			if err != nil || n != older {
				t.Fatalf("DeleteBefore = %d, %v; want %d, nil", n, err, older)
			}
			if left := sqlstoretest.Count(t, db, "request_logs"); left != int64(len(all))-older {
				t.Errorf("%d rows left, want %d", left, int64(len(all))-older)
			}
			if h, u := sqlstoretest.Count(t, db, "group_hourly_stats"), sqlstoretest.Count(t, db, "usage_hourly"); h != hourly || u != usage {
				t.Errorf("aggregates changed: %d hourly rows (was %d), %d usage rows (was %d)", h, hourly, u, usage)
			}
			// A pass by the setting (2 days before "now" is the same cutoff) finds nothing more.
			if n, err := r.Pass(t.Context()); n != 0 || err != nil {
				t.Errorf("Pass = %d, %v; want 0, nil", n, err)
			}
			if left := sqlstoretest.Count(t, db, "request_logs"); left != int64(len(all))-older {
				t.Errorf("%d rows left after the job, want %d", left, int64(len(all))-older)
			}
		})
	})
}
