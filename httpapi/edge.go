package httpapi

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/cors"

	"gpt-load/proxy/channel"
)

// CORS is the cross-origin setting (ENABLE_CORS and its lists, API.md 0.5 and 8). It
// applies to the whole router: health, the admin API and the proxy.
type CORS struct {
	Enabled bool
	// AllowedOrigins are compared with the request's Origin; "*" allows every origin. The
	// allowed origin is echoed, never "*", so credentials work with it.
	AllowedOrigins []string
	// AllowedMethods and AllowedHeaders answer preflights; "*" in AllowedHeaders allows
	// any header.
	AllowedMethods   []string
	AllowedHeaders   []string
	AllowCredentials bool
}

// handler is the CORS middleware, or nil when CORS is off. A preflight (OPTIONS with
// Origin and Access-Control-Request-Method) is answered here and goes no further, so it
// needs no credential; an origin that is not allowed gets no CORS header at all.
func (c CORS) handler() func(http.Handler) http.Handler {
	if !c.Enabled {
		return nil
	}
	all := false
	origins := map[string]bool{}
	for _, o := range c.AllowedOrigins {
		if o == "*" {
			all = true
		}
		origins[strings.ToLower(strings.TrimRight(o, "/"))] = true
	}
	return cors.New(cors.Options{
		AllowOriginFunc: func(_ *http.Request, origin string) bool {
			return origin != "" && (all || origins[strings.ToLower(origin)])
		},
		AllowedMethods:   c.AllowedMethods,
		AllowedHeaders:   c.AllowedHeaders,
		AllowCredentials: c.AllowCredentials,
	}).Handler
}

// Request body limits per route (issue: nothing is read before the caller is known, and
// nothing larger than the route needs).
const (
	// maxLoginBody: {"auth_key": "..."} with room for a long key.
	maxLoginBody = 4 << 10
	// maxJSONBody: a synchronous batch of domain.MaxSyncKeys keys of ordinary length
	// (a few hundred bytes) with room to spare, and any group or settings body (a group
	// with every field at its limit is under 1 MiB). A batch of 5,000 keys near
	// domain.MaxKeyBytes each is larger: such batches go to the async routes.
	maxJSONBody = 5 << 20
	// maxAsyncJSONBody: key text of any number of keys for add-async and delete-async
	// (a key file is better sent as a multipart upload, read as a stream).
	maxAsyncJSONBody = 256 << 20
	// maxUploadBody: a multipart key file.
	maxUploadBody = 1 << 30
)

// limitBody refuses a request whose declared length is over n (413, nothing read) and
// stops reading a body without a length (chunked) after n bytes.
func limitBody(n int64) func(http.Handler) http.Handler {
	return limitBodyWith(n, tooLarge)
}

// limitBodyWith is limitBody answering a declared length over n with refuse.
func limitBodyWith(n int64, refuse func(w http.ResponseWriter, r *http.Request, n int64)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > n {
				refuse(w, r, n)
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, n)
			next.ServeHTTP(w, r)
		})
	}
}

func tooLarge(w http.ResponseWriter, r *http.Request, n int64) {
	// The connection is closed after the answer: the rest of the body is never read.
	w.Header().Set("Connection", "close")
	fail(w, r, errTooLarge(n))
}

func errTooLarge(n int64) *apiError {
	return &apiError{status: http.StatusRequestEntityTooLarge, code: codeBadRequest,
		text: fmt.Sprintf("the request body is larger than %d bytes", n)}
}

// loginTooLarge is tooLarge in the answer shape of login (API.md 1.2).
func loginTooLarge(w http.ResponseWriter, r *http.Request, n int64) {
	w.Header().Set("Connection", "close")
	writeJSON(w, http.StatusRequestEntityTooLarge, loginBody{Message: errTooLarge(n).message(langOf(r))})
}

// limitAddAsync is the body limit of add-async: a multipart upload or a JSON body.
func limitAddAsync(next http.Handler) http.Handler {
	upload, asJSON := limitBody(maxUploadBody)(next), limitBody(maxAsyncJSONBody)(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isMultipart(r) {
			upload.ServeHTTP(w, r)
			return
		}
		asJSON.ServeHTTP(w, r)
	})
}

// inflight bounds the requests a group of routes serves at once: beyond it a request is
// answered 429 with Retry-After at once.
type inflight chan struct{}

func newInflight(n int) inflight {
	if n <= 0 {
		n = defaultMaxRequests
	}
	return make(inflight, n)
}

// defaultMaxRequests is the admin API's bound when Deps.MaxRequests is not set, the
// default of MAX_CONCURRENT_REQUESTS.
const defaultMaxRequests = 100

func (l inflight) limit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case l <- struct{}{}:
		default:
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusTooManyRequests, errorBody{Code: codeTooMany, Message: tr(r, msgTooManyRequests)})
			return
		}
		defer func() { <-l }()
		next.ServeHTTP(w, r)
	})
}

// retryAfterStarting is the Retry-After of answers given while the node replays its log.
const retryAfterStarting = 2 * time.Second

// proxyWhenReady answers proxied requests with 503 and Retry-After until the projections
// have caught up with the log, in the error shape the provider's SDK reads (the group's
// channel when the state read so far knows it, OpenAI's otherwise): a node still replaying
// would answer 404 for groups that exist, or serve keys the log has already removed.
func (a *admin) proxyWhenReady(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.d.Ready.CaughtUp() {
			next.ServeHTTP(w, r)
			return
		}
		shape := channel.ShapeOpenAI
		if g, ok := a.state.View().GroupByName(chi.URLParam(r, "group")); ok {
			shape = channel.ShapeFor(g.ChannelType, "/"+chi.URLParam(r, "*"))
		}
		body := channel.ErrorBody(shape, http.StatusServiceUnavailable, codeUnavailable,
			"The service is starting: it is still reading its event log")
		h := w.Header()
		h.Set("Retry-After", strconv.Itoa(int(retryAfterStarting/time.Second)))
		h.Set(headerContentType, contentTypeJSON)
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write(body)
	})
}
