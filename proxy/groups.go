package proxy

import (
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gpt-load/domain"
	"gpt-load/projections"
	"gpt-load/proxy/channel"
)

// groupState is what the proxy derives from one group's configuration: digests of its
// proxy keys, parsed upstreams with their weighted rotation, the HTTP client of its
// effective transport settings, the parsed param overrides. It is built once per change of
// the group or of its effective settings and shared by all requests.
type groupState struct {
	group *domain.Group
	eff   domain.Settings

	ch        channel.Channel
	keys      []digest
	upstreams []upstream
	uwrr      *wrr
	members   []uint64 // aggregate: member ids with weight > 0
	mwrr      *wrr
	client    *http.Client
	overrides map[string]json.RawMessage
}

// do sends an upstream request. It goes straight to the transport; a redirect (API.md
// 7.2) is followed from its Location by the client, which follows any further ones. The
// client's per-request bookkeeping is not worth paying on every call.
func (gs *groupState) do(req *http.Request) (*http.Response, error) {
	resp, err := gs.client.Transport.RoundTrip(req)
	if err != nil || !isRedirect(resp) {
		return resp, err
	}
	loc, err := resp.Location()
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	next := req.Clone(req.Context())
	next.URL, next.Host = loc, loc.Host
	next.Body, next.GetBody, next.ContentLength = nil, nil, 0
	switch {
	case resp.StatusCode == http.StatusTemporaryRedirect || resp.StatusCode == http.StatusPermanentRedirect:
		if req.GetBody != nil {
			if next.Body, err = req.GetBody(); err != nil {
				return nil, err
			}
			next.GetBody, next.ContentLength = req.GetBody, req.ContentLength
		}
	case req.Method != http.MethodGet && req.Method != http.MethodHead:
		next.Method = http.MethodGet
		next.Header.Del("Content-Type")
	}
	if loc.Host != req.URL.Host {
		stripCredentials(next)
	}
	return gs.client.Do(next)
}

func isRedirect(resp *http.Response) bool {
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return resp.Header.Get("Location") != ""
	}
	return false
}

type upstream struct {
	raw     string
	scheme  string
	host    string
	path    string // unescaped, without trailing '/'
	rawPath string // escaped form of path
}

func newGroupState(g *domain.Group, eff domain.Settings, clients *transports) *groupState {
	gs := &groupState{group: g, eff: eff, ch: channel.For(g.ChannelType), keys: digestsOf(domain.SplitProxyKeys(g.ProxyKeys))}
	if g.Type == domain.GroupAggregate {
		var weights []int
		for _, sg := range g.SubGroups {
			if sg.Weight > 0 {
				gs.members = append(gs.members, sg.GroupID)
				weights = append(weights, sg.Weight)
			}
		}
		gs.mwrr = newWRR(weights)
		return gs
	}
	var weights []int
	for _, u := range g.Upstreams {
		if u.Weight <= 0 {
			continue
		}
		pu, err := url.Parse(strings.TrimSpace(u.URL))
		if err != nil || pu.Host == "" {
			continue
		}
		p := strings.TrimRight(pu.Path, "/")
		rp := strings.TrimRight(pu.EscapedPath(), "/")
		gs.upstreams = append(gs.upstreams, upstream{raw: u.URL, scheme: pu.Scheme, host: pu.Host, path: p, rawPath: rp})
		weights = append(weights, u.Weight)
	}
	gs.uwrr = newWRR(weights)
	if len(g.ParamOverrides) > 0 {
		var m map[string]json.RawMessage
		if json.Unmarshal(g.ParamOverrides, &m) == nil && len(m) > 0 {
			gs.overrides = m
		}
	}
	gs.client = clients.client(transportConfigOf(eff))
	return gs
}

// maxWRRPeriod bounds the precomputed rotation; larger weight sums are scaled down.
const maxWRRPeriod = 4096

// wrr is a smooth weighted round robin (the nginx sequence: for weights 5,1,1 it gives
// a a b a c a a), precomputed once so that picking is one atomic add: no lock, no
// allocation.
type wrr struct {
	seq []uint16
	n   atomic.Uint64
}

func newWRR(weights []int) *wrr {
	w := &wrr{}
	if len(weights) == 0 {
		return w
	}
	sum := 0
	for _, x := range weights {
		sum += x
	}
	ws := append([]int(nil), weights...)
	if sum > maxWRRPeriod {
		// Scale down, keeping every member at least once.
		total := 0
		for i, x := range ws {
			ws[i] = max(1, int(int64(x)*maxWRRPeriod/int64(sum)))
			total += ws[i]
		}
		sum = total
	}
	cur := make([]int, len(ws))
	w.seq = make([]uint16, sum)
	for k := range w.seq {
		best := -1
		for i, x := range ws {
			cur[i] += x
			if best < 0 || cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= sum
		w.seq[k] = uint16(best)
	}
	return w
}

// next returns the index of the next member, or -1 when there is none.
func (w *wrr) next() int {
	if len(w.seq) == 0 {
		return -1
	}
	return int(w.seq[(w.n.Add(1)-1)%uint64(len(w.seq))])
}

// nextExcept returns the next member other than avoid when there is one.
func (w *wrr) nextExcept(avoid int) int {
	i := w.next()
	if i != avoid || avoid < 0 {
		return i
	}
	for range len(w.seq) {
		if j := w.next(); j != avoid {
			return j
		}
	}
	return i
}

// transportConfig is what an upstream HTTP transport is built from.
type transportConfig struct {
	connect, idle, header time.Duration
	maxIdle, maxPerHost   int
	proxyURL              string
}

func transportConfigOf(s domain.Settings) transportConfig {
	return transportConfig{
		connect:    time.Duration(s.ConnectTimeout) * time.Second,
		idle:       time.Duration(s.IdleConnTimeout) * time.Second,
		header:     time.Duration(s.ResponseHeaderTimeout) * time.Second,
		maxIdle:    s.MaxIdleConns,
		maxPerHost: s.MaxIdleConnsPerHost,
		proxyURL:   strings.TrimSpace(s.ProxyURL),
	}
}

// transports shares one HTTP client per distinct transport configuration, so groups with
// the same settings share their connection pools; a configuration nobody uses any more
// has its idle connections closed.
type transports struct {
	mu      sync.Mutex
	clients map[transportConfig]*http.Client
	// dial replaces the network dialer (tests and benchmarks without network).
	rt func(transportConfig) http.RoundTripper
}

func newTransports(rt func(transportConfig) http.RoundTripper) *transports {
	return &transports{clients: map[transportConfig]*http.Client{}, rt: rt}
}

func (t *transports) client(c transportConfig) *http.Client {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cl, ok := t.clients[c]; ok {
		return cl
	}
	var rt http.RoundTripper
	if t.rt != nil {
		rt = t.rt(c)
	} else {
		rt = newTransport(c)
	}
	cl := &http.Client{Transport: rt, CheckRedirect: checkRedirect}
	t.clients[c] = cl
	return cl
}

// retain closes the idle connections of clients whose configuration is not in use.
func (t *transports) retain(used map[transportConfig]bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c, cl := range t.clients {
		if !used[c] {
			cl.CloseIdleConnections()
			delete(t.clients, c)
		}
	}
}

func (t *transports) closeIdle() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, cl := range t.clients {
		cl.CloseIdleConnections()
	}
}

// newTransport builds a transport from the effective settings: connect, response-header and
// idle timeouts, idle pool sizes, and the outbound proxy (proxy_url: http, https or socks5;
// empty or unparsable: HTTP_PROXY, HTTPS_PROXY and NO_PROXY). Responses are not
// decompressed: bodies go to the client as the upstream sent them.
func newTransport(c transportConfig) *http.Transport {
	proxy := http.ProxyFromEnvironment
	if c.proxyURL != "" {
		if u, err := url.Parse(c.proxyURL); err == nil && u.Host != "" {
			switch strings.ToLower(u.Scheme) {
			case "http", "https", "socks5", "socks5h":
				proxy = http.ProxyURL(u)
			}
		}
	}
	return &http.Transport{
		Proxy:                 proxy,
		DialContext:           (&net.Dialer{Timeout: c.connect, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          c.maxIdle,
		MaxIdleConnsPerHost:   c.maxPerHost,
		IdleConnTimeout:       c.idle,
		TLSHandshakeTimeout:   c.connect,
		ResponseHeaderTimeout: c.header,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
}

// checkRedirect follows up to 10 redirects and drops credentials on a cross-host one
// (API.md 7.2); net/http itself drops Authorization there.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 9 { // the first redirect was followed before the client took over
		return http.ErrUseLastResponse
	}
	if req.URL.Host != via[0].URL.Host {
		stripCredentials(req)
	}
	return nil
}

// stripCredentials removes every way an upstream key travels from a request sent to
// another host.
func stripCredentials(req *http.Request) {
	for _, h := range []string{"Authorization", "X-Api-Key", "Api-Key", "X-Goog-Api-Key", "X-Auth-Token"} {
		req.Header.Del(h)
	}
	q := req.URL.Query()
	if q.Has("key") {
		q.Del("key")
		req.URL.RawQuery = q.Encode()
	}
}

// groupCache keeps the derived state of every group, rebuilt when a group or its
// effective settings change, and the digests of the global proxy keys.
type groupCache struct {
	clients *transports
	states  sync.Map // group id → *groupState
	global  atomic.Pointer[globalKeys]
	mu      sync.Mutex // serialises pruning
}

type globalKeys struct {
	view *projections.View
	keys []digest
}

// state returns the derived state of a group of view v.
func (c *groupCache) state(gv *projections.GroupView) *groupState {
	if s, ok := c.states.Load(gv.ID); ok {
		gs := s.(*groupState)
		if gs.group == gv.Group && gs.eff == gv.Effective {
			return gs
		}
	}
	gs := newGroupState(gv.Group, gv.Effective, c.clients)
	c.states.Store(gv.ID, gs)
	return gs
}

// globalKeys returns the digests of the global proxy keys of view v; the first request
// after a view change also drops the state of deleted groups and unused transports.
func (c *groupCache) globalKeys(v *projections.View) []digest {
	if g := c.global.Load(); g != nil && g.view == v {
		return g.keys
	}
	g := &globalKeys{view: v, keys: digestsOf(domain.SplitProxyKeys(v.Settings.ProxyKeys))}
	c.global.Store(g)
	c.prune(v)
	return g.keys
}

func (c *groupCache) prune(v *projections.View) {
	if !c.mu.TryLock() {
		return
	}
	defer c.mu.Unlock()
	used := map[transportConfig]bool{}
	c.states.Range(func(k, s any) bool {
		gv, ok := v.Group(k.(uint64))
		if !ok {
			c.states.Delete(k)
			return true
		}
		gs := s.(*groupState)
		if gs.client != nil {
			used[transportConfigOf(gs.eff)] = true
		}
		if gs.group == gv.Group && gs.eff == gv.Effective || gv.Type == domain.GroupAggregate {
			return true
		}
		used[transportConfigOf(gv.Effective)] = true
		return true
	})
	c.clients.retain(used)
}
