package proxy

import (
	"context"
	"crypto/sha256"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"gpt-load/domain"
	"gpt-load/projections"
	"gpt-load/proxy/channel"
)

// Views is where the proxy reads settings, groups and key pools: lock-free snapshots.
// *projections.Runner implements it.
type Views interface {
	View() *projections.View
}

// LogRecorder takes request-log records without blocking and without keeping the record
// after it returns; *events.ReqLogPublisher implements it.
type LogRecorder interface {
	Record(rec *domain.RequestLog)
}

type poolKey = projections.PoolKey

// Config tunes the proxy. Zero values take the defaults.
type Config struct {
	// MaxConcurrentRequests caps proxied requests in flight (MAX_CONCURRENT_REQUESTS,
	// default 100); over it a request is answered 429 with Retry-After. Open streams hold
	// their slot for their whole life.
	MaxConcurrentRequests int
	// MaxBodyBytes bounds a request body (default 32 MiB); a larger one is answered 413.
	MaxBodyBytes int64
	// RateLimitCooldown is how long a rate-limited key rests when the upstream gives no
	// Retry-After (default 30 s); it doubles while the key keeps being limited, up to
	// MaxCooldown (default 1 h), which also caps a Retry-After.
	RateLimitCooldown time.Duration
	MaxCooldown       time.Duration
	// TrustForwardedFor takes the client IP from X-Forwarded-For / X-Real-IP (set it only
	// behind a reverse proxy that sets them); otherwise it is the connection's address.
	TrustForwardedFor bool
	// RetryEmptyAnswer tells whether a group retries a 200 whose answer is empty (no
	// choices, candidates or content) with another key; nil: never.
	RetryEmptyAnswer func(g *projections.GroupView) bool
	// HealthQueue bounds the key-health facts waiting for the log (default 4096): they are
	// sent again until the log acknowledges them, coalesced per key.
	HealthQueue int
	// Now is the clock (tests).
	Now func() time.Time
	// Transport replaces the network transport built from a group's settings (benchmarks
	// and tests without network).
	Transport func() http.RoundTripper
}

func (c *Config) setDefaults() {
	if c.MaxConcurrentRequests <= 0 {
		c.MaxConcurrentRequests = 100
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 32 << 20
	}
	if c.RateLimitCooldown <= 0 {
		c.RateLimitCooldown = 30 * time.Second
	}
	if c.MaxCooldown <= 0 {
		c.MaxCooldown = time.Hour
	}
	if c.HealthQueue <= 0 {
		c.HealthQueue = 4096
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Deps are the parts the proxy works with.
type Deps struct {
	Views Views         // required
	Facts FactPublisher // key-health facts; required
	Logs  LogRecorder   // request logs; nil records none
	Log   zerolog.Logger
}

// Handler serves /proxy/{group}/{native path}.
type Handler struct {
	cfg      Config
	views    Views
	logs     LogRecorder
	log      zerolog.Logger
	health   *health
	groups   *groupCache
	inflight atomic.Int64
}

// New builds the proxy handler. Mount it at /proxy/: it reads the group from the path
// (with or without the /proxy prefix). Close stops it.
func New(cfg Config, deps Deps) (*Handler, error) {
	if deps.Views == nil {
		return nil, errors.New("proxy: nil Views")
	}
	if deps.Facts == nil {
		return nil, errors.New("proxy: nil Facts")
	}
	cfg.setDefaults()
	var rt func(transportConfig) http.RoundTripper
	if cfg.Transport != nil {
		rt = func(transportConfig) http.RoundTripper { return cfg.Transport() }
	}
	h := &Handler{
		cfg: cfg, views: deps.Views, logs: deps.Logs, log: deps.Log,
		health: newHealth(deps.Facts, cfg.HealthQueue, deps.Log),
		groups: &groupCache{clients: newTransports(rt)},
	}
	return h, nil
}

// Flush waits until the event log has acknowledged every key-health fact recorded so far.
func (h *Handler) Flush(ctx context.Context) error { return h.health.flush(ctx) }

// Close hands the remaining facts to the log and closes idle upstream connections. Call
// it after the HTTP server has drained.
func (h *Handler) Close() error {
	h.health.close()
	h.groups.clients.closeIdle()
	return nil
}

// InFlight is the number of proxied requests being served.
func (h *Handler) InFlight() int64 { return h.inflight.Load() }

// DroppedFacts counts key-health facts dropped: more were waiting for the log than
// Config.HealthQueue, or the log was still away when the proxy closed.
func (h *Handler) DroppedFacts() uint64 { return h.health.dropped.Load() }

// WaitingFacts is how many key-health facts wait for the log to acknowledge them.
func (h *Handler) WaitingFacts() int { return h.health.waiting() }

// ServeHTTP proxies one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if n := h.inflight.Add(1); n > int64(h.cfg.MaxConcurrentRequests) {
		h.inflight.Add(-1)
		w.Header().Set("Retry-After", "1")
		writeError(w, channel.ShapeOpenAI, http.StatusTooManyRequests, channel.CodeTooMany, "Too many concurrent requests")
		return
	}
	defer h.inflight.Add(-1)
	start := h.cfg.Now()

	name, rest, ok := splitPath(r.URL.EscapedPath())
	if !ok {
		writeError(w, channel.ShapeOpenAI, http.StatusNotFound, channel.CodeNotFound, "Not Found")
		return
	}
	v := h.views.View()
	if rest == "/api/integration/info" {
		h.integrationInfo(w, r, v, name)
		return
	}
	gv, found := v.GroupByName(name)
	key, rawQuery := ExtractKey(r)
	if key == "" {
		writeError(w, channel.ShapeForPath(rest), http.StatusUnauthorized, channel.CodeUnauthorized, "Authentication failed")
		return
	}
	// An unknown group and a group the key is not allowed in get the same answer, so
	// group names cannot be probed with a proxy key of another group.
	global := h.groups.globalKeys(v)
	d := digestOf(key)
	var gs *groupState
	var allowed []digest
	if found {
		gs = h.groups.state(gv)
		allowed = gs.keys
	}
	in := keyAllowed(&d, allowed, global)
	if in < 0 || !found {
		writeError(w, channel.ShapeForPath(rest), http.StatusUnauthorized, channel.CodeUnauthorized, "Authentication failed")
		return
	}
	shape := channel.ShapeFor(gv.ChannelType, rest)
	rest, ok = cleanRest(rest)
	if !ok {
		writeError(w, shape, http.StatusBadRequest, channel.CodeBadRequest, "Path climbs above the group's root")
		return
	}

	p := &request{
		h: h, w: w, r: r, start: start, shape: shape,
		rest: rest, rawQuery: rawQuery, group: gv, gs: gs,
		proxyKeyName: domain.ProxyKeyGroup,
	}
	copy(p.proxyKeyFP[:], d[:])
	if in == 1 {
		p.proxyKeyName = domain.ProxyKeyGlobal
	}
	p.serve(v)
}

func digestOf(key string) digest {
	return sha256.Sum256([]byte(key))
}

// splitPath splits /proxy/{group}/{rest} (the /proxy prefix may already be stripped) into
// the group name and the rest, which keeps its leading '/' ("" when there is none).
func splitPath(p string) (name, rest string, ok bool) {
	p = strings.TrimPrefix(p, "/proxy")
	if !strings.HasPrefix(p, "/") {
		return "", "", false
	}
	p = p[1:]
	name, rest = p, ""
	if i := strings.IndexByte(p, '/'); i >= 0 {
		name, rest = p[:i], p[i:]
	}
	return name, rest, name != ""
}

func writeError(w http.ResponseWriter, shape channel.Shape, status int, code, msg string) {
	body := channel.ErrorBody(shape, status, code, msg)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// clientIP is the connection's address, or with TrustForwardedFor the first address of
// X-Forwarded-For, else X-Real-IP.
func (h *Handler) clientIP(r *http.Request) string {
	if h.cfg.TrustForwardedFor {
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			first, _, _ := strings.Cut(xff, ",")
			if ip := strings.TrimSpace(first); ip != "" {
				return ip
			}
		}
		if ip := strings.TrimSpace(r.Header.Get("X-Real-IP")); ip != "" {
			return ip
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// cleanRest resolves the dot segments of the client's path after the group (escaped, as
// it came), so that an upstream which normalises paths cannot be led outside the
// group's base path: "." and ".." count also when escaped (%2e, either case) or when
// split by an escaped slash or a backslash (%2f, \, %5c), which some servers take for a
// separator. A path without dot segments is returned as it is; a resolved one is
// re-escaped segment by segment. ok is false when the path climbs above the root.
func cleanRest(rest string) (string, bool) {
	if !strings.Contains(rest, ".") && !strings.Contains(rest, "%2e") && !strings.Contains(rest, "%2E") {
		return rest, true
	}
	dec, err := url.PathUnescape(rest)
	if err != nil {
		dec = rest
	}
	segs := strings.FieldsFunc(dec, func(r rune) bool { return r == '/' || r == '\\' })
	dots := false
	for _, s := range segs {
		if s == "." || s == ".." {
			dots = true
			break
		}
	}
	if !dots {
		return rest, true
	}
	out := make([]string, 0, len(segs))
	for _, s := range segs {
		switch s {
		case ".":
		case "..":
			if len(out) == 0 {
				return "", false
			}
			out = out[:len(out)-1]
		default:
			out = append(out, url.PathEscape(s))
		}
	}
	clean := "/" + strings.Join(out, "/")
	if last := segs[len(segs)-1]; last == "." || last == ".." || strings.HasSuffix(dec, "/") {
		if clean != "/" {
			clean += "/"
		}
	}
	return clean, true
}
