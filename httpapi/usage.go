package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"gpt-load/domain"
	"gpt-load/projections/sqllog"
)

const (
	// defaultUsageWindow is the span of GET /api/usage when from is not given.
	defaultUsageWindow = 24 * time.Hour
	// maxUsageHours bounds by=hour to a month of lines; other groupings are not bounded.
	maxUsageHours = 31 * 24
)

type usageFigures struct {
	Requests         int64 `json:"requests"`
	Failures         int64 `json:"failures"`
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}

// usageItem is one line of GET /api/usage; only the fields of its grouping are present.
type usageItem struct {
	Time         *time.Time `json:"time,omitempty"`
	Model        *string    `json:"model,omitempty"`
	GroupID      *uint64    `json:"group_id,omitempty"`
	GroupName    *string    `json:"group_name,omitempty"`
	KeyID        *uint64    `json:"key_id,omitempty"`
	ProxyKeyFP   *string    `json:"proxy_key_fp,omitempty"`
	ProxyKeyName *string    `json:"proxy_key_name,omitempty"`
	ProxyKeyID   *uint64    `json:"proxy_key_id,omitempty"` // a named key, across its rotations
	usageFigures
}

type usageJSON struct {
	From   time.Time      `json:"from"`
	To     time.Time      `json:"to"`
	By     sqllog.UsageBy `json:"by"`
	Items  []usageItem    `json:"items"`
	Totals usageFigures   `json:"totals"`
}

// usage is GET /api/usage (ours): requests, failures and tokens from the hourly usage
// rollup, which outlives the request logs, grouped by hour, day, model, upstream key or
// proxy key. Requests are a client's requests (retries are not counted); tokens are every
// attempt's. from is rounded down to its hour; days begin at local midnight.
func (a *admin) usage(w http.ResponseWriter, r *http.Request) {
	if a.logs == nil {
		fail(w, r, errLogsUnavailable())
		return
	}
	q := r.URL.Query()
	uq := sqllog.UsageQuery{By: sqllog.UsageBy(q.Get("by")), Loc: time.Local}
	switch uq.By {
	case "":
		uq.By = sqllog.ByHour
	case sqllog.ByHour, sqllog.ByDay, sqllog.ByModel, sqllog.ByKey, sqllog.ByProxyKey:
	default:
		fail(w, r, errField(codeValidation, "by", "must be hour, day, model, key or proxy_key"))
		return
	}
	if s := q.Get("group_id"); s != "" {
		id, err := strconv.ParseUint(s, 10, 64)
		if err != nil || id == 0 {
			fail(w, r, errField(codeValidation, "group_id", "must be a positive integer"))
			return
		}
		uq.GroupID = id
	}
	uq.ProxyKeyFP = proxyKeyFP(q.Get("proxy_key"))
	if s := q.Get("proxy_key_id"); s != "" {
		id, err := strconv.ParseUint(s, 10, 64)
		if err != nil || id == 0 {
			fail(w, r, errField(codeValidation, "proxy_key_id", "must be a positive integer"))
			return
		}
		uq.ProxyKeyID = id
	}
	uq.To = a.now()
	if s := q.Get("to"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			fail(w, r, errField(codeValidation, "to", "must be an RFC 3339 time"))
			return
		}
		uq.To = t
	}
	uq.From = uq.To.Add(-defaultUsageWindow)
	if s := q.Get("from"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			fail(w, r, errField(codeValidation, "from", "must be an RFC 3339 time"))
			return
		}
		uq.From = t
	}
	uq.From = uq.From.Truncate(time.Hour)
	if !uq.From.Before(uq.To) {
		fail(w, r, errField(codeValidation, "from", "must be before to"))
		return
	}
	if uq.By == sqllog.ByHour && uq.To.Sub(uq.From) > maxUsageHours*time.Hour {
		fail(w, r, errField(codeValidation, "by", "hour covers at most 31 days: use day"))
		return
	}
	rows, err := a.logs.Usage(r.Context(), uq)
	if err != nil {
		a.failDB(w, r, err)
		return
	}
	var names, keyNames map[uint64]string
	if uq.By == sqllog.ByProxyKey {
		keyNames = read(a.state, func(s *domain.State) map[uint64]string {
			m := map[uint64]string{}
			for _, k := range s.ProxyKeys() {
				m[k.ID] = k.Name
			}
			return m
		})
	}
	if uq.By == sqllog.ByKey {
		names = read(a.state, func(s *domain.State) map[uint64]string {
			m := map[uint64]string{}
			for _, g := range s.Groups() {
				m[g.ID] = g.Name
			}
			return m
		})
	}
	out := usageJSON{From: uq.From.Local(), To: uq.To.Local(), By: uq.By, Items: make([]usageItem, 0, len(rows))}
	for _, row := range rows {
		it := usageItem{usageFigures: usageFigures{row.Requests, row.Failures, row.PromptTokens, row.CompletionTokens, row.TotalTokens}}
		switch uq.By {
		case sqllog.ByHour, sqllog.ByDay:
			t := row.Time.Local()
			it.Time = &t
		case sqllog.ByModel:
			it.Model = &row.Model
		case sqllog.ByKey:
			name := names[row.GroupID]
			it.GroupID, it.GroupName, it.KeyID = &row.GroupID, &name, &row.KeyID
		case sqllog.ByProxyKey:
			it.ProxyKeyFP, it.ProxyKeyName = &row.ProxyKeyFP, &row.ProxyKeyName
			if row.ProxyKeyID != 0 {
				// A named key under its name of now, whatever it was called when used.
				if name, ok := keyNames[row.ProxyKeyID]; ok {
					row.ProxyKeyName = name
				}
				it.ProxyKeyID, it.ProxyKeyFP = &row.ProxyKeyID, nil
			}
		}
		out.Totals.Requests += row.Requests
		out.Totals.Failures += row.Failures
		out.Totals.PromptTokens += row.PromptTokens
		out.Totals.CompletionTokens += row.CompletionTokens
		out.Totals.TotalTokens += row.TotalTokens
		out.Items = append(out.Items, it)
	}
	ok(w, r, out)
}
