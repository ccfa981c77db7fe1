package sqllog_test

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/uptrace/bun"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/projections/sqllog"
	"gpt-load/projections/sqlstore/sqlstoretest"
)

// benchDialects are the databases the benchmarks run on: SQLite, and PostgreSQL when
// TEST_POSTGRES_DSN is set.
func benchDialects(b *testing.B, f func(b *testing.B, name string)) {
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) { f(b, name) })
	}
}

// BenchmarkProjectorSustained fills GL_REQLOG with records packed as the proxy packs
// them (256 per message), then times the projector writing all of them: rows, hourly
// stats, key usage and usage rollup. BENCH_LOGS sets how many (default 200,000). The ids
// and times are the proxy's (domain.NewRequestID; in time order); BENCH_IDS=v4 makes them random
// version-4 UUIDs instead, to compare what the order of the ids costs the indexes.
func BenchmarkProjectorSustained(b *testing.B) {
	total := 200_000
	if v, err := strconv.Atoi(os.Getenv("BENCH_LOGS")); err == nil && v > 0 {
		total = v
	}
	benchDialects(b, func(b *testing.B, name string) {
		for range b.N {
			js := logStream(b)
			db := sqlstoretest.Migrated(b, sqlstoretest.DSN(b, name))
			for i := 0; i < total; i += 256 {
				recs := genLogs(i, min(i+256, total))
				for j := range recs {
					// As the proxy records them: in time order, here 50,000 a second.
					recs[j].Timestamp = hour0.Add(time.Duration(i+j) * 20 * time.Microsecond)
					recs[j].ID = benchID(recs[j].Timestamp)
				}
				publish(b, js, recs)
			}
			start := time.Now()
			p, stop := startProjector(b, js, db, sqllog.Config{}, nil)
			for p.Stats().Written < uint64(total) {
				time.Sleep(5 * time.Millisecond)
			}
			took := time.Since(start)
			stop()
			b.ReportMetric(float64(total)/took.Seconds(), "logs/s")
		}
	})
}

// BenchmarkLogDelay records request logs through the proxy's publisher at about 1,000 a
// second for BENCH_SECONDS (default 10) and measures, for each, the time from its
// record (the end of the request) to its row being readable in SQL.
func BenchmarkLogDelay(b *testing.B) {
	seconds := 10
	if v, err := strconv.Atoi(os.Getenv("BENCH_SECONDS")); err == nil && v > 0 {
		seconds = v
	}
	benchDialects(b, func(b *testing.B, name string) {
		for range b.N {
			js := logStream(b)
			db := sqlstoretest.Migrated(b, sqlstoretest.DSN(b, name))
			startProjector(b, js, db, sqllog.Config{}, nil)
			pub := events.NewReqLogPublisher(js, events.ReqLogConfig{Node: "n1"}, zerolog.Nop())
			defer pub.Close(context.Background())

			total := seconds * 1000
			go func() {
				tick := time.NewTicker(time.Millisecond)
				defer tick.Stop()
				for i := range total {
					<-tick.C
					r := genLog(i)
					r.KeyValue = ""
					r.Timestamp = time.Now()
					pub.Record(&r)
				}
			}()
			// Poll for new rows; a row's delay is when it was first seen minus its record.
			var delays []time.Duration
			seen := 0
			got := map[string]struct{}{}
			last := time.Now().Add(-time.Minute)
			deadline := time.Now().Add(time.Duration(seconds)*time.Second + 30*time.Second)
			for seen < total && time.Now().Before(deadline) {
				var rows []struct {
					ID        string    `bun:"id"`
					Timestamp time.Time `bun:"timestamp"`
				}
				if err := db.NewSelect().Table("request_logs").Column("id", "timestamp").
					Where("? > ?", bun.Ident("timestamp"), last.Add(-time.Second)).Scan(context.Background(), &rows); err != nil {
					b.Fatal(err)
				}
				now := time.Now()
				for _, r := range rows {
					if _, dup := got[r.ID]; dup {
						continue
					}
					got[r.ID] = struct{}{}
					seen++
					delays = append(delays, now.Sub(r.Timestamp))
					if r.Timestamp.After(last) {
						last = r.Timestamp
					}
				}
				time.Sleep(2 * time.Millisecond)
			}
			if seen != total {
				b.Fatalf("%d of %d rows seen", seen, total)
			}
			slices.Sort(delays)
			b.ReportMetric(float64(delays[len(delays)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(delays[len(delays)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(delays[len(delays)-1].Microseconds())/1000, "max-ms")
		}
	})
}

// benchID is a request-log id as the proxy makes it, or a random version-4 UUID when
// BENCH_IDS=v4.
func benchID(t time.Time) string {
	if os.Getenv("BENCH_IDS") != "v4" {
		return domain.NewRequestID(t)
	}
	var b [16]byte
	_, _ = crand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
