package httpapi_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"gpt-load/domain"
	"gpt-load/httpapi"
	"gpt-load/projections/sqllog"
	"gpt-load/projections/sqlstore"
	"gpt-load/projections/sqlstore/sqlstoretest"
)

// logNow is the clock of the log tests: half past an hour, so windows cut hours in two.
var logNow = time.Date(2026, 11, 30, 12, 30, 0, 0, time.UTC)

// startLogNode is a node whose API reads request logs from db, with the clock at logNow.
func startLogNode(t *testing.T, db *bun.DB, o nodeOpts) *testNode {
	t.Helper()
	o.deps = func(d *httpapi.Deps) {
		d.Logs = sqllog.NewQueries(db)
		d.Now = func() time.Time { return logNow }
	}
	return startNode(t, o)
}

func insertRows(t *testing.T, db *bun.DB, v any) {
	t.Helper()
	if _, err := db.NewInsert().Model(v).Exec(context.Background()); err != nil {
		t.Fatalf("insert: %v", err)
	}
}

// logRow is a final, successful log of group gid at logNow − ago.
func logRow(id string, gid uint64, group string, ago time.Duration) sqllog.LogRow {
	return sqllog.LogRow{ID: id, Timestamp: logNow.Add(-ago), GroupID: gid, GroupName: group, Model: "gpt-4o",
		IsSuccess: true, StatusCode: 200, RequestType: "final", SourceIP: "10.0.0.1"}
}

type logsPage struct {
	Items []struct {
		ID               string    `json:"id"`
		Timestamp        time.Time `json:"timestamp"`
		GroupName        string    `json:"group_name"`
		KeyValue         string    `json:"key_value"`
		KeyHash          string    `json:"key_hash"`
		TotalTokens      int64     `json:"total_tokens"`
		ProxyKeyFP       string    `json:"proxy_key_fp"`
		ProxyKeyName     string    `json:"proxy_key_name"`
		ParentGroupName  string    `json:"parent_group_name"`
		PromptTokens     int64     `json:"prompt_tokens"`
		CompletionTokens int64     `json:"completion_tokens"`
	} `json:"items"`
	Pagination struct {
		Page       int  `json:"page"`
		PageSize   int  `json:"page_size"`
		TotalItems int  `json:"total_items"`
		TotalPages int  `json:"total_pages"`
		LowerBound bool `json:"total_is_lower_bound"`
	} `json:"pagination"`
}

func (p logsPage) ids() []string {
	out := []string{}
	for _, it := range p.Items {
		out = append(out, it.ID)
	}
	return out
}

func TestLogsAPI(t *testing.T) {
	t.Parallel()
	sqlstoretest.EachDB(t, func(t *testing.T, dsn string, _ *bun.DB) {
		db := sqlstoretest.Migrated(t, dsn)
		n := startLogNode(t, db, nodeOpts{password: "a-long-encryption-key-for-tests"})
		alpha, beta := n.group("alpha"), n.group("beta")
		pool := uint64(0)
		var g struct{ ID uint64 }
		n.do(http.MethodPost, "/api/groups", `{"name":"pool","group_type":"aggregate","channel_type":"openai"}`).ok(t, &g)
		pool = g.ID
		c := n.store.Cipher()
		enc := func(v string) string {
			s, err := c.Encrypt(v)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		fp := domain.ProxyKeyFingerprint("sk-client-key")
		rows := []sqllog.LogRow{
			logRow("l1", alpha, "alpha", 5*time.Minute),
			logRow("l2", beta, "beta", 4*time.Minute),
			logRow("l3", alpha, "alpha", 3*time.Minute),
			logRow("l4", beta, "beta", 2*time.Minute),
		}
		rows[0].KeyValue, rows[0].KeyHash = enc("sk-one"), c.Hash("sk-one").String()
		rows[1].KeyValue, rows[1].KeyHash = "not-a-sealed-value", "deadbeef"
		rows[1].ParentGroupID, rows[1].ParentGroupName = pool, "pool"
		rows[2].KeyValue, rows[2].KeyHash = enc("sk-one"), c.Hash("sk-one").String()
		rows[2].PromptTokens, rows[2].CompletionTokens, rows[2].TotalTokens = 7, 5, 12
		rows[2].ProxyKeyFP, rows[2].ProxyKeyName = fp, "global"
		rows[3].KeyValue, rows[3].KeyHash = enc("sk-two"), c.Hash("sk-two").String()
		rows[3].IsSuccess, rows[3].StatusCode = false, 401
		insertRows(t, db, &rows)

		get := func(query string) logsPage {
			t.Helper()
			var p logsPage
			n.do(http.MethodGet, "/api/logs"+query, nil).ok(t, &p)
			return p
		}
		p := get("")
		if !slices.Equal(p.ids(), []string{"l4", "l3", "l2", "l1"}) || p.Pagination.TotalItems != 4 || p.Pagination.TotalPages != 1 ||
			p.Pagination.PageSize != 15 || p.Pagination.LowerBound {
			t.Fatalf("all logs: %v %+v", p.ids(), p.Pagination)
		}
		byID := map[string]int{}
		for i, it := range p.Items {
			byID[it.ID] = i
		}
		if k := p.Items[byID["l1"]].KeyValue; k != domain.MaskKey("sk-one") {
			t.Errorf("key value shown as %q, want it decrypted and masked (only exports show keys)", k)
		}
		if k := p.Items[byID["l2"]].KeyValue; k != "failed-to-decrypt" {
			t.Errorf("undecryptable key value shown as %q", k)
		}
		if it := p.Items[byID["l3"]]; it.PromptTokens != 7 || it.CompletionTokens != 5 || it.TotalTokens != 12 ||
			it.ProxyKeyFP != fp || it.ProxyKeyName != "global" {
			t.Errorf("tokens and proxy key: %+v", it)
		}
		for query, want := range map[string][]string{
			"?group_name=ALP":             {"l3", "l1"},
			"?group_name=nothing-like-it": {},
			"?parent_group_name=poo":      {"l2"},
			"?key_value=sk-one":           {"l3", "l1"},
			"?is_success=false":           {"l4"},
			"?is_success=maybe":           {"l4", "l3", "l2", "l1"},
			"?status_code=401":            {"l4"},
			"?proxy_key=sk-client-key":    {"l3"},
			"?proxy_key=" + fp:            {"l3"},
			"?page=2&page_size=3":         {"l1"},
			"?start_time=" + logNow.Add(-4*time.Minute).Format(time.RFC3339) + "&end_time=" + logNow.Add(-3*time.Minute).Format(time.RFC3339): {"l3", "l2"},
		} {
			if got := get(query).ids(); !slices.Equal(got, want) {
				t.Errorf("%s: %v, want %v", query, got, want)
			}
		}

		// The key export of gpt-load: one line per distinct key, from its newest log.
		r := n.do(http.MethodGet, "/api/logs/export?group_name=alp", nil)
		if r.code != http.StatusOK || r.header.Get("Content-Type") != "text/csv; charset=utf-8" ||
			r.header.Get("Content-Disposition") != "attachment; filename=log_keys_export_"+logNow.Format("20060102150405")+".csv" {
			t.Fatalf("key export: %d %v", r.code, r.header)
		}
		if got, want := string(r.body), "key_value,group_name,status_code\nsk-one,alpha,200\n"; got != want {
			t.Errorf("key export:\n%s\nwant\n%s", got, want)
		}
		r = n.do(http.MethodGet, "/api/logs/export?distinct=keys&status_code=401", nil)
		if got, want := string(r.body), "key_value,group_name,status_code\nsk-two,beta,401\n"; got != want {
			t.Errorf("key export, distinct=keys:\n%s\nwant\n%s", got, want)
		}
		// Ours: the logs themselves, key values masked.
		r = n.do(http.MethodGet, "/api/logs/export?format=csv-logs", nil)
		recs, err := csv.NewReader(bytes.NewReader(r.body)).ReadAll()
		if err != nil || len(recs) != 5 || recs[0][0] != "id" || recs[1][0] != "l4" || recs[4][0] != "l1" {
			t.Fatalf("log export: %v %q", err, recs)
		}
		if strings.Contains(string(r.body), "sk-one") || strings.Contains(string(r.body), "sk-two") {
			t.Errorf("the log export shows keys in clear:\n%s", r.body)
		}
		n.do(http.MethodGet, "/api/logs/export?format=xml", nil).fails(t, http.StatusBadRequest, "VALIDATION_FAILED")
	})
}

// TestLogsCountIsCapped: past 10,000 matches the total is a lower bound, and says so.
func TestLogsCountIsCapped(t *testing.T) {
	t.Parallel()
	db := sqlstoretest.Migrated(t, sqlstoretest.DSN(t, "sqlite"))
	n := startLogNode(t, db, nodeOpts{})
	rows := make([]sqllog.LogRow, 10_005)
	for i := range rows {
		rows[i] = logRow(fmt.Sprintf("r%05d", i), 1, "alpha", time.Duration(i)*time.Second)
		rows[i].ErrorMessage = "upstream said no"
	}
	for chunk := range slices.Chunk(rows, 1000) {
		insertRows(t, db, &chunk)
	}
	var p logsPage
	n.do(http.MethodGet, "/api/logs", nil).ok(t, &p)
	if p.Pagination.TotalItems != 10_000 || !p.Pagination.LowerBound || p.Items[0].ID != "r00000" {
		t.Errorf("first page: %+v", p.Pagination)
	}
	// A page past the cap counts past it, so it is within the total shown.
	p = logsPage{}
	n.do(http.MethodGet, "/api/logs?page=501&page_size=20", nil).ok(t, &p)
	if p.Pagination.TotalItems != 10_005 || p.Pagination.LowerBound || len(p.Items) != 5 {
		t.Errorf("last page: %d items, %+v", len(p.Items), p.Pagination)
	}
	// No index serves error_contains: it counts only one past the page, enough to offer
	// the next.
	p = logsPage{}
	n.do(http.MethodGet, "/api/logs?error_contains=SAID&page=2&page_size=20", nil).ok(t, &p)
	if p.Pagination.TotalItems != 41 || !p.Pagination.LowerBound || p.Pagination.TotalPages != 3 || len(p.Items) != 20 {
		t.Errorf("error_contains: %d items, %+v", len(p.Items), p.Pagination)
	}
}

func TestLogRoutesWithoutSQL(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	for _, path := range []string{"/api/logs", "/api/logs/export", "/api/usage"} {
		n.do(http.MethodGet, path, nil).fails(t, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE")
	}
	// The figures are zero, as for a node without traffic.
	var st struct {
		RPM struct{ Value float64 } `json:"rpm"`
	}
	n.do(http.MethodGet, "/api/dashboard/stats", nil).ok(t, &st)
	n.do(http.MethodGet, "/api/dashboard/chart", nil).ok(t, nil)
}

type card struct {
	Value         float64 `json:"value"`
	SubValue      int64   `json:"sub_value"`
	Trend         float64 `json:"trend"`
	TrendIsGrowth bool    `json:"trend_is_growth"`
}

// TestDashboardFigures computes every card, the chart and group stats from a hand-made
// set of rows whose answers are known.
func TestDashboardFigures(t *testing.T) {
	t.Parallel()
	sqlstoretest.EachDB(t, func(t *testing.T, dsn string, _ *bun.DB) {
		db := sqlstoretest.Migrated(t, dsn)
		n := startLogNode(t, db, nodeOpts{})
		a := n.group("alpha")
		n.addKeys(a, "sk-alpha-1", "sk-alpha-2")
		var g struct{ ID uint64 }
		n.do(http.MethodPost, "/api/groups", `{"name":"pool","group_type":"aggregate","channel_type":"openai"}`).ok(t, &g)
		p := g.ID

		// Requests per minute: 30 final logs in [now−10m, now) (one exactly at now−10m),
		// 10 in [now−20m, now−10m) (one exactly at now−20m); retries do not count.
		var rows []sqllog.LogRow
		add := func(prefix string, k int, ago time.Duration, typ string) {
			for i := range k {
				r := logRow(fmt.Sprintf("%s%d", prefix, i), a, "alpha", ago)
				r.RequestType = typ
				rows = append(rows, r)
			}
		}
		add("cur", 29, time.Minute, "final")
		add("edge", 1, 10*time.Minute, "final")
		add("retry", 5, time.Minute, "retry")
		add("prev", 9, 15*time.Minute, "final")
		add("old", 1, 20*time.Minute, "final")
		add("older", 3, 21*time.Minute, "final")
		insertRows(t, db, &rows)

		// Hourly figures: the last 24 hours are [11-29 12:30, 11-30 12:30).
		hour := func(d, h int) time.Time { return time.Date(2026, 11, d, h, 0, 0, 0, time.UTC) }
		insertRows(t, db, &[]sqlstore.GroupHourlyStat{
			{Time: hour(30, 12), GroupID: a, SuccessCount: 80, FailureCount: 20, TotalTokens: 1000},
			{Time: hour(29, 13), GroupID: a, SuccessCount: 10, TotalTokens: 500},
			{Time: hour(29, 12), GroupID: a, SuccessCount: 40, FailureCount: 10, TotalTokens: 500},
			{Time: hour(20, 12), GroupID: a, SuccessCount: 5},
			// The aggregate's rows repeat its members' traffic: left out of totals.
			{Time: hour(30, 12), GroupID: p, SuccessCount: 8, FailureCount: 2, TotalTokens: 99},
		})

		var st struct {
			KeyCount     card `json:"key_count"`
			RPM          card `json:"rpm"`
			RequestCount card `json:"request_count"`
			ErrorRate    card `json:"error_rate"`
			TokenCount   card `json:"token_count"`
		}
		n.do(http.MethodGet, "/api/dashboard/stats", nil).ok(t, &st)
		want := []struct {
			name string
			got  card
			want card
		}{
			{"key_count", st.KeyCount, card{Value: 2, TrendIsGrowth: false}},
			{"rpm", st.RPM, card{Value: 3, Trend: 200, TrendIsGrowth: true}},
			{"request_count", st.RequestCount, card{Value: 110, Trend: 120, TrendIsGrowth: true}},
			// 20/110 = 18.18 % against 10/50 = 20 %: 1.82 points down, the good way.
			{"error_rate", st.ErrorRate, card{Value: 18.18, Trend: -1.82, TrendIsGrowth: true}},
			{"token_count", st.TokenCount, card{Value: 1500, Trend: 200, TrendIsGrowth: true}},
		}
		for _, w := range want {
			if w.got != w.want {
				t.Errorf("%s: %+v, want %+v", w.name, w.got, w.want)
			}
		}

		var chart struct {
			Labels   []time.Time `json:"labels"`
			Datasets []struct {
				Label string  `json:"label"`
				Data  []int64 `json:"data"`
				Color string  `json:"color"`
			} `json:"datasets"`
		}
		n.do(http.MethodGet, "/api/dashboard/chart", nil).ok(t, &chart)
		if len(chart.Labels) != 24 || !chart.Labels[0].Equal(hour(29, 13)) || !chart.Labels[23].Equal(hour(30, 12)) || len(chart.Datasets) != 2 {
			t.Fatalf("chart: %+v", chart)
		}
		succ, fail := chart.Datasets[0].Data, chart.Datasets[1].Data
		if succ[0] != 10 || succ[23] != 80 || fail[23] != 20 || sum(succ) != 90 || sum(fail) != 20 {
			t.Errorf("chart, standard groups: %v %v", succ, fail)
		}
		chart.Labels, chart.Datasets = nil, nil
		n.do(http.MethodGet, fmt.Sprint("/api/dashboard/chart?groupId=", p), nil).ok(t, &chart)
		if d := chart.Datasets[0].Data; d[23] != 8 || sum(d) != 8 || chart.Datasets[1].Data[23] != 2 {
			t.Errorf("chart of the aggregate: %+v", chart.Datasets)
		}
		n.do(http.MethodGet, "/api/dashboard/chart?groupId=x", nil).fails(t, http.StatusBadRequest, "BAD_REQUEST")

		type reqStats struct {
			Total  int64   `json:"total_requests"`
			Failed int64   `json:"failed_requests"`
			Rate   float64 `json:"failure_rate"`
		}
		var gs struct {
			Day   reqStats `json:"stats_24_hour"`
			Week  reqStats `json:"stats_7_day"`
			Month reqStats `json:"stats_30_day"`
		}
		// Windows end with the current hour: [11-29 13:00, 11-30 13:00) for 24 hours.
		n.do(http.MethodGet, fmt.Sprint("/api/groups/", a, "/stats"), nil).ok(t, &gs)
		if gs.Day != (reqStats{110, 20, 0.1818}) || gs.Week != (reqStats{160, 30, 0.1875}) || gs.Month != (reqStats{165, 30, 0.1818}) {
			t.Errorf("group stats: %+v", gs)
		}
	})
}

func sum(v []int64) int64 {
	var s int64
	for _, x := range v {
		s += x
	}
	return s
}

func TestKeysListShowsUsage(t *testing.T) {
	t.Parallel()
	db := sqlstoretest.Migrated(t, sqlstoretest.DSN(t, "sqlite"))
	n := startLogNode(t, db, nodeOpts{})
	a := n.group("alpha")
	n.addKeys(a, "sk-used-key", "sk-idle-key")
	used := logNow.Add(-time.Hour)
	insertRows(t, db, &[]sqlstore.KeyUsage{
		{GroupID: a, KeyHash: n.store.Cipher().Hash("sk-used-key").String(), KeyID: n.keyID(a, "sk-used-key"), RequestCount: 42, LastUsedAt: used},
		// Same key text in another group: not this group's usage.
		{GroupID: a + 100, KeyHash: n.store.Cipher().Hash("sk-idle-key").String(), RequestCount: 7, LastUsedAt: used},
	})
	var page struct {
		Items []struct {
			KeyValue     string     `json:"key_value"`
			RequestCount int64      `json:"request_count"`
			LastUsedAt   *time.Time `json:"last_used_at"`
		} `json:"items"`
	}
	n.do(http.MethodGet, fmt.Sprint("/api/keys?group_id=", a), nil).ok(t, &page)
	if len(page.Items) != 2 {
		t.Fatalf("%+v", page)
	}
	for _, k := range page.Items {
		switch k.KeyValue {
		case "sk-used-key":
			if k.RequestCount != 42 || k.LastUsedAt == nil || !k.LastUsedAt.Equal(used) {
				t.Errorf("used key: %d %v", k.RequestCount, k.LastUsedAt)
			}
		default:
			if k.RequestCount != 0 || k.LastUsedAt != nil {
				t.Errorf("idle key: %d %v", k.RequestCount, k.LastUsedAt)
			}
		}
	}
}

func TestUsageAPI(t *testing.T) {
	t.Parallel()
	sqlstoretest.EachDB(t, func(t *testing.T, dsn string, _ *bun.DB) {
		db := sqlstoretest.Migrated(t, dsn)
		n := startLogNode(t, db, nodeOpts{})
		a := n.group("alpha")
		fp := domain.ProxyKeyFingerprint("sk-team-a")
		h := func(ago int) time.Time { return logNow.Truncate(time.Hour).Add(-time.Duration(ago) * time.Hour) }
		insertRows(t, db, &[]sqlstore.UsageHourly{
			{Time: h(0), GroupID: a, Model: "gpt-4o", ProxyKeyFP: fp, ProxyKeyName: "group", KeyID: 1, Requests: 3, Failures: 1, PromptTokens: 30, CompletionTokens: 20, TotalTokens: 50},
			{Time: h(1), GroupID: a, Model: "gpt-4o-mini", ProxyKeyFP: "0123456789ab", ProxyKeyName: "global", KeyID: 2, Requests: 2, TotalTokens: 10},
			{Time: h(30), GroupID: a, Model: "gpt-4o", ProxyKeyFP: fp, KeyID: 1, Requests: 100, TotalTokens: 1000},
		})
		type usage struct {
			By    string `json:"by"`
			Items []struct {
				Time       *time.Time `json:"time"`
				Model      *string    `json:"model"`
				GroupName  *string    `json:"group_name"`
				KeyID      *uint64    `json:"key_id"`
				ProxyKeyFP *string    `json:"proxy_key_fp"`
				Requests   int64      `json:"requests"`
			} `json:"items"`
			Totals struct {
				Requests    int64 `json:"requests"`
				Failures    int64 `json:"failures"`
				TotalTokens int64 `json:"total_tokens"`
			} `json:"totals"`
		}
		var u usage
		// Default: the last 24 hours, by hour.
		n.do(http.MethodGet, "/api/usage", nil).ok(t, &u)
		if u.By != "hour" || len(u.Items) != 2 || !u.Items[0].Time.Equal(h(1)) || u.Items[1].Requests != 3 ||
			u.Totals.Requests != 5 || u.Totals.Failures != 1 || u.Totals.TotalTokens != 60 {
			t.Errorf("default usage: %+v", u)
		}
		u = usage{}
		n.do(http.MethodGet, "/api/usage?by=key&from="+h(48).Format(time.RFC3339), nil).ok(t, &u)
		if len(u.Items) != 2 || *u.Items[0].KeyID != 1 || u.Items[0].Requests != 103 || *u.Items[0].GroupName != "alpha" {
			t.Errorf("by key over 48 hours: %+v", u)
		}
		// A proxy key given in clear is reduced to its fingerprint.
		u = usage{}
		n.do(http.MethodGet, "/api/usage?by=proxy_key&proxy_key=sk-team-a", nil).ok(t, &u)
		if len(u.Items) != 1 || *u.Items[0].ProxyKeyFP != fp || u.Items[0].Requests != 3 {
			t.Errorf("by proxy key: %+v", u)
		}
		// A named key: one line across its rotations, under its name of now.
		k, _, err := n.cmd.CreateProxyKey(context.Background(), "admin", domain.ProxyKeyInput{Name: str("renamed-since")})
		if err != nil {
			t.Fatal(err)
		}
		insertRows(t, db, &[]sqlstore.UsageHourly{
			{Time: h(2), GroupID: a, Model: "m", ProxyKeyFP: "aaaaaaaaaaaa", ProxyKeyName: "old-name", ProxyKeyID: k.ID, Requests: 4, TotalTokens: 40},
			{Time: h(3), GroupID: a, Model: "m", ProxyKeyFP: "bbbbbbbbbbbb", ProxyKeyName: "old-name", ProxyKeyID: k.ID, Requests: 1, TotalTokens: 10},
		})
		var named struct {
			Items []struct {
				ProxyKeyID   *uint64 `json:"proxy_key_id"`
				ProxyKeyFP   *string `json:"proxy_key_fp"`
				ProxyKeyName string  `json:"proxy_key_name"`
				Requests     int64   `json:"requests"`
			} `json:"items"`
		}
		n.do(http.MethodGet, fmt.Sprintf("/api/usage?by=proxy_key&proxy_key_id=%d", k.ID), nil).ok(t, &named)
		if len(named.Items) != 1 || named.Items[0].ProxyKeyID == nil || *named.Items[0].ProxyKeyID != k.ID ||
			named.Items[0].ProxyKeyFP != nil || named.Items[0].ProxyKeyName != "renamed-since" || named.Items[0].Requests != 5 {
			t.Errorf("by named proxy key: %+v", named)
		}
		for _, q := range []string{"by=week", "from=yesterday", "to=2026-13-01T00:00:00Z", "group_id=-1", "proxy_key_id=x",
			"from=" + logNow.Format(time.RFC3339) + "&to=" + logNow.Add(-time.Hour).Format(time.RFC3339),
			"by=hour&from=" + logNow.Add(-40*24*time.Hour).Format(time.RFC3339)} {
			n.do(http.MethodGet, "/api/usage?"+q, nil).fails(t, http.StatusBadRequest, "VALIDATION_FAILED")
		}
	})
}
