// Package httpapi serves the HTTP side of a node except the proxy itself: health, the
// admin REST API under /api, metrics and the web dashboard.
package httpapi

import (
	"context"
	"encoding/json"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"
	"github.com/rs/zerolog/hlog"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/httpapi/tasks"
	"gpt-load/projections"
)

// Readiness is what /health reports about the projections.
type Readiness interface {
	CaughtUp() bool
	Applied() uint64
}

// Projection is what the admin API reads of the projected state: consistent reads under
// the projection's shared lock, and the lock-free view.
type Projection interface {
	Read(f func(s *domain.State))
	View() *projections.View
}

// AuditLog reads the event history for GET /api/audit.
type AuditLog interface {
	Page(ctx context.Context, q events.AuditQuery) (events.AuditPage, error)
}

// KeyValidator runs the channel's validation request for upstream keys (API.md 7.10) and
// records the outcomes as key events; the proxy package provides it.
type KeyValidator interface {
	// ValidateKeys validates the listed keys of a standard group with at most concurrency
	// requests at a time, calling progress with the number of keys done so far (possibly
	// from several goroutines). It returns how many were valid and invalid.
	ValidateKeys(ctx context.Context, groupID uint64, keyIDs []uint64, concurrency int, progress func(done int)) (valid, invalid int, err error)
	// TestKey validates one key value of the group and records the outcome the same way;
	// message explains a failure.
	TestKey(ctx context.Context, groupID uint64, keyValue string) (ok bool, message string, err error)
}

// Deps are the parts the router serves from.
type Deps struct {
	Log     zerolog.Logger
	Ready   Readiness
	Node    string
	Started time.Time
	Now     func() time.Time // defaults to time.Now

	// The admin API is served when Commands is set; State, Audit and Cipher are then
	// required.
	Commands *events.Commands
	State    Projection
	Audit    AuditLog
	Cipher   *events.Cipher // the store's cipher: hashes key values for lookups
	// AuthKey is the admin key (AUTH_KEY); EncryptionKeySet tells whether ENCRYPTION_KEY
	// is set (dashboard warnings and encryption status).
	AuthKey          string
	EncryptionKeySet bool
	// Validator runs key validations; nil makes validate-group and test-multiple answer
	// 503.
	Validator KeyValidator
	// Tasks holds the one task slot; nil keeps it in this node's memory.
	Tasks tasks.Store
	// SpoolDir is where an uploaded gpt-load database rests while it is imported (under
	// DATA_DIR, so it never leaves the node's own storage); "" is the system's temporary
	// directory.
	SpoolDir string
	// TaskContext bounds background tasks (imports, deletes, validations): they stop when
	// it ends. nil lets them run to completion.
	TaskContext context.Context
	// Proxy, when set, serves /proxy/{group}/* (everything but the per-group integration
	// info, which this router answers first), with 503 until the projections catch up.
	Proxy http.Handler
	// CORS is the cross-origin setting of every route.
	CORS CORS
	// MaxRequests bounds the admin API's requests in flight (MAX_CONCURRENT_REQUESTS;
	// default 100), and separately its public routes' (login, integration info); the
	// proxy has its own bound.
	MaxRequests int
	// Log position and NATS connection, for /health (see health.go); nil leaves them out
	// of the report.
	Stream LogPosition
	Conn   Connection
	Health HealthConfig
	// Logs reads request logs from SQL (logs, exports, dashboard figures, group stats,
	// key usage, usage); nil makes the log routes answer 503 and the figures zero.
	Logs LogQueries
	// SPA is the built web dashboard (frontend.Dist), served for every GET that no route
	// answers (static.go); nil leaves those to the JSON 404.
	SPA fs.FS
	// LoginThrottle is the back-off of clients that send wrong admin keys.
	LoginThrottle LoginThrottle
	// Metrics, when set, is served at /metrics: behind the admin key unless MetricsPublic.
	Metrics       *Metrics
	MetricsPublic bool
	// ProxyKeyUsage tells the named proxy keys' use (their quotas' remains, last use); nil
	// shows them unused.
	ProxyKeyUsage ProxyKeyUsage
}

// New builds the router: /health, the admin API under /api (when d.Commands is set), the
// per-group integration info, the proxy when given, and the 404 fallback of API.md 0.1
// for everything else.
func New(d Deps) http.Handler {
	if d.Ready == nil {
		panic("httpapi: nil readiness")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	r := chi.NewRouter()
	r.Use(hlog.NewHandler(d.Log), recoverer)
	if c := d.CORS.handler(); c != nil {
		r.Use(c)
	}
	r.Use(securityHeaders)
	r.NotFound(notFound)
	if d.SPA != nil {
		r.NotFound(newSPA(d.SPA).ServeHTTP)
	}
	r.MethodNotAllowed(notFound)
	r.Get("/health", newHealth(d).ServeHTTP)
	if d.Commands != nil {
		a := newAdmin(d)
		r.Route("/api", a.routes)
		r.With(a.whenReady, a.public.limit, limitBody(maxLoginBody)).HandleFunc("/proxy/{group}/api/integration/info", a.groupIntegrationInfo)
		if d.Proxy != nil {
			r.With(a.proxyWhenReady).Handle("/proxy/{group}/*", d.Proxy)
		}
		if d.Metrics != nil {
			d.Metrics.watch(d, a.tasks.Store())
			if d.MetricsPublic {
				r.Get("/metrics", d.Metrics.Handler().ServeHTTP)
			} else {
				r.With(a.requireAdmin).Get("/metrics", d.Metrics.Handler().ServeHTTP)
			}
		}
	}
	return r
}

// notFound answers unknown routes and wrong methods alike (API.md 0.1).
func notFound(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusNotFound, map[string]string{"error": "Not Found"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// apiContentSecurityPolicy is the policy of every answer that is not a page of the
// dashboard (static.go has the page's): JSON, text and proxied answers load nothing and
// are framed by nobody else, should a browser be led to render one.
const apiContentSecurityPolicy = "default-src 'none'; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"

// securityHeaders sets the headers of API.md 0.5 on every answer, and our policy: the
// content security policy above (the dashboard's pages replace it with theirs), and no
// caching of admin answers, which carry keys and settings.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "strict-origin-when-cross-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
		h.Set("X-Frame-Options", "SAMEORIGIN")
		h.Set("Content-Security-Policy", apiContentSecurityPolicy)
		if strings.HasPrefix(r.URL.Path, "/api/") {
			h.Set("Cache-Control", "no-store")
		}
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
				tasks.PanicFields(hlog.FromRequest(r).Error(), v).Str("path", r.URL.Path).Msg("handler panicked")
				writeJSON(w, http.StatusInternalServerError, map[string]string{
					"code": "INTERNAL_SERVER_ERROR", "message": "An unexpected error occurred",
				})
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// admin serves the admin API.
type admin struct {
	d        Deps
	cmd      *events.Commands
	state    Projection
	audit    AuditLog
	cipher   *events.Cipher
	logs     LogQueries
	tasks    *tasks.Runner
	auth     authKey
	throttle *throttle
	now      func() time.Time
	// inflight bounds of the routes behind the admin key and of the public ones.
	admin, public inflight
}

func newAdmin(d Deps) *admin {
	if d.State == nil || d.Audit == nil || d.Cipher == nil {
		panic("httpapi: the admin API needs State, Audit and Cipher")
	}
	store := d.Tasks
	if store == nil {
		store = tasks.NewMemory(d.Now)
	}
	return &admin{
		d: d, cmd: d.Commands, state: d.State, audit: d.Audit, cipher: d.Cipher, logs: d.Logs,
		tasks:    tasks.NewRunner(store, d.Log.With().Str("component", "tasks").Logger(), d.Now),
		auth:     newAuthKey(d.AuthKey),
		throttle: newThrottle(d.LoginThrottle, d.Now),
		now:      d.Now,
		admin:    newInflight(d.MaxRequests), public: newInflight(d.MaxRequests),
	}
}

// routes registers the admin API (API.md 0.1): public login and integration info, and
// everything else behind the admin key. The OpenAPI document (openapi.go) lists the same
// routes; a test keeps the two in step.
//
// No body is read before the caller is known: the admin key is checked first (it travels
// in the URL or a header), then the request takes a slot of the in-flight bound, then its
// body is read up to the route's limit (limitBody). Login, the one public route with a
// body, reads at most maxLoginBody.
func (a *admin) routes(r chi.Router) {
	r.With(a.public.limit, limitBodyWith(maxLoginBody, loginTooLarge)).Post("/auth/login", a.login)
	r.Group(func(r chi.Router) {
		r.Use(a.whenReady)
		r.With(a.public.limit, limitBody(maxLoginBody)).Get("/integration/info", a.integrationInfo)
		r.Group(func(r chi.Router) {
			r.Use(a.requireAdmin, a.admin.limit)
			r.With(limitAddAsync).Post("/keys/add-async", a.addKeysAsync)
			r.With(limitBody(maxAsyncJSONBody)).Post("/keys/delete-async", a.deleteKeysAsync)
			r.With(limitBody(maxImportBody)).Post("/import/gptload", a.importGptload)
			r.Group(func(r chi.Router) {
				r.Use(limitBody(maxJSONBody))
				r.Get("/openapi.json", a.openAPI)
				r.Get("/channel-types", a.channelTypes)

				r.Get("/groups", a.listGroups)
				r.Post("/groups", a.createGroup)
				r.Get("/groups/list", a.listGroupNames)
				r.Get("/groups/config-options", a.configOptions)
				r.Put("/groups/reorder", a.reorderGroups)
				r.Put("/groups/{id}", a.updateGroup)
				r.Delete("/groups/{id}", a.deleteGroup)
				r.Get("/groups/{id}/stats", a.groupStats)
				r.Post("/groups/{id}/copy", a.copyGroup)
				r.Get("/groups/{id}/sub-groups", a.listSubGroups)
				r.Post("/groups/{id}/sub-groups", a.addSubGroups)
				r.Put("/groups/{id}/sub-groups/{subGroupId}/weight", a.setSubGroupWeight)
				r.Delete("/groups/{id}/sub-groups/{subGroupId}", a.removeSubGroup)
				r.Get("/groups/{id}/parent-aggregate-groups", a.parentAggregates)

				r.Get("/keys", a.listKeys)
				r.Get("/keys/export", a.exportKeys)
				r.Post("/keys/add-multiple", a.addKeys)
				r.Post("/keys/delete-multiple", a.deleteKeys)
				r.Post("/keys/restore-multiple", a.restoreKeys)
				r.Post("/keys/restore-all-invalid", a.restoreAllInvalid)
				r.Post("/keys/clear-all-invalid", a.clearAllInvalid)
				r.Post("/keys/clear-all", a.clearAll)
				r.Post("/keys/validate-group", a.validateGroup)
				r.Post("/keys/test-multiple", a.testKeys)
				r.Post("/keys/disable-multiple", a.disableKeys)
				r.Post("/keys/enable-multiple", a.enableKeys)
				r.Put("/keys/{id}/notes", a.setKeyNotes)

				r.Get("/proxy-keys", a.listProxyKeys)
				r.Post("/proxy-keys", a.createProxyKey)
				r.Put("/proxy-keys/{id}", a.updateProxyKey)
				r.Post("/proxy-keys/{id}/rotate", a.rotateProxyKey)
				r.Delete("/proxy-keys/{id}", a.deleteProxyKey)

				r.Get("/tasks/status", a.taskStatus)
				r.Get("/settings", a.getSettings)
				r.Put("/settings", a.putSettings)
				r.Get("/dashboard/stats", a.dashboardStats)
				r.Get("/dashboard/encryption-status", a.encryptionStatus)
				r.Get("/dashboard/chart", a.dashboardChart)
				r.Get("/logs", a.listLogs)
				r.Get("/logs/export", a.exportLogs)
				r.Get("/usage", a.usage)
				r.Get("/audit", a.auditTrail)
			})
		})
	})
}

// whenReady answers 503 until the projections have caught up with the log: a node still
// replaying would show, and decide on, an old state.
func (a *admin) whenReady(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.d.Ready.CaughtUp() {
			w.Header().Set("Retry-After", strconv.Itoa(int(retryAfterStarting/time.Second)))
			writeJSON(w, http.StatusServiceUnavailable, errorBody{Code: codeUnavailable, Message: tr(r, msgStarting)})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// taskContext is the context background tasks run under.
func (a *admin) taskContext(r *http.Request) context.Context {
	if a.d.TaskContext != nil {
		return a.d.TaskContext
	}
	return context.WithoutCancel(r.Context())
}

// read returns a value computed from the current state.
func read[T any](p Projection, f func(s *domain.State) T) T {
	var v T
	p.Read(func(s *domain.State) { v = f(s) })
	return v
}
