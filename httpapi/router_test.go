package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"gpt-load/httpapi"
)

type readiness struct {
	caughtUp bool
	applied  uint64
}

func (r readiness) CaughtUp() bool  { return r.caughtUp }
func (r readiness) Applied() uint64 { return r.applied }

func TestHealth(t *testing.T) {
	t.Parallel()
	started := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := started.Add(3*time.Hour + 2*time.Minute + 1500*time.Millisecond)
	for _, tc := range []struct {
		name       string
		ready      readiness
		wantStatus int
		wantBody   string
	}{
		{"caught up", readiness{true, 42}, http.StatusOK, "healthy"},
		{"replaying", readiness{false, 7}, http.StatusServiceUnavailable, "starting"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := httpapi.New(httpapi.Deps{Log: zerolog.Nop(), Ready: tc.ready, Node: "n1", Started: started,
				Now: func() time.Time { return now }})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tc.wantStatus)
			}
			var body struct {
				Status      string `json:"status"`
				Timestamp   string `json:"timestamp"`
				Uptime      string `json:"uptime"`
				Node        string `json:"node"`
				Projections struct {
					CaughtUp   bool   `json:"caught_up"`
					AppliedSeq uint64 `json:"applied_seq"`
				} `json:"projections"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if body.Status != tc.wantBody || body.Uptime != "3h2m1.5s" || body.Timestamp != "2026-01-01T03:02:01Z" ||
				body.Node != "n1" || body.Projections.CaughtUp != tc.ready.caughtUp || body.Projections.AppliedSeq != tc.ready.applied {
				t.Fatalf("body %s", rec.Body)
			}
			if rec.Header().Get("X-Content-Type-Options") != "nosniff" || rec.Header().Get("X-Frame-Options") != "SAMEORIGIN" {
				t.Fatalf("security headers missing: %v", rec.Header())
			}
		})
	}
}

func TestUnknownRoutes(t *testing.T) {
	t.Parallel()
	h := httpapi.New(httpapi.Deps{Log: zerolog.Nop(), Ready: readiness{true, 1}})
	for _, req := range []*http.Request{
		httptest.NewRequest(http.MethodGet, "/api/nothing-here", nil),
		httptest.NewRequest(http.MethodPost, "/health", nil),
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusNotFound || rec.Body.String() != "{\"error\":\"Not Found\"}\n" {
			t.Errorf("%s %s: %d %q", req.Method, req.URL, rec.Code, rec.Body)
		}
	}
}
