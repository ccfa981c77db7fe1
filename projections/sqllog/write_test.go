package sqllog_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"gpt-load/domain"
	"gpt-load/projections/sqllog"
	"gpt-load/projections/sqlstore"
	"gpt-load/projections/sqlstore/sqlstoretest"
)

// hour0 is the hour of the generated records.
var hour0 = time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)

// genLog is record i of a generated set: groups 1..3, every fifth through aggregate 9,
// every fourth a failed retry, every seventh a failed final answer, keys k0..k4, proxy
// keys p0/p1, two models, tokens on the successes, spread over two hours.
func genLog(i int) domain.RequestLog {
	r := domain.RequestLog{
		ID:        fmt.Sprintf("00000000-0000-4000-8000-%012d", i),
		Timestamp: hour0.Add(time.Duration(i%120) * time.Minute).Add(time.Duration(i) * time.Microsecond),
		GroupID:   uint64(i%3 + 1), GroupName: fmt.Sprintf("g%d", i%3+1),
		KeyID: uint64(i%5 + 100), KeyValue: fmt.Sprintf("sealed-%d", i%5), KeyHash: fmt.Sprintf("hash-%d", i%5),
		Model: []string{"gpt-4o", "claude-3"}[i%2], IsSuccess: true, StatusCode: 200,
		RequestPath: "/proxy/g/v1/chat/completions", RequestType: domain.RequestFinal,
		ProxyKeyFP: domain.ProxyKeyFingerprint(fmt.Sprintf("proxy-%d", i%2)), ProxyKeyName: domain.ProxyKeyGlobal,
		DurationMS: int64(i),
	}
	if i%5 == 0 {
		r.ParentGroupID, r.ParentGroupName = 9, "agg"
	}
	switch {
	case i%4 == 1:
		r.RequestType, r.IsSuccess, r.StatusCode = domain.RequestRetry, false, 503
	case i%7 == 3:
		r.IsSuccess, r.StatusCode, r.ErrorMessage = false, 401, "invalid key"
	default:
		r.PromptTokens, r.CompletionTokens, r.TotalTokens = 10, int64(i%9), 10+int64(i%9)
	}
	return r
}

func genLogs(from, to int) []domain.RequestLog {
	var out []domain.RequestLog
	for i := from; i < to; i++ {
		out = append(out, genLog(i))
	}
	return out
}

// aggregates is what request_logs, group_hourly_stats, key_usage and usage_hourly hold,
// reduced to comparable sums.
type aggregates struct {
	Rows     int64
	Hourly   map[string][5]int64 // "hour group" → success, failure, prompt, completion, total
	KeyUsage map[string]int64    // "group hash" → request_count
	KeyLast  map[string]time.Time
	Usage    map[string][5]int64 // "hour group parent model fp key" → requests, failures, prompt, completion, total
}

// expect computes the aggregates of recs by hand (API.md 9.2).
func expect(recs []domain.RequestLog) aggregates {
	a := aggregates{Hourly: map[string][5]int64{}, KeyUsage: map[string]int64{}, KeyLast: map[string]time.Time{}, Usage: map[string][5]int64{}}
	seen := map[string]bool{}
	for _, r := range recs {
		if seen[r.ID] {
			continue
		}
		seen[r.ID] = true
		a.Rows++
		hour := r.Timestamp.UTC().Truncate(time.Hour)
		groups := []uint64{r.GroupID}
		if r.ParentGroupID != 0 {
			groups = append(groups, r.ParentGroupID)
		}
		for _, g := range groups {
			k := fmt.Sprintf("%s %d", hour.Format(time.RFC3339), g)
			v := a.Hourly[k]
			if r.RequestType != domain.RequestRetry {
				if r.IsSuccess {
					v[0]++
				} else {
					v[1]++
				}
			}
			v[2] += r.PromptTokens
			v[3] += r.CompletionTokens
			v[4] += r.TotalTokens
			a.Hourly[k] = v
		}
		if r.IsSuccess && r.KeyHash != "" {
			k := fmt.Sprintf("%d %s", r.GroupID, r.KeyHash)
			a.KeyUsage[k]++
			if r.Timestamp.After(a.KeyLast[k]) {
				a.KeyLast[k] = r.Timestamp
			}
		}
		k := fmt.Sprintf("%s %d %d %s %s %d", hour.Format(time.RFC3339), r.GroupID, r.ParentGroupID, r.Model, r.ProxyKeyFP, r.KeyID)
		v := a.Usage[k]
		if r.RequestType != domain.RequestRetry {
			v[0]++
			if !r.IsSuccess {
				v[1]++
			}
		}
		v[2] += r.PromptTokens
		v[3] += r.CompletionTokens
		v[4] += r.TotalTokens
		a.Usage[k] = v
	}
	return a
}

// readAggregates reads what the database holds.
func readAggregates(t *testing.T, db *bun.DB) aggregates {
	t.Helper()
	ctx := context.Background()
	a := aggregates{Hourly: map[string][5]int64{}, KeyUsage: map[string]int64{}, KeyLast: map[string]time.Time{}, Usage: map[string][5]int64{}}
	a.Rows = sqlstoretest.Count(t, db, "request_logs")
	var dups []string
	if err := db.NewSelect().Model((*sqlstore.RequestLog)(nil)).Column("id").Group("id").Having("COUNT(*) > 1").
		Scan(ctx, &dups); err != nil || len(dups) > 0 {
		t.Fatalf("duplicate ids %v (%v)", dups, err)
	}
	var hourly []sqlstore.GroupHourlyStat
	if err := db.NewSelect().Model(&hourly).Scan(ctx); err != nil {
		t.Fatal(err)
	}
	for _, h := range hourly {
		a.Hourly[fmt.Sprintf("%s %d", h.Time.UTC().Format(time.RFC3339), h.GroupID)] =
			[5]int64{h.SuccessCount, h.FailureCount, h.PromptTokens, h.CompletionTokens, h.TotalTokens}
	}
	var keys []sqlstore.KeyUsage
	if err := db.NewSelect().Model(&keys).Scan(ctx); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		key := fmt.Sprintf("%d %s", k.GroupID, k.KeyHash)
		a.KeyUsage[key] = k.RequestCount
		a.KeyLast[key] = k.LastUsedAt
	}
	var usage []sqlstore.UsageHourly
	if err := db.NewSelect().Model(&usage).Scan(ctx); err != nil {
		t.Fatal(err)
	}
	for _, u := range usage {
		a.Usage[fmt.Sprintf("%s %d %d %s %s %d", u.Time.UTC().Format(time.RFC3339), u.GroupID, u.ParentGroupID, u.Model, u.ProxyKeyFP, u.KeyID)] =
			[5]int64{u.Requests, u.Failures, u.PromptTokens, u.CompletionTokens, u.TotalTokens}
	}
	return a
}

func checkAggregates(t *testing.T, db *bun.DB, want aggregates) {
	t.Helper()
	got := readAggregates(t, db)
	if got.Rows != want.Rows {
		t.Errorf("request_logs holds %d rows, want %d", got.Rows, want.Rows)
	}
	cmpMap(t, "group_hourly_stats", got.Hourly, want.Hourly)
	cmpMap(t, "key_usage", got.KeyUsage, want.KeyUsage)
	cmpMap(t, "usage_hourly", got.Usage, want.Usage)
	for k, w := range want.KeyLast {
		if g := got.KeyLast[k]; g.Sub(w).Abs() >= time.Microsecond {
			t.Errorf("key_usage %s last_used_at %s, want %s", k, g, w)
		}
	}
}

func cmpMap[V comparable](t *testing.T, name string, got, want map[string]V) {
	t.Helper()
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("%s[%s] = %v, want %v", name, k, g, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s[%s] = %v, not expected", name, k, g)
		}
	}
}

func TestWriter(t *testing.T) {
	sqlstoretest.EachDB(t, func(t *testing.T, dsn string, _ *bun.DB) {
		db := sqlstoretest.Migrated(t, dsn)
		w := sqllog.NewWriter(db)
		ctx := t.Context()
		first := genLogs(0, 300)

		t.Run("rows and aggregates", func(t *testing.T) {
			n, err := w.Write(ctx, first)
			if err != nil || n != len(first) {
				t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(first))
			}
			checkAggregates(t, db, expect(first))
			var got sqlstore.RequestLog
			if err := db.NewSelect().Model(&got).Where("id = ?", first[7].ID).Scan(ctx); err != nil {
				t.Fatal(err)
			}
			want := first[7]
			if got.KeyValue != want.KeyValue || got.KeyHash != want.KeyHash || got.ProxyKeyFP != want.ProxyKeyFP ||
				got.ProxyKeyName != want.ProxyKeyName || got.TotalTokens != want.TotalTokens || !got.Timestamp.Equal(want.Timestamp) {
				t.Errorf("row %+v does not match record %+v", got, want)
			}
		})

		t.Run("a batch written again counts nothing", func(t *testing.T) {
			n, err := w.Write(ctx, first)
			if err != nil || n != 0 {
				t.Fatalf("Write again = %d, %v; want 0, nil", n, err)
			}
			checkAggregates(t, db, expect(first))
		})

		t.Run("an overlapping batch counts only its new logs", func(t *testing.T) {
			n, err := w.Write(ctx, genLogs(250, 400))
			if err != nil || n != 100 {
				t.Fatalf("Write = %d, %v; want 100, nil", n, err)
			}
			checkAggregates(t, db, expect(genLogs(0, 400)))
		})

		t.Run("nodes writing the same batches at once count each log once", func(t *testing.T) {
			// Each writer stands for a node that received the same messages (a
			// redelivery while the first node was still writing).
			const writers = 4
			var wg sync.WaitGroup
			errs := make(chan error, writers*10)
			total := make(chan int, writers*10)
			for range writers {
				other := sqllog.NewWriter(sqlstoretest.Open(t, dsn))
				wg.Go(func() {
					for b := range 10 {
						n, err := other.Write(ctx, genLogs(400+b*50, 400+(b+1)*50+10))
						errs <- err
						total <- n
					}
				})
			}
			wg.Wait()
			close(errs)
			close(total)
			for err := range errs {
				if err != nil {
					t.Fatalf("concurrent Write: %v", err)
				}
			}
			sum := 0
			for n := range total {
				sum += n
			}
			if sum != 510 {
				t.Errorf("the writers report %d new logs together, want 510", sum)
			}
			checkAggregates(t, db, expect(genLogs(0, 910)))
		})

		t.Run("text is cut to its columns and NUL removed", func(t *testing.T) {
			r := genLog(5000)
			r.GroupName = strings.Repeat("é", 200) // 400 bytes
			r.ErrorMessage = "before\x00after"
			r.Model = "m\x00"
			if _, err := w.Write(ctx, []domain.RequestLog{r}); err != nil {
				t.Fatalf("Write: %v", err)
			}
			var got sqlstore.RequestLog
			if err := db.NewSelect().Model(&got).Where("id = ?", r.ID).Scan(ctx); err != nil {
				t.Fatal(err)
			}
			if got.ErrorMessage != "beforeafter" || got.Model != "m" {
				t.Errorf("stored error %q, model %q", got.ErrorMessage, got.Model)
			}
			if want := strings.Repeat("é", 127); got.GroupName != want {
				t.Errorf("stored group name of %d bytes, want %d", len(got.GroupName), len(want))
			}
		})
	})
}
