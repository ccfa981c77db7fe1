package sqllog_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"gpt-load/projections/sqllog"
	"gpt-load/projections/sqlstore/sqlstoretest"
)

// base is the time of the hand-made logs: an hour start, so hourly figures are exact.
var base = time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)

// logAt is a log at base + minute minutes, with the fields tests filter on.
func logAt(id string, minute int, mod func(*sqllog.LogRow)) sqllog.LogRow {
	r := sqllog.LogRow{
		ID: id, Timestamp: base.Add(time.Duration(minute) * time.Minute),
		GroupID: 1, GroupName: "alpha", KeyHash: "h-" + id, KeyValue: "v-" + id, Model: "gpt-4o",
		IsSuccess: true, SourceIP: "10.0.0.1", StatusCode: 200, RequestType: "final",
		RequestPath: "/v1/chat/completions",
	}
	if mod != nil {
		mod(&r)
	}
	return r
}

func insert(t *testing.T, db *bun.DB, v any) {
	t.Helper()
	if _, err := db.NewInsert().Model(v).Exec(context.Background()); err != nil {
		t.Fatalf("insert: %v", err)
	}
}

func ids(rows []sqllog.LogRow) []string {
	out := []string{}
	for _, r := range rows {
		out = append(out, r.ID)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// testLogs holds logs chosen so that every filter keeps a known subset.
func testLogs() []sqllog.LogRow {
	return []sqllog.LogRow{
		logAt("a1", 1, nil),
		logAt("a2", 2, func(r *sqllog.LogRow) {
			r.GroupID, r.GroupName, r.ParentGroupID, r.ParentGroupName = 2, "beta", 9, "agg"
			r.Model = "claude-3-opus"
		}),
		logAt("a3", 3, func(r *sqllog.LogRow) {
			r.IsSuccess, r.StatusCode, r.ErrorMessage, r.RequestType = false, 429, "quota 50% used_up", "retry"
		}),
		logAt("a4", 4, func(r *sqllog.LogRow) {
			r.IsSuccess, r.StatusCode, r.ErrorMessage = false, 500, "upstream 500 error"
			r.SourceIP, r.ProxyKeyFP, r.ProxyKeyName = "10.0.0.2", "abcdef012345", "global"
		}),
		logAt("a5", 5, func(r *sqllog.LogRow) {
			r.GroupID, r.GroupName, r.Model, r.KeyHash = 3, "gamma", "GPT-4o-mini", "h-a1"
		}),
		// Same timestamp as a5: order between them is by id, descending.
		logAt("a6", 5, func(r *sqllog.LogRow) { r.Model = "gemini-pro" }),
	}
}

func TestLogQueries(t *testing.T) {
	sqlstoretest.EachDB(t, func(t *testing.T, dsn string, _ *bun.DB) {
		db := sqlstoretest.Migrated(t, dsn)
		rows := testLogs()
		insert(t, db, &rows)
		q := sqllog.NewQueries(db)
		ctx := context.Background()

		cases := []struct {
			name string
			f    sqllog.LogFilter
			want []string
		}{
			{"none", sqllog.LogFilter{}, []string{"a6", "a5", "a4", "a3", "a2", "a1"}},
			{"group", sqllog.LogFilter{GroupIDs: []uint64{2}}, []string{"a2"}},
			{"groups merged", sqllog.LogFilter{GroupIDs: []uint64{1, 3}}, []string{"a6", "a5", "a4", "a3", "a1"}},
			{"no group", sqllog.LogFilter{GroupIDs: []uint64{}}, []string{}},
			{"parent", sqllog.LogFilter{ParentGroupIDs: []uint64{9}}, []string{"a2"}},
			{"model substring, any case", sqllog.LogFilter{Model: "gpt-4O"}, []string{"a5", "a4", "a3", "a1"}},
			{"model none", sqllog.LogFilter{Model: "llama"}, []string{}},
			{"error contains", sqllog.LogFilter{ErrorContains: "UPSTREAM"}, []string{"a4"}},
			{"error wildcard literal", sqllog.LogFilter{ErrorContains: "50%"}, []string{"a3"}},
			{"error underscore literal", sqllog.LogFilter{ErrorContains: "d_u"}, []string{"a3"}},
			{"key hash", sqllog.LogFilter{KeyHash: "h-a1"}, []string{"a5", "a1"}},
			{"failed", sqllog.LogFilter{IsSuccess: ptr(false)}, []string{"a4", "a3"}},
			{"succeeded", sqllog.LogFilter{IsSuccess: ptr(true)}, []string{"a6", "a5", "a2", "a1"}},
			{"retry", sqllog.LogFilter{RequestType: "retry"}, []string{"a3"}},
			{"status", sqllog.LogFilter{StatusCode: ptr(429)}, []string{"a3"}},
			{"source ip", sqllog.LogFilter{SourceIP: "10.0.0.2"}, []string{"a4"}},
			{"proxy key", sqllog.LogFilter{ProxyKeyFP: "abcdef012345"}, []string{"a4"}},
			{"inclusive range", sqllog.LogFilter{Start: base.Add(2 * time.Minute), End: base.Add(4 * time.Minute)}, []string{"a4", "a3", "a2"}},
			{"combined", sqllog.LogFilter{GroupIDs: []uint64{1}, IsSuccess: ptr(false), Start: base.Add(4 * time.Minute)}, []string{"a4"}},
		}
		for _, c := range cases {
			got, err := q.Logs(ctx, c.f, 0, 100)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if !slices.Equal(ids(got), c.want) {
				t.Errorf("%s: got %v, want %v", c.name, ids(got), c.want)
			}
			n, capped, err := q.CountLogs(ctx, c.f, 100)
			if err != nil || n != len(c.want) || capped {
				t.Errorf("%s: count %d capped %v err %v, want %d", c.name, n, capped, err, len(c.want))
			}
		}

		// Pages, with and without a fan-out over several groups.
		for _, f := range []sqllog.LogFilter{{}, {GroupIDs: []uint64{1, 2, 3}}} {
			got, err := q.Logs(ctx, f, 2, 3)
			if err != nil || !slices.Equal(ids(got), []string{"a4", "a3", "a2"}) {
				t.Errorf("page of %+v: %v %v", f, ids(got), err)
			}
			got, err = q.Logs(ctx, f, 6, 3)
			if err != nil || len(got) != 0 {
				t.Errorf("page past the end of %+v: %v %v", f, ids(got), err)
			}
		}

		n, capped, err := q.CountLogs(ctx, sqllog.LogFilter{}, 4)
		if err != nil || n != 4 || !capped {
			t.Errorf("capped count: %d %v %v", n, capped, err)
		}
		n, capped, err = q.CountLogs(ctx, sqllog.LogFilter{}, 6)
		if err != nil || n != 6 || capped {
			t.Errorf("count at the cap: %d %v %v", n, capped, err)
		}

		// Every row once, in order, across batch boundaries that split equal timestamps.
		for _, batch := range []int{1, 2, 5, 100} {
			var seen []string
			err := q.EachLog(ctx, sqllog.LogFilter{}, batch, func(r *sqllog.LogRow) error {
				seen = append(seen, r.ID)
				return nil
			})
			if err != nil || !slices.Equal(seen, []string{"a6", "a5", "a4", "a3", "a2", "a1"}) {
				t.Errorf("EachLog batch %d: %v %v", batch, seen, err)
			}
		}

		// Distinct keys: h-a1 appears twice (a1, a5): the newest log (a5) speaks for it.
		var keys []string
		err = q.EachDistinctKey(ctx, sqllog.LogFilter{}, func(k sqllog.KeyRow) error {
			keys = append(keys, fmt.Sprintf("%s/%s/%s/%d", k.KeyHash, k.KeyValue, k.GroupName, k.StatusCode))
			return nil
		})
		want := []string{"h-a1/v-a5/gamma/200", "h-a2/v-a2/beta/200", "h-a3/v-a3/alpha/429", "h-a4/v-a4/alpha/500", "h-a6/v-a6/alpha/200"}
		if err != nil || !slices.Equal(keys, want) {
			t.Errorf("distinct keys: %v %v\nwant %v", keys, err, want)
		}

		// Final requests in [from, to): a3 is a retry, a1 is before from.
		c, err := q.CountFinal(ctx, base.Add(2*time.Minute), base.Add(5*time.Minute))
		if err != nil || c != 2 {
			t.Errorf("CountFinal: %d %v, want 2 (a2, a4)", c, err)
		}
	})
}

// The aggregates, written by hand the way the projector writes them.
type hourlyStat struct {
	bun.BaseModel    `bun:"table:group_hourly_stats"`
	Time             time.Time `bun:"time"`
	GroupID          uint64    `bun:"group_id"`
	SuccessCount     int64     `bun:"success_count"`
	FailureCount     int64     `bun:"failure_count"`
	PromptTokens     int64     `bun:"prompt_tokens"`
	CompletionTokens int64     `bun:"completion_tokens"`
	TotalTokens      int64     `bun:"total_tokens"`
}

type keyUsage struct {
	bun.BaseModel `bun:"table:key_usage"`
	GroupID       uint64    `bun:"group_id"`
	KeyHash       string    `bun:"key_hash"`
	KeyID         uint64    `bun:"key_id"`
	RequestCount  int64     `bun:"request_count"`
	LastUsedAt    time.Time `bun:"last_used_at"`
}

type usageHourly struct {
	bun.BaseModel    `bun:"table:usage_hourly"`
	Time             time.Time `bun:"time"`
	GroupID          uint64    `bun:"group_id"`
	ParentGroupID    uint64    `bun:"parent_group_id"`
	Model            string    `bun:"model"`
	ProxyKeyFP       string    `bun:"proxy_key_fp"`
	KeyID            uint64    `bun:"key_id"`
	ProxyKeyName     string    `bun:"proxy_key_name"`
	ProxyKeyID       uint64    `bun:"proxy_key_id"`
	Requests         int64     `bun:"requests"`
	Failures         int64     `bun:"failures"`
	PromptTokens     int64     `bun:"prompt_tokens"`
	CompletionTokens int64     `bun:"completion_tokens"`
	TotalTokens      int64     `bun:"total_tokens"`
}

func TestAggregateQueries(t *testing.T) {
	sqlstoretest.EachDB(t, func(t *testing.T, dsn string, _ *bun.DB) {
		db := sqlstoretest.Migrated(t, dsn)
		ctx := context.Background()
		h := func(n int) time.Time { return base.Add(time.Duration(n) * time.Hour) }
		stats := []hourlyStat{
			{Time: h(0), GroupID: 1, SuccessCount: 3, FailureCount: 1, PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15},
			{Time: h(0), GroupID: 2, SuccessCount: 2, TotalTokens: 7},
			{Time: h(1), GroupID: 1, FailureCount: 4},
			{Time: h(5), GroupID: 2, SuccessCount: 1},
		}
		insert(t, db, &stats)
		q := sqllog.NewQueries(db)

		rows, err := q.Hourly(ctx, nil, h(0), h(5))
		if err != nil {
			t.Fatal(err)
		}
		got := []string{}
		for _, r := range rows {
			got = append(got, fmt.Sprintf("%s %d/%d/%d", r.Time.UTC().Format("15"), r.Success, r.Failure, r.TotalTokens))
		}
		if want := []string{"10 5/1/22", "11 0/4/0"}; !slices.Equal(got, want) {
			t.Errorf("hourly, all groups: %v, want %v", got, want)
		}
		rows, err = q.Hourly(ctx, []uint64{2}, h(0), h(6))
		if err != nil || len(rows) != 2 || rows[0].Success != 2 || rows[1].Success != 1 || !rows[1].Time.Equal(h(5)) {
			t.Errorf("hourly, group 2: %+v %v", rows, err)
		}
		if rows, err := q.Hourly(ctx, []uint64{}, h(0), h(6)); err != nil || len(rows) != 0 {
			t.Errorf("hourly, no group: %+v %v", rows, err)
		}

		used := h(0).Add(17 * time.Minute)
		insert(t, db, &[]keyUsage{
			{GroupID: 1, KeyHash: "k1", KeyID: 11, RequestCount: 7, LastUsedAt: used},
			{GroupID: 2, KeyHash: "k1", KeyID: 21, RequestCount: 1, LastUsedAt: used},
		})
		ku, err := q.KeyUsage(ctx, 1, []string{"k1", "k2"})
		if err != nil || len(ku) != 1 || ku["k1"].RequestCount != 7 || !ku["k1"].LastUsedAt.Equal(used) {
			t.Errorf("key usage: %+v %v", ku, err)
		}

		insert(t, db, &[]usageHourly{
			{Time: h(0), GroupID: 1, Model: "m1", ProxyKeyFP: "fp1", ProxyKeyName: "global", KeyID: 11, Requests: 3, Failures: 1, PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15},
			{Time: h(1), GroupID: 1, Model: "m2", ProxyKeyFP: "fp2", ProxyKeyName: "group", KeyID: 12, Requests: 1, TotalTokens: 4},
			{Time: h(1), GroupID: 2, ParentGroupID: 9, Model: "m1", ProxyKeyFP: "fp1", ProxyKeyName: "global", KeyID: 21, Requests: 5, TotalTokens: 50},
			{Time: h(30), GroupID: 1, Model: "m1", ProxyKeyFP: "fp1", KeyID: 11, Requests: 2, TotalTokens: 2},
		})
		usage := func(uq sqllog.UsageQuery) []string {
			t.Helper()
			if uq.From.IsZero() {
				uq.From, uq.To = h(0), h(48)
			}
			rows, err := q.Usage(ctx, uq)
			if err != nil {
				t.Fatalf("usage %+v: %v", uq, err)
			}
			out := []string{}
			for _, r := range rows {
				out = append(out, fmt.Sprintf("%s|%s|%d|%d|%s|%d/%d/%d", r.Time.UTC().Format("02T15"), r.Model, r.GroupID, r.KeyID, r.ProxyKeyFP, r.Requests, r.Failures, r.TotalTokens))
			}
			return out
		}
		checks := []struct {
			name string
			uq   sqllog.UsageQuery
			want []string
		}{
			{"hour", sqllog.UsageQuery{By: sqllog.ByHour}, []string{"30T10||0|0||3/1/15", "30T11||0|0||6/0/54", "01T16||0|0||2/0/2"}},
			{"day", sqllog.UsageQuery{By: sqllog.ByDay}, []string{"30T00||0|0||9/1/69", "01T00||0|0||2/0/2"}},
			{"model", sqllog.UsageQuery{By: sqllog.ByModel}, []string{"01T00|m1|0|0||10/1/67", "01T00|m2|0|0||1/0/4"}},
			{"key", sqllog.UsageQuery{By: sqllog.ByKey}, []string{"01T00||1|11||5/1/17", "01T00||2|21||5/0/50", "01T00||1|12||1/0/4"}},
			{"proxy key", sqllog.UsageQuery{By: sqllog.ByProxyKey}, []string{"01T00||0|0|fp1|10/1/67", "01T00||0|0|fp2|1/0/4"}},
			{"group", sqllog.UsageQuery{By: sqllog.ByModel, GroupID: 1}, []string{"01T00|m1|0|0||5/1/17", "01T00|m2|0|0||1/0/4"}},
			{"aggregate", sqllog.UsageQuery{By: sqllog.ByModel, GroupID: 9}, []string{"01T00|m1|0|0||5/0/50"}},
			{"proxy key filter", sqllog.UsageQuery{By: sqllog.ByHour, ProxyKeyFP: "fp2"}, []string{"30T11||0|0||1/0/4"}},
			{"window", sqllog.UsageQuery{By: sqllog.ByModel, From: h(1), To: h(2)}, []string{"01T00|m1|0|0||5/0/50", "01T00|m2|0|0||1/0/4"}},
		}
		for _, c := range checks {
			got := usage(c.uq)
			// Groupings without a time leave it zero: format it the same way.
			for i := range c.want {
				if c.uq.By != sqllog.ByHour && c.uq.By != sqllog.ByDay {
					c.want[i] = time.Time{}.Format("02T15") + c.want[i][5:]
				}
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("usage by %s: %v\nwant %v", c.name, got, c.want)
			}
		}
		if _, err := q.Usage(ctx, sqllog.UsageQuery{By: "week", From: h(0), To: h(1)}); err == nil {
			t.Error("an unknown grouping is accepted")
		}

		// A named key is one line across a rotation (two fingerprints, one id).
		insert(t, db, &[]usageHourly{
			{Time: h(2), GroupID: 1, Model: "m1", ProxyKeyFP: "fp3", ProxyKeyName: "team", ProxyKeyID: 5, KeyID: 11, Requests: 4, TotalTokens: 40},
			{Time: h(3), GroupID: 1, Model: "m1", ProxyKeyFP: "fp4", ProxyKeyName: "team", ProxyKeyID: 5, KeyID: 11, Requests: 2, TotalTokens: 20},
		})
		named, err := q.Usage(ctx, sqllog.UsageQuery{By: sqllog.ByProxyKey, From: h(0), To: h(48)})
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, r := range named {
			lines = append(lines, fmt.Sprintf("%d|%s|%s|%d/%d", r.ProxyKeyID, r.ProxyKeyFP, r.ProxyKeyName, r.Requests, r.TotalTokens))
		}
		if want := []string{"0|fp1|global|10/67", "5||team|6/60", "0|fp2|group|1/4"}; !slices.Equal(lines, want) {
			t.Errorf("usage by proxy key with a rotated named key: %v, want %v", lines, want)
		}
		only, err := q.Usage(ctx, sqllog.UsageQuery{By: sqllog.ByHour, ProxyKeyID: 5, From: h(0), To: h(48)})
		if err != nil || len(only) != 2 || only[0].TotalTokens != 40 || only[1].TotalTokens != 20 {
			t.Errorf("usage of proxy key 5 by hour: %+v %v", only, err)
		}
	})
}
