package proxy

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"gpt-load/domain"
	"gpt-load/projections"
	"gpt-load/proxy/channel"
)

// request is the state of one proxied request across its attempts.
type request struct {
	h     *Handler
	w     http.ResponseWriter
	r     *http.Request
	start time.Time
	shape channel.Shape

	rest     string // escaped path after /proxy/{group}
	rawQuery string // client query without the proxy key
	group    *projections.GroupView
	gs       *groupState

	serving *projections.GroupView // the group whose keys and settings serve (a member for aggregates)
	ss      *groupState
	parent  *projections.GroupView // the aggregate, when used through one

	body      []byte
	stream    bool
	model     string
	modelList bool        // a model list to rewrite (API.md 7.5)
	hdr       http.Header // the first attempt's upstream header
	hdrUsed   bool
	restPath  string // unescaped rest (after a Gemini path redirect)
	clientIP  string
	logPath   string

	proxyKeyFP   [6]byte // the first bytes of the proxy key's SHA-256 (domain.ProxyKeyFingerprint)
	proxyKeyName string
	named        *domain.ProxyKey // the named proxy key, when the client used one
	upstreamNS   int64            // the latest attempt's wait for the upstream's headers; 0 once logged

	conv         uint64    // the conversation the body names, with prompt-cache affinity on; 0: none
	convPicked   bool      // the first pick looked the conversation up
	now          int64     // Unix ns: the request's start, then the end of its latest attempt
	tried        [8]uint64 // the first keys this request has tried
	ntried       int
	triedMore    []uint64 // and the others
	lastUpstream int
}

// failure is a failed attempt: what the upstream (or the transport) said and what it means.
type failure struct {
	status    int // upstream status; 0 for a transport error
	kind      domain.FailureKind
	msg       string // masked
	err       error  // transport error
	body      []byte // upstream body (bounded), raw
	header    http.Header
	retryable bool
	relay     bool   // the final answer is the upstream's response as it is (an empty 200)
	upstream  string // upstream URL for the log
}

func (p *request) serve(v *projections.View) {
	h := p.h
	p.lastUpstream = -1
	p.now = p.start.UnixNano()
	p.clientIP = h.clientIP(p.r)
	p.logPath = logPath(p.r.URL.EscapedPath(), p.rawQuery)

	var first poolKey
	var haveFirst bool
	if p.group.Type == domain.GroupAggregate {
		member, key, ok := p.chooseMember(v)
		if !ok {
			p.ownError(http.StatusServiceUnavailable, channel.CodeNoKeys, "No available sub-groups", poolKey{})
			return
		}
		p.serving, p.ss, p.parent = member, h.groups.state(member), p.group
		first, haveFirst = key, true
	} else {
		p.serving, p.ss = p.group, p.gs
	}

	if !p.readBody() {
		return
	}
	if p.serving.Effective.PromptCacheAffinity {
		// The client's own body names the conversation, before any override.
		p.conv, _ = h.affinity.conversation(p.serving.ID, p.body)
		if haveFirst && p.conv != 0 {
			// An aggregate chose its member and a key before the body was read: the
			// conversation's key of that member, when usable, serves instead.
			p.convPicked = true
			if k, ok := p.affinityPick(p.now); ok && k.ID != first.ID {
				p.markTried(k.ID)
				first = k
			}
		}
	}
	ch := p.ss.ch
	p.stream = ch.Stream(p.r, p.body)
	if p.ss.overrides != nil && len(p.body) > 0 {
		if b, ok := channel.SetFields(p.body, p.ss.overrides); ok {
			p.body = b
		}
	}
	p.model = ch.Model(p.rest, p.body)
	if !p.redirect() {
		return
	}
	p.restPath = unescapePath(p.rest)
	p.modelList = p.r.Method == http.MethodGet && isModelList(p.rest) &&
		(len(p.serving.ModelRedirectRules) > 0 || p.serving.ModelRedirectStrict)
	p.hdr = p.upstreamHeader()

	key := first
	if !haveFirst {
		var ok bool
		if key, ok = p.pick(false); !ok {
			if spent, next := p.serving.BudgetSpent(p.now); spent {
				// upstream_key_rpm/tpm: every key used its minute; the next one serves.
				p.w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(next.Sub(time.Unix(0, p.now)).Seconds())), 10))
				p.ownError(http.StatusTooManyRequests, channel.CodeTooMany, "Every key of this group used its budget for this minute", poolKey{})
				return
			}
			p.ownError(http.StatusServiceUnavailable, channel.CodeNoKeys, "No active API keys available for this group", poolKey{})
			return
		}
	}
	maxRetries := p.serving.Effective.MaxRetries
	for attempt := 0; ; attempt++ {
		f := p.attempt(key, attempt < maxRetries)
		if f == nil {
			return
		}
		var next poolKey
		more := false
		if attempt < maxRetries && f.retryable {
			next, more = p.pick(f.kind == domain.FailureUpstream || f.kind == domain.FailureNone)
		}
		if more {
			p.logFailure(f, key, domain.RequestRetry)
			key = next
			continue
		}
		p.logFailure(f, key, domain.RequestFinal)
		p.answerFailure(f, key)
		return
	}
}

// chooseMember picks an aggregate's member by smooth weighted round robin, skipping
// members without a usable key (each tried once), and returns the key it found there.
func (p *request) chooseMember(v *projections.View) (*projections.GroupView, poolKey, bool) {
	members := p.gs.members
	n := len(members)
	if n == 0 {
		return nil, poolKey{}, false
	}
	tried := make([]bool, n)
	count := 0
	for range len(p.gs.mwrr.seq) + n {
		i := p.gs.mwrr.next()
		if i < 0 {
			break
		}
		if tried[i] {
			continue
		}
		tried[i] = true
		count++
		if mg, ok := v.Group(members[i]); ok && mg.Type == domain.GroupStandard {
			p.serving = mg
			if k, ok := p.pick(false); ok {
				return mg, k, true
			}
		}
		if count == n {
			break
		}
	}
	return nil, poolKey{}, false
}

// pick selects the next usable key of the serving group that this request has not tried
// yet: the attempts of one request are bounded by the distinct keys it can use. Only a
// group of a single key may try it again (with reuse, after a failure that does not blame
// the key), so that its retries can reach another upstream.
func (p *request) pick(reuse bool) (poolKey, bool) {
	now := p.now
	if p.conv != 0 && !p.convPicked {
		p.convPicked = true
		if k, ok := p.affinityPick(now); ok && !p.triedKey(k.ID) {
			p.markTried(k.ID)
			return k, true
		}
	}
	// Other requests move the round robin too: allow a few more picks than keys tried.
	for range p.ntried + 8 {
		k, ok := p.serving.Pick(now)
		if !ok {
			break
		}
		if !p.triedKey(k.ID) {
			p.markTried(k.ID)
			return k, true
		}
		if reuse && p.serving.Pool().Len() == 1 {
			return k, true
		}
	}
	return poolKey{}, false
}

func (p *request) markTried(id uint64) {
	if p.ntried < len(p.tried) {
		p.tried[p.ntried] = id
	} else {
		p.triedMore = append(p.triedMore, id)
	}
	p.ntried++
}

func (p *request) triedKey(id uint64) bool {
	for _, t := range p.tried[:min(p.ntried, len(p.tried))] {
		if t == id {
			return true
		}
	}
	for _, t := range p.triedMore {
		if t == id {
			return true
		}
	}
	return false
}

// readBody reads the whole body once, bounded by MaxBodyBytes (413 beyond it).
func (p *request) readBody() bool {
	r := p.r
	if r.Body == nil || r.Body == http.NoBody {
		return true
	}
	limit := p.h.cfg.MaxBodyBytes
	if r.ContentLength > limit {
		p.ownError(http.StatusRequestEntityTooLarge, channel.CodeTooLarge, fmt.Sprintf("Request body exceeds the limit of %d bytes", limit), poolKey{})
		return false
	}
	var buf []byte
	if r.ContentLength > 0 {
		buf = make([]byte, 0, r.ContentLength+1)
	} else {
		buf = make([]byte, 0, 4096)
	}
	lr := io.LimitReader(r.Body, limit+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			if p.r.Context().Err() != nil {
				p.logOwn(499, "client closed the request", poolKey{})
				return false
			}
			p.ownError(http.StatusBadRequest, channel.CodeBadRequest, "Failed to read request body", poolKey{})
			return false
		}
	}
	if int64(len(buf)) > limit {
		p.ownError(http.StatusRequestEntityTooLarge, channel.CodeTooLarge, fmt.Sprintf("Request body exceeds the limit of %d bytes", limit), poolKey{})
		return false
	}
	p.body = buf
	return true
}

// redirect applies the serving group's model_redirect_rules (API.md 7.8); false when
// strict mode refused the model (the answer is written).
func (p *request) redirect() bool {
	rules := p.serving.ModelRedirectRules
	if len(rules) == 0 {
		return true
	}
	strict := p.serving.ModelRedirectStrict
	if p.serving.ChannelType == domain.ChannelGemini && !channel.IsGeminiOpenAI(p.rest) {
		name, at, ok := channel.GeminiPathModel(p.rest)
		if !ok {
			return true
		}
		model := unescapePath(name)
		if to, ok := rules[model]; ok {
			p.rest = p.rest[:at] + url.PathEscape(to) + p.rest[at+len(name):]
			return true
		}
		if strict {
			p.refuseModel(model)
			return false
		}
		return true
	}
	if len(p.body) == 0 {
		return true
	}
	model, ok := channel.StringField(p.body, "model")
	if !ok {
		return true
	}
	if to, ok := rules[model]; ok {
		p.body = channel.ReplaceStringField(p.body, "model", to)
		return true
	}
	if strict {
		p.refuseModel(model)
		return false
	}
	return true
}

func (p *request) refuseModel(model string) {
	p.ownError(http.StatusBadRequest, channel.CodeBadRequest, fmt.Sprintf("model '%s' is not configured in redirect rules", model), poolKey{})
}

// attempt makes one upstream call with key. It returns nil when the outcome is settled
// (the response is written, or the client went away), else the failure.
func (p *request) attempt(key poolKey, more bool) *failure {
	h, ss := p.h, p.ss
	var ui int
	if p.lastUpstream >= 0 {
		ui = ss.uwrr.nextExcept(p.lastUpstream)
	} else {
		ui = ss.uwrr.next()
	}
	if ui < 0 {
		return &failure{kind: domain.FailureUpstream, err: errors.New("the group has no upstream with a weight above 0"), msg: "the group has no upstream with a weight above 0"}
	}
	up := &ss.upstreams[ui]
	u := &url.URL{Scheme: up.scheme, Host: up.host, Path: up.path + p.restPath, RawPath: up.rawPath + p.rest, RawQuery: p.rawQuery}
	upAddr := ""
	if h.logs != nil {
		upAddr = truncateString(u.String(), domain.MaxLogPathLen)
	}

	ctx := p.r.Context()
	cancel := context.CancelFunc(func() {})
	if !p.stream {
		ctx, cancel = context.WithTimeout(ctx, time.Duration(p.serving.Effective.RequestTimeout)*time.Second)
	}
	defer cancel()
	hdr := p.hdr
	if p.hdrUsed {
		hdr = p.upstreamHeader()
	}
	p.hdrUsed = true
	req := (&http.Request{
		Method: p.r.Method, URL: u, Host: u.Host,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: hdr,
	}).WithContext(ctx)
	if len(p.body) > 0 {
		body := p.body
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	} else if p.r.Body != nil && p.r.Body != http.NoBody {
		req.Body = http.NoBody
	}
	ss.ch.Auth(req, key.Value)
	if p.stream {
		req.Header.Set("X-Accel-Buffering", "no")
	}
	applyHeaderRules(req, p.serving.HeaderRules, headerVars{
		clientIP: p.clientIP, group: p.serving.Name, key: key.Value, now: time.Unix(0, p.now),
	})

	sent := h.cfg.Now()
	resp, err := ss.do(req)
	now := h.cfg.Now()
	p.now = now.UnixNano()
	if err == nil {
		p.upstreamNS = now.Sub(sent).Nanoseconds()
	}
	if err != nil {
		if p.r.Context().Err() != nil {
			p.logOwn(499, "client closed the request", key)
			return nil
		}
		msg := mask(transportMessage(err), key.Value)
		p.lastUpstream = ui
		return &failure{kind: domain.FailureUpstream, err: err, msg: msg, retryable: true, upstream: upAddr}
	}

	status := resp.StatusCode
	inFailover := p.serving.FailoverCodes.Contains(status)
	if status >= 400 || inFailover {
		raw, rerr := readBounded(resp.Body, maxErrorBody)
		resp.Body.Close()
		if rerr != nil && p.r.Context().Err() != nil {
			p.logOwn(499, "client closed the request", key)
			return nil
		}
		msg := channel.ErrorMessage(decodedForMessage(raw, resp.Header))
		kind := domain.ClassifyFailure(status, msg)
		f := &failure{status: status, kind: kind, msg: mask(msg, key.Value), body: raw, header: resp.Header, upstream: upAddr}
		switch kind {
		case domain.FailureAuth:
			h.health.authFailed(ss.group.ID, key, p.serving.Effective.BlacklistThreshold, status, f.msg, now)
		case domain.FailureRateLimit:
			h.health.rateLimited(ss.group.ID, key, status, f.msg, resp.Header, raw, now, h.cfg.RateLimitCooldown, h.cfg.MaxCooldown)
		case domain.FailureUpstream:
			p.lastUpstream = ui
		}
		f.retryable = inFailover || kind == domain.FailureAuth || kind == domain.FailureRateLimit
		if !f.retryable {
			// A client mistake (or a status the group does not fail over on): the answer
			// goes to the client as the upstream gave it.
			p.relayBuffered(resp, raw, key, upAddr, f.msg)
			return nil
		}
		return f
	}

	h.health.succeeded(ss.group.ID, key)
	if p.conv != 0 {
		h.affinity.put(p.conv, key.ID, p.now)
	}
	if p.modelList {
		p.answerModelList(resp, key, upAddr)
		return nil
	}
	if more && !p.stream && status == http.StatusOK && h.cfg.RetryEmptyAnswer != nil && h.cfg.RetryEmptyAnswer(p.serving) {
		raw, err := readBounded(resp.Body, p.h.cfg.MaxBodyBytes)
		resp.Body.Close()
		if err != nil {
			if p.r.Context().Err() != nil {
				p.logOwn(499, "client closed the request", key)
				return nil
			}
			return &failure{kind: domain.FailureUpstream, err: err, msg: mask(err.Error(), key.Value), retryable: true, upstream: upAddr}
		}
		if emptyAnswer(p.serving.ChannelType, p.rest, decodedForMessage(raw, resp.Header)) {
			return &failure{status: status, kind: domain.FailureNone, msg: "empty answer", body: raw, header: resp.Header, retryable: true, relay: true, upstream: upAddr}
		}
		p.relayBuffered(resp, raw, key, upAddr, "")
		return nil
	}
	if status >= 300 && status < 400 {
		// A redirect still unfollowed (too many of them) quotes the request URL, key
		// included, in its Location and often in its small body: masked in both.
		raw, _ := readBounded(resp.Body, maxErrorBody)
		resp.Body.Close()
		p.relayBuffered(resp, raw, key, upAddr, "")
		return nil
	}
	p.relay(resp, key, upAddr)
	return nil
}

const maxErrorBody = 64 << 10

func readBounded(r io.Reader, n int64) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r, n))
}

// decodedForMessage gunzips a body for reading its message; other encodings are read as
// they are.
func decodedForMessage(raw []byte, h http.Header) []byte {
	if !strings.EqualFold(h.Get("Content-Encoding"), "gzip") || len(raw) == 0 {
		return raw
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return raw
	}
	out, err := io.ReadAll(io.LimitReader(zr, 4*maxErrorBody))
	if err != nil && len(out) == 0 {
		return raw
	}
	return out
}

func transportMessage(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "upstream timed out: " + err.Error()
	}
	return "upstream connection failed: " + err.Error()
}

// answerFailure writes the final failure (API.md 7.6): the upstream's JSON error object
// with its status, else the proxy's error in the client's shape; the key is masked.
func (p *request) answerFailure(f *failure, key poolKey) {
	if f.relay {
		p.writeRaw(http.StatusOK, f.header, maskBytes(f.body, key.Value), key.Value)
		return
	}
	if f.status == 0 {
		writeError(p.w, p.shape, http.StatusInternalServerError, channel.CodeUpstream, f.msg)
		return
	}
	raw := decodedForMessage(f.body, f.header)
	if f.status == http.StatusTooManyRequests {
		if ra := f.header.Get("Retry-After"); ra != "" {
			p.w.Header().Set("Retry-After", ra)
		}
	}
	if channel.IsObject(raw) {
		body := maskBytes(raw, key.Value)
		hdr := p.w.Header()
		hdr.Set("Content-Type", "application/json; charset=utf-8")
		hdr.Set("Content-Length", fmt.Sprint(len(body)))
		p.w.WriteHeader(f.status)
		p.w.Write(body)
		return
	}
	writeError(p.w, p.shape, f.status, channel.CodeUpstream, mask(string(raw), key.Value))
}

// writeRaw writes a buffered upstream answer with its headers, key masked.
func (p *request) writeRaw(status int, h http.Header, body []byte, key string) {
	dst := p.w.Header()
	copyHeader(dst, h, key)
	dst.Set("Content-Length", fmt.Sprint(len(body)))
	p.w.WriteHeader(status)
	p.w.Write(body)
}

// relayBuffered sends a response whose body start was read already (raw) and whose rest
// is still in resp.Body (closed by the caller when fully buffered).
func (p *request) relayBuffered(resp *http.Response, raw []byte, key poolKey, upAddr, errMsg string) {
	dst := p.w.Header()
	copyHeader(dst, resp.Header, key.Value)
	if resp.StatusCode >= 300 {
		// An error or a redirect may echo the request, key included.
		var plain bool
		if raw, plain = maskBody(raw, resp.Header, key.Value); plain {
			dst.Del("Content-Encoding")
		}
	}
	dst.Set("Content-Length", fmt.Sprint(len(raw)))
	p.w.WriteHeader(resp.StatusCode)
	_, werr := p.w.Write(raw)
	status := resp.StatusCode
	if werr != nil {
		status, errMsg = 499, "client closed the connection"
	}
	u, _ := channel.FindUsage(raw)
	p.logRecord(domain.RequestFinal, key, status, errMsg == "" && status < 400, errMsg, upAddr, u)
}

// logFailure records a failed attempt.
func (p *request) logFailure(f *failure, key poolKey, typ string) {
	status := f.status
	if f.status == 0 {
		status = http.StatusInternalServerError
	}
	p.logRecord(typ, key, status, false, f.msg, f.upstream, channel.Usage{})
}

// ownError answers an error the proxy decided itself (no upstream answer involved) and
// logs it as final.
func (p *request) ownError(status int, code, msg string, key poolKey) {
	writeError(p.w, p.shape, status, code, msg)
	p.logOwn(status, msg, key)
}

func (p *request) logOwn(status int, msg string, key poolKey) {
	p.logRecord(domain.RequestFinal, key, status, false, msg, "", channel.Usage{})
}

func (p *request) logRecord(typ string, key poolKey, status int, success bool, errMsg, upAddr string, u channel.Usage) {
	serving := p.serving
	if serving == nil {
		serving = p.group
	}
	now := p.h.cfg.Now()
	u = u.Final()
	if u.Prompt == 0 && u.Completion == 0 {
		u = channel.Usage{}
	}
	if p.named != nil {
		p.h.limits.Charge(p.named.ID, u.Prompt+u.Completion, now.UnixNano())
	}
	if serving.Budget.Tokens != 0 {
		key.Spend(u.Total, now.UnixNano())
	}
	logs := p.h.logs
	if logs == nil {
		return
	}
	rec := logPool.Get().(*domain.RequestLog)
	defer func() { *rec = domain.RequestLog{}; logPool.Put(rec) }()
	*rec = domain.RequestLog{
		ID:           domain.NewRequestID(now),
		Timestamp:    now,
		GroupID:      serving.ID,
		GroupName:    serving.Name,
		KeyID:        key.ID,
		KeyValue:     key.Value,
		Model:        p.model,
		IsSuccess:    success,
		SourceIP:     p.clientIP,
		StatusCode:   status,
		RequestPath:  p.logPath,
		DurationMS:   now.Sub(p.start).Milliseconds(),
		ErrorMessage: errMsg,
		RequestType:  typ,
		UpstreamAddr: upAddr,
		IsStream:     p.stream,

		PromptTokens:     u.Prompt,
		CompletionTokens: u.Completion,
		TotalTokens:      u.Total,

		ProxyKeyFP:   hex.EncodeToString(p.proxyKeyFP[:]),
		ProxyKeyName: p.proxyKeyName,
		ProxyKeyID:   p.proxyKeyID(),
		UpstreamNS:   p.upstreamNS,
	}
	p.upstreamNS = 0
	if p.parent != nil {
		rec.ParentGroupID, rec.ParentGroupName = p.parent.ID, p.parent.Name
	}
	if serving.Effective.EnableRequestBodyLogging {
		rec.UserAgent = p.r.UserAgent()
		rec.RequestBody = truncateString(string(p.body), domain.MaxLogBodyLen)
	}
	logs.Record(rec)
}

func (p *request) proxyKeyID() uint64 {
	if p.named == nil {
		return 0
	}
	return p.named.ID
}

func logPath(escapedPath, rawQuery string) string {
	s := escapedPath
	if rawQuery != "" {
		s += "?" + rawQuery
	}
	return truncateString(s, domain.MaxLogPathLen)
}

// truncateString cuts s to at most n bytes on a rune boundary.
func truncateString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

func unescapePath(p string) string {
	if !strings.Contains(p, "%") {
		return p
	}
	u, err := url.PathUnescape(p)
	if err != nil {
		return p
	}
	return u
}

// Hop-by-hop headers are not forwarded (RFC 9110 7.6.1).
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func isHop(k string) bool {
	for _, h := range hopHeaders {
		if k == h {
			return true
		}
	}
	return false
}

// upstreamHeader builds the header of an upstream request (each attempt gets its own,
// since the key and header rules are set on it).
func (p *request) upstreamHeader() http.Header {
	h := upstreamHeader(p.r.Header)
	if p.modelList {
		h.Del("Accept-Encoding")
	}
	return h
}

// upstreamHeader is the client's header minus credentials, cookies, hop-by-hop headers
// (Proxy-Authorization among them) and those the transport writes itself.
func upstreamHeader(in http.Header) http.Header {
	out := make(http.Header, len(in))
	var connTokens string
	if c := in["Connection"]; len(c) > 0 {
		connTokens = strings.Join(c, ",")
	}
	for k, v := range in {
		switch k {
		case "Authorization", "X-Api-Key", "X-Goog-Api-Key", "Api-Key", "Content-Length", "Host",
			// The client's own session with the proxy, none of the provider's business (a
			// header rule may still set them).
			"Cookie", "Cookie2":
			continue
		}
		if isHop(k) {
			continue
		}
		out[k] = v
	}
	if connTokens != "" {
		for tok := range strings.SplitSeq(connTokens, ",") {
			out.Del(strings.TrimSpace(tok))
		}
	}
	if ae := out.Get("Accept-Encoding"); ae != "" && ae != "gzip" && acceptsGzip(ae) {
		// Of what the client accepts, ask for gzip alone: the proxy can read a gzipped
		// answer for its token usage, not a brotli or zstd one.
		out["Accept-Encoding"] = []string{"gzip"}
	}
	if _, ok := out["User-Agent"]; !ok {
		out["User-Agent"] = []string{""} // send none rather than Go's
	}
	return out
}

// acceptsGzip reports whether an Accept-Encoding value names gzip (without q=0).
func acceptsGzip(ae string) bool {
	for part := range strings.SplitSeq(ae, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(name), "gzip") {
			q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}

// copyHeader copies an upstream answer's end-to-end headers, with the upstream key
// masked in every value: a Location or Link may quote the request URL, ?key= included.
func copyHeader(dst, src http.Header, key string) {
	for k, v := range src {
		if isHop(k) || k == "Content-Length" {
			continue
		}
		dst[k] = maskValues(v, key)
	}
}

// logPool recycles request-log records: LogRecorder.Record does not keep them.
var logPool = sync.Pool{New: func() any { return new(domain.RequestLog) }}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
