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
	"unsafe"

	"github.com/rs/zerolog"

	"gpt-load/domain"
	"gpt-load/projections"
	"gpt-load/proxy/channel"
	"gpt-load/proxy/limits"
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
	// AffinityEntries bounds the conversations this node remembers for prompt-cache
	// affinity (default 65,536); AffinityTTL is how long an unused one is kept (default
	// 1 h, the longest prompt-cache lifetime providers offer).
	AffinityEntries int
	AffinityTTL     time.Duration
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
	if c.AffinityEntries <= 0 {
		c.AffinityEntries = 1 << 16
	}
	if c.AffinityTTL <= 0 {
		c.AffinityTTL = time.Hour
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
	// Limits enforces the limits of named proxy keys; nil: a limiter of this node alone,
	// with quotas counted in memory.
	Limits *limits.Limiter
	Log    zerolog.Logger
}

// Handler serves /proxy/{group}/{native path}.
type Handler struct {
	cfg      Config
	views    Views
	logs     LogRecorder
	log      zerolog.Logger
	health   *health
	groups   *groupCache
	limits   *limits.Limiter
	affinity *affinity
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
		health:   newHealth(deps.Facts, cfg.HealthQueue, deps.Log),
		groups:   &groupCache{clients: newTransports(rt)},
		limits:   deps.Limits,
		affinity: newAffinity(cfg.AffinityEntries, cfg.AffinityTTL),
	}
	if h.limits == nil {
		h.limits = limits.New(limits.Config{Now: cfg.Now, Log: deps.Log})
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
	c := h.checkKey(v, gv, found, key, start)
	if c.deny == denyAuth {
		writeError(w, channel.ShapeForPath(rest), http.StatusUnauthorized, channel.CodeUnauthorized, "Authentication failed")
		return
	}
	shape := channel.ShapeFor(gv.ChannelType, rest)
	if c.deny != allow {
		writeDenial(w, shape, c)
		return
	}
	rest, ok = cleanRest(rest)
	if !ok {
		writeError(w, shape, http.StatusBadRequest, channel.CodeBadRequest, "Path climbs above the group's root")
		return
	}

	p := &request{
		h: h, w: w, r: r, start: start, shape: shape,
		rest: rest, rawQuery: rawQuery, group: gv, gs: c.gs,
		proxyKeyName: domain.ProxyKeyGroup,
	}
	copy(p.proxyKeyFP[:], c.digest[:])
	switch {
	case c.named != nil:
		p.named, p.proxyKeyName = c.named, c.named.Name
	case c.list == 1:
		p.proxyKeyName = domain.ProxyKeyGlobal
	}
	p.serve(v)
}

// denial is why a proxy key is refused.
type denial uint8

const (
	allow     denial = iota
	denyAuth         // unknown, disabled or expired key, or unknown group: 401
	denyGroup        // a named key on a group it may not use: 403
	denyLimit        // a named key over a limit: 429
)

// keyCheck is the outcome of checkKey.
type keyCheck struct {
	digest digest
	gs     *groupState
	list   int              // the unnamed list that holds the key: 0 the group's, 1 the global one, -1 none
	named  *domain.ProxyKey // the named key, when it is one
	deny   denial
	reason limits.Reason
	wait   time.Duration // until the limit admits again
}

// checkKey authenticates a client key for group gv (found false: no such group) and
// admits a named key under its groups and limits. The unnamed lists are compared in
// constant time; a named key is found by the SHA-256 of its secret, which reveals nothing
// of a 256-bit random secret. An unknown group and a group an unnamed key is not allowed
// in get the same answer, so group names cannot be probed with a proxy key of another
// group. It takes no lock and allocates nothing.
func (h *Handler) checkKey(v *projections.View, gv *projections.GroupView, found bool, key string, now time.Time) keyCheck {
	c := keyCheck{digest: digestOf(key)}
	global := h.groups.globalKeys(v)
	var allowed []digest
	if found {
		c.gs = h.groups.state(gv)
		allowed = c.gs.keys
	}
	c.list = keyAllowed(&c.digest, allowed, global)
	if !found {
		c.deny = denyAuth
		return c
	}
	if c.list >= 0 {
		return c
	}
	k, ok := v.NamedKey((*domain.KeyHash)(&c.digest))
	switch {
	case !ok || !k.Enabled || k.Expired(now):
		c.deny = denyAuth
		return c
	case !k.MayUse(gv.ID):
		c.deny = denyGroup
		return c
	}
	c.named = k
	h.limits.Sync(v.NamedKeysVersion(), v.NamedKeys())
	if c.reason, c.wait = h.limits.Admit(k, now.UnixNano()); c.reason != limits.Admitted {
		c.deny = denyLimit
	}
	return c
}

// writeDenial answers a named key's refusal: 403 outside its groups, 429 with Retry-After
// over a limit, in the provider's error shape.
func writeDenial(w http.ResponseWriter, shape channel.Shape, c keyCheck) {
	if c.deny == denyGroup {
		writeError(w, shape, http.StatusForbidden, channel.CodeForbidden, "This proxy key may not use this group")
		return
	}
	w.Header().Set("Retry-After", strconv.FormatInt(int64((c.wait+time.Second-1)/time.Second), 10))
	switch c.reason {
	case limits.DailyQuota:
		writeError(w, shape, http.StatusTooManyRequests, channel.CodeQuota, "The daily token quota of this proxy key is spent; it renews at 00:00 UTC")
	case limits.MonthlyQuota:
		writeError(w, shape, http.StatusTooManyRequests, channel.CodeQuota, "The monthly token quota of this proxy key is spent; it renews on the 1st at 00:00 UTC")
	case limits.OverTPM:
		writeError(w, shape, http.StatusTooManyRequests, channel.CodeTooMany, "This proxy key is over its tokens-per-minute limit")
	default:
		writeError(w, shape, http.StatusTooManyRequests, channel.CodeTooMany, "This proxy key is over its requests-per-minute limit")
	}
}

// digestOf hashes a client key. The key's bytes are read in place: a conversion to
// []byte would allocate for every key longer than 32 bytes, which generated secrets are.
// Sum256 only reads its input.
func digestOf(key string) digest {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(key), len(key)))
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
