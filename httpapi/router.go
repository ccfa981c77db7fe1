// Package httpapi serves the HTTP side of a node except the proxy itself: health, the
// admin REST API under /api, metrics and the web dashboard.
package httpapi

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"
	"github.com/rs/zerolog/hlog"
)

// Readiness is what /health reports about the projections.
type Readiness interface {
	CaughtUp() bool
	Applied() uint64
}

// Deps are the parts the router serves from.
type Deps struct {
	Log     zerolog.Logger
	Ready   Readiness
	Node    string
	Started time.Time
	Now     func() time.Time // defaults to time.Now
}

// New builds the router.
func New(d Deps) http.Handler {
	if d.Ready == nil {
		panic("httpapi: nil readiness")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	r := chi.NewRouter()
	r.Use(hlog.NewHandler(d.Log), recoverer, securityHeaders)
	r.Get("/health", health(d))
	r.NotFound(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "Not Found"})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "Not Found"})
	})
	return r
}

// health answers 200 once the node serves from a caught-up state, 503 before: a load
// balancer keeps traffic away from a node that is still replaying its log.
func health(d Deps) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		now := d.Now()
		body := map[string]any{
			"status":    "healthy",
			"timestamp": now.UTC().Format(time.RFC3339),
			"uptime":    now.Sub(d.Started).Round(time.Millisecond).String(),
			"node":      d.Node,
			"projections": map[string]any{
				"caught_up":   d.Ready.CaughtUp(),
				"applied_seq": d.Ready.Applied(),
			},
		}
		status := http.StatusOK
		if !d.Ready.CaughtUp() {
			body["status"] = "starting"
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, body)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "strict-origin-when-cross-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
		h.Set("X-Frame-Options", "SAMEORIGIN")
		next.ServeHTTP(w, r)
	})
}

// recoverer turns a panic into the error envelope of API.md 0.5 and logs it.
func recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				hlog.FromRequest(r).Error().Interface("panic", v).Str("path", r.URL.Path).Msg("handler panicked")
				writeJSON(w, http.StatusInternalServerError, map[string]string{
					"code": "INTERNAL_SERVER_ERROR", "message": "An unexpected error occurred",
				})
			}
		}()
		next.ServeHTTP(w, r)
	})
}
