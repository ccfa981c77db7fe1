package events

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"

	"gpt-load/domain"
)

// Request logs travel in batches: one JetStream message holds the records of a few
// milliseconds of traffic as JSON lines, one record per line. A message per record costs
// about ten times more CPU per record (JETSTREAM.md 2.7), a noticeable share of a proxied
// request.
//
// Every node publishes its batches on the one subject ReqLogSubject, records of all groups
// mixed: per-group subjects would split the traffic of a node into many small messages and
// buy nothing, since the SQL projector reads the whole stream anyway and each record names
// its group.
const (
	ReqLogSubject = "gl.reqlog.batch"
	reqLogType    = "reqlog.batch"
	reqLogSchema  = 1
	hdrCount      = "Gl-Count"
)

// ReqLogConfig tunes the request-log publisher. Zero values take the defaults.
type ReqLogConfig struct {
	Node   string  // recorded in every message
	Cipher *Cipher // encrypts key values and computes key hashes; nil: no encryption
	// MaxRecords and MaxBytes close a batch (defaults 256 records, 256 KiB); Linger is the
	// longest a record waits for its batch to fill (default 5 ms).
	MaxRecords int
	MaxBytes   int
	Linger     time.Duration
	// MaxQueuedBytes bounds the encoded records held in this process that JetStream has not
	// acknowledged yet (default 64 MiB). Past it new records are dropped, counted and
	// logged: the one case where a record is lost, when the log stream has been
	// unreachable for long enough to fill it.
	MaxQueuedBytes int64
	// AckWait is how long a published batch may wait for its acknowledgement before it is
	// published again (default 30 s); the message id makes the repeat harmless.
	AckWait time.Duration
}

func (c *ReqLogConfig) setDefaults() {
	if c.MaxRecords <= 0 {
		c.MaxRecords = 256
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 256 << 10
	}
	if c.Linger <= 0 {
		c.Linger = 5 * time.Millisecond
	}
	if c.MaxQueuedBytes <= 0 {
		c.MaxQueuedBytes = 64 << 20
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.Cipher == nil {
		c.Cipher = &Cipher{}
	}
}

// AsyncPublisher is the part of a JetStream context the request-log publisher uses.
type AsyncPublisher interface {
	PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
}

type reqBatch struct {
	id  string // Nats-Msg-Id, kept across republishing
	buf []byte
	n   int
}

type inflight struct {
	b   *reqBatch
	fut jetstream.PubAckFuture
}

// keyCrypt is what a record carries of its key: the stored form of the value and its hash.
type keyCrypt struct{ value, hash string }

// maxKeyCache bounds the cache of encrypted key values and hashes.
const maxKeyCache = 1 << 16

// ReqLogPublisher packs request-log records into JetStream messages and publishes them
// asynchronously. Record never blocks and never waits for the network: it encodes the
// record and appends it to the open batch. A batch is closed when it is full or Linger
// after its first record, handed to a background goroutine which publishes it, and kept
// until JetStream acknowledges it; a failed or unacknowledged publish is repeated with the
// same message id.
//
// Backpressure: when the log stream is slow, batches queue in this process up to
// MaxQueuedBytes; records beyond that are dropped, counted (Dropped) and logged at most
// once a second, so a failing log pipeline costs memory within a bound and never delays a
// client.
type ReqLogPublisher struct {
	js  AsyncPublisher
	cfg ReqLogConfig
	log zerolog.Logger

	mu      sync.Mutex
	cur     *reqBatch
	pending []*reqBatch // closed, waiting to be published
	timer   *time.Timer
	closed  bool

	wake    chan struct{} // cap 1: pending has batches
	acks    chan inflight
	stop    chan struct{}
	stopped chan struct{}

	queued    atomic.Int64 // bytes of records not acknowledged yet (open batch included)
	published atomic.Uint64
	dropped   atomic.Uint64
	lastWarn  atomic.Int64

	idleMu sync.Mutex
	idleCh chan struct{} // closed and replaced whenever queued drops to zero

	keys    atomic.Pointer[sync.Map] // key value → keyCrypt
	keysLen atomic.Int64
	scratch sync.Pool
	bufs    sync.Pool // *[]byte: batch buffers back from acknowledged messages
}

// NewReqLogPublisher starts the publisher; Close stops it.
func NewReqLogPublisher(js AsyncPublisher, cfg ReqLogConfig, log zerolog.Logger) *ReqLogPublisher {
	if js == nil {
		panic("events: nil JetStream for request logs")
	}
	cfg.setDefaults()
	p := &ReqLogPublisher{
		js: js, cfg: cfg, log: log,
		wake:    make(chan struct{}, 1),
		acks:    make(chan inflight, 1024),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
		idleCh:  make(chan struct{}),
	}
	p.keys.Store(new(sync.Map))
	p.scratch.New = func() any { b := make([]byte, 0, 1024); return &b }
	p.timer = time.AfterFunc(time.Hour, p.lingerDone)
	p.timer.Stop()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.publishLoop() }()
	go func() { defer wg.Done(); p.ackLoop() }()
	go func() { wg.Wait(); close(p.stopped) }()
	return p
}

// Record queues one record. It never blocks on the network and does not keep rec. Key
// values are replaced by their stored form (encrypted when encryption is on) and hashed
// here.
func (p *ReqLogPublisher) Record(rec *domain.RequestLog) {
	keyValue, keyHash := rec.KeyValue, rec.KeyHash
	if keyValue != "" {
		kc := p.keyCrypt(keyValue)
		keyValue, keyHash = kc.value, kc.hash
	}
	bp := p.scratch.Get().(*[]byte)
	line := appendRequestLog((*bp)[:0], rec, keyValue, keyHash)
	line = append(line, '\n')
	p.mu.Lock()
	if p.closed || p.queued.Load()+int64(len(line)) > p.cfg.MaxQueuedBytes {
		p.mu.Unlock()
		p.drop(1)
		*bp = line
		p.scratch.Put(bp)
		return
	}
	if p.cur == nil {
		p.cur = &reqBatch{buf: p.batchBuf()}
		p.timer.Reset(p.cfg.Linger)
	}
	p.cur.buf = append(p.cur.buf, line...)
	p.cur.n++
	p.queued.Add(int64(len(line)))
	if p.cur.n >= p.cfg.MaxRecords || len(p.cur.buf) >= p.cfg.MaxBytes {
		p.sealLocked()
	}
	p.mu.Unlock()
	*bp = line
	p.scratch.Put(bp)
}

// batchBuf returns an empty buffer for a batch: a recycled one when there is one.
func (p *ReqLogPublisher) batchBuf() []byte {
	if b, ok := p.bufs.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, p.cfg.MaxBytes+8<<10)
}

func (p *ReqLogPublisher) keyCrypt(value string) keyCrypt {
	m := p.keys.Load()
	if v, ok := m.Load(value); ok {
		return v.(keyCrypt)
	}
	kc := keyCrypt{value: value, hash: p.cfg.Cipher.Hash(value).String()}
	if p.cfg.Cipher.Enabled() {
		enc, err := p.cfg.Cipher.Encrypt(value)
		if err != nil {
			// Never put a key in clear where the operator asked for encryption.
			enc = ""
		}
		kc.value = enc
	}
	if p.keysLen.Add(1) > maxKeyCache {
		p.keys.Store(new(sync.Map))
		p.keysLen.Store(0)
	}
	m.Store(value, kc)
	return kc
}

func (p *ReqLogPublisher) drop(n int) {
	total := p.dropped.Add(uint64(n))
	now := time.Now().UnixNano()
	last := p.lastWarn.Load()
	if now-last >= int64(time.Second) && p.lastWarn.CompareAndSwap(last, now) {
		p.log.Error().Uint64("dropped_total", total).Int64("queued_bytes", p.queued.Load()).
			Msg("request logs dropped: the request-log stream is not keeping up")
	}
}

// sealLocked closes the open batch and hands it to the publishing goroutine.
func (p *ReqLogPublisher) sealLocked() {
	b := p.cur
	if b == nil {
		return
	}
	p.cur = nil
	p.timer.Stop()
	b.id = p.cfg.Node + "-" + nuid.Next()
	p.pending = append(p.pending, b)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *ReqLogPublisher) lingerDone() {
	p.mu.Lock()
	p.sealLocked()
	p.mu.Unlock()
}

func (p *ReqLogPublisher) publishLoop() {
	defer close(p.acks)
	for {
		select {
		case <-p.wake:
		case <-p.stop:
			return
		}
		for {
			p.mu.Lock()
			batches := p.pending
			p.pending = nil
			p.mu.Unlock()
			if len(batches) == 0 {
				break
			}
			for i, b := range batches {
				if !p.publish(b) {
					// Stopped while JetStream refused: give back what is left.
					p.mu.Lock()
					p.pending = append(batches[i:], p.pending...)
					p.mu.Unlock()
					return
				}
			}
		}
	}
}

// publish sends one batch, retrying while JetStream refuses (its queue of unacknowledged
// messages is full); it returns false when the publisher stopped meanwhile.
func (p *ReqLogPublisher) publish(b *reqBatch) bool {
	for attempt := 0; ; attempt++ {
		msg := nats.NewMsg(ReqLogSubject)
		msg.Data = b.buf
		msg.Header.Set(hdrType, reqLogType)
		msg.Header.Set(hdrSchema, strconv.Itoa(reqLogSchema))
		msg.Header.Set(hdrNode, p.cfg.Node)
		msg.Header.Set(hdrCount, strconv.Itoa(b.n))
		if p.cfg.Cipher.Enabled() {
			msg.Header.Set(hdrEnc, encAESGCM)
			msg.Header.Set(hdrKeyID, p.cfg.Cipher.KeyID())
		}
		fut, err := p.js.PublishMsgAsync(msg, jetstream.WithMsgID(b.id), jetstream.WithExpectStream(ReqLogStream))
		if err == nil {
			select {
			case p.acks <- inflight{b: b, fut: fut}:
				return true
			case <-p.stop:
				return false
			}
		}
		if attempt%100 == 0 {
			p.log.Warn().Err(err).Int("records", b.n).Msg("request-log publish refused; retrying")
		}
		t := time.NewTimer(time.Duration(min(attempt+1, 50)) * 10 * time.Millisecond)
		select {
		case <-t.C:
		case <-p.stop:
			t.Stop()
			return false
		}
	}
}

func (p *ReqLogPublisher) ackLoop() {
	failures := 0
	for in := range p.acks {
		t := time.NewTimer(p.cfg.AckWait)
		var err error
		select {
		case <-in.fut.Ok():
		case err = <-in.fut.Err():
		case <-t.C:
			err = errors.New("no acknowledgement")
		case <-p.stop:
			t.Stop()
			p.mu.Lock()
			p.pending = append(p.pending, in.b)
			p.mu.Unlock()
			return
		}
		t.Stop()
		if err != nil {
			failures++
			if failures == 1 || failures%100 == 0 {
				p.log.Warn().Err(err).Int("records", in.b.n).Msg("request-log batch not stored; publishing it again")
			}
			// Give the stream time to come back rather than spin.
			wait := time.NewTimer(min(time.Duration(failures)*50*time.Millisecond, 2*time.Second))
			select {
			case <-wait.C:
			case <-p.stop:
				wait.Stop()
				p.mu.Lock()
				p.pending = append(p.pending, in.b)
				p.mu.Unlock()
				return
			}
			p.mu.Lock()
			p.pending = append(p.pending, in.b)
			p.mu.Unlock()
			select {
			case p.wake <- struct{}{}:
			default:
			}
			continue
		}
		failures = 0
		p.published.Add(uint64(in.b.n))
		p.release(int64(len(in.b.buf)))
		if cap(in.b.buf) <= p.cfg.MaxBytes+64<<10 {
			// The message is acknowledged: nothing reads its data any more.
			buf := in.b.buf[:0]
			p.bufs.Put(&buf)
		}
	}
}

func (p *ReqLogPublisher) release(n int64) {
	if p.queued.Add(-n) == 0 {
		p.idleMu.Lock()
		close(p.idleCh)
		p.idleCh = make(chan struct{})
		p.idleMu.Unlock()
	}
}

// Flush closes the open batch and waits until every record recorded so far is
// acknowledged by JetStream, or ctx ends.
func (p *ReqLogPublisher) Flush(ctx context.Context) error {
	p.mu.Lock()
	p.sealLocked()
	p.mu.Unlock()
	for {
		p.idleMu.Lock()
		ch := p.idleCh
		p.idleMu.Unlock()
		if p.queued.Load() == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-p.stopped:
			return fmt.Errorf("flush request logs: publisher stopped with %d bytes unsent", p.queued.Load())
		case <-ctx.Done():
			return fmt.Errorf("flush request logs: %d bytes unacknowledged: %w", p.queued.Load(), ctx.Err())
		}
	}
}

// Close flushes (within ctx) and stops the publisher. Records that could not be stored
// in time are counted as dropped.
func (p *ReqLogPublisher) Close(ctx context.Context) error {
	err := p.Flush(ctx)
	p.mu.Lock()
	already := p.closed
	p.closed = true
	p.timer.Stop()
	p.mu.Unlock()
	if already {
		return err
	}
	close(p.stop)
	<-p.stopped
	// Whatever is still here was not stored in time (or came in after the flush).
	p.mu.Lock()
	lost := 0
	for _, b := range p.pending {
		lost += b.n
	}
	if p.cur != nil {
		lost += p.cur.n
	}
	p.pending, p.cur = nil, nil
	p.mu.Unlock()
	for in := range p.acks {
		lost += in.b.n
	}
	if lost > 0 {
		p.drop(lost)
	}
	return err
}

// ReqLogStats counts the publisher's records.
type ReqLogStats struct {
	Published   uint64 // acknowledged by JetStream
	Dropped     uint64 // lost: over MaxQueuedBytes, or unsent at Close
	QueuedBytes int64  // encoded, not acknowledged yet
}

// Stats reads the counters.
func (p *ReqLogPublisher) Stats() ReqLogStats {
	return ReqLogStats{Published: p.published.Load(), Dropped: p.dropped.Load(), QueuedBytes: p.queued.Load()}
}

// DecodeRequestLogs reads the records of one request-log message, in the order they were
// recorded. Key values stay in their stored form: encrypted (hex of nonce ‖ AES-GCM
// ciphertext, API.md 8.1) when the message says so, as the SQL store keeps them; encrypted
// reports which. A message of an unknown type or a newer schema is an error.
func DecodeRequestLogs(h nats.Header, data []byte) (recs []domain.RequestLog, encrypted bool, err error) {
	if t := h.Get(hdrType); t != reqLogType {
		return nil, false, fmt.Errorf("request-log message of type %q", t)
	}
	schema, err := strconv.Atoi(h.Get(hdrSchema))
	if err != nil || schema < 1 || schema > reqLogSchema {
		return nil, false, fmt.Errorf("request-log message of schema %q (this version reads %d)", h.Get(hdrSchema), reqLogSchema)
	}
	if n, err := strconv.Atoi(h.Get(hdrCount)); err == nil && n > 0 {
		recs = make([]domain.RequestLog, 0, n)
	}
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var r domain.RequestLog
		if err := json.Unmarshal(line, &r); err != nil {
			return nil, false, fmt.Errorf("request-log record %d: %w", len(recs), err)
		}
		recs = append(recs, r)
	}
	return recs, h.Get(hdrEnc) == encAESGCM, nil
}

// AppendRequestLog appends the JSON form of rec (the one encoding/json gives for
// domain.RequestLog, without HTML escaping) to b. It is the hot path's encoder: a few
// hundred nanoseconds and no allocation beyond b's growth.
func AppendRequestLog(b []byte, r *domain.RequestLog) []byte {
	return appendRequestLog(b, r, r.KeyValue, r.KeyHash)
}

func appendRequestLog(b []byte, r *domain.RequestLog, keyValue, keyHash string) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, r.ID)
	b = append(b, `,"timestamp":"`...)
	b = r.Timestamp.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","group_id":`...)
	b = strconv.AppendUint(b, r.GroupID, 10)
	b = append(b, `,"group_name":`...)
	b = appendJSONString(b, r.GroupName)
	if r.ParentGroupID != 0 {
		b = append(b, `,"parent_group_id":`...)
		b = strconv.AppendUint(b, r.ParentGroupID, 10)
	}
	if r.ParentGroupName != "" {
		b = append(b, `,"parent_group_name":`...)
		b = appendJSONString(b, r.ParentGroupName)
	}
	if r.KeyID != 0 {
		b = append(b, `,"key_id":`...)
		b = strconv.AppendUint(b, r.KeyID, 10)
	}
	b = appendOptString(b, `,"key_value":`, keyValue)
	b = appendOptString(b, `,"key_hash":`, keyHash)
	b = appendOptString(b, `,"model":`, r.Model)
	b = append(b, `,"is_success":`...)
	b = strconv.AppendBool(b, r.IsSuccess)
	b = appendOptString(b, `,"source_ip":`, r.SourceIP)
	b = append(b, `,"status_code":`...)
	b = strconv.AppendInt(b, int64(r.StatusCode), 10)
	b = append(b, `,"request_path":`...)
	b = appendJSONString(b, r.RequestPath)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendInt(b, r.DurationMS, 10)
	b = appendOptString(b, `,"error_message":`, r.ErrorMessage)
	b = appendOptString(b, `,"user_agent":`, r.UserAgent)
	b = append(b, `,"request_type":`...)
	b = appendJSONString(b, r.RequestType)
	b = appendOptString(b, `,"upstream_addr":`, r.UpstreamAddr)
	b = append(b, `,"is_stream":`...)
	b = strconv.AppendBool(b, r.IsStream)
	b = appendOptString(b, `,"request_body":`, r.RequestBody)
	if r.PromptTokens != 0 {
		b = append(b, `,"prompt_tokens":`...)
		b = strconv.AppendInt(b, r.PromptTokens, 10)
	}
	if r.CompletionTokens != 0 {
		b = append(b, `,"completion_tokens":`...)
		b = strconv.AppendInt(b, r.CompletionTokens, 10)
	}
	if r.TotalTokens != 0 {
		b = append(b, `,"total_tokens":`...)
		b = strconv.AppendInt(b, r.TotalTokens, 10)
	}
	b = appendOptString(b, `,"proxy_key_fp":`, r.ProxyKeyFP)
	b = appendOptString(b, `,"proxy_key_name":`, r.ProxyKeyName)
	if r.ProxyKeyID != 0 {
		b = append(b, `,"proxy_key_id":`...)
		b = strconv.AppendUint(b, r.ProxyKeyID, 10)
	}
	return append(b, '}')
}

func appendOptString(b []byte, name, s string) []byte {
	if s == "" {
		return b
	}
	b = append(b, name...)
	return appendJSONString(b, s)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes U+FFFD, as
// encoding/json does.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, `\u202`...)
			b = append(b, hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
