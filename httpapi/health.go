package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"gpt-load/events"
	"gpt-load/projections/sqllog"
)

// RequestLogBacklog reports what waits in the request-log stream to be written to SQL;
// *sqllog.Projector implements it.
type RequestLogBacklog interface {
	Backlog() sqllog.Backlog
}

// LogPosition reads the end of the event log; *events.Store implements it.
type LogPosition interface {
	Position(ctx context.Context) (events.Position, error)
}

// Connection is the node's NATS connection; *nats.Conn implements it.
type Connection interface {
	Status() nats.Status
}

// Leadership tells which node runs the background duties; *events.Lease implements it.
type Leadership interface {
	Leader() string // "" while no node leads
	Leading() bool  // this node leads
}

// DatabasePinger is the SQL database of request logs; *bun.DB implements it.
type DatabasePinger interface {
	PingContext(ctx context.Context) error
}

// HealthConfig tunes when /health stops saying healthy. Zero values take the defaults.
type HealthConfig struct {
	// LostAfter is how long JetStream may be out of reach (the connection down, or the
	// log's end unreadable) before the node reports itself unhealthy (default 5 s);
	// shorter outages are reported as degraded, with 200.
	LostAfter time.Duration
	// LagWindow: a node whose projections stay behind the log for this long (default
	// 10 s) while the distance grows is unhealthy: it does not keep up.
	LagWindow time.Duration
	// ProbeTimeout bounds one read of the log's end (default 2 s); ProbeEvery is the
	// least time between two reads (default 1 s): /health is public, and a flood of it
	// must not become a flood of JetStream requests.
	ProbeTimeout time.Duration
	ProbeEvery   time.Duration
	// RequestLogs, when set, adds the request-log backlog to the body. It never makes
	// the node unhealthy: the proxy serves while logs wait in JetStream.
	RequestLogs RequestLogBacklog
	// Leader, when set, names the node that runs the background duties.
	Leader Leadership
	// Database, when set, is pinged (at most every ProbeEvery). A database out of reach
	// makes the node degraded, not unhealthy: the proxy serves and logs wait in JetStream.
	Database DatabasePinger
}

func (c *HealthConfig) setDefaults() {
	if c.LostAfter <= 0 {
		c.LostAfter = 5 * time.Second
	}
	if c.LagWindow <= 0 {
		c.LagWindow = 10 * time.Second
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = 2 * time.Second
	}
	if c.ProbeEvery <= 0 {
		c.ProbeEvery = time.Second
	}
}

// healthCheck serves /health: 200 while the node serves from a caught-up state with the
// log in reach, 503 (with Retry-After) while it replays, once JetStream has been out of
// reach for longer than LostAfter, or while its projections fall further behind the log.
// The body reports the projection lag (sequences behind the end of the log) and the state
// of the NATS connection.
type healthCheck struct {
	d   Deps
	cfg HealthConfig

	mu        sync.Mutex
	probedAt  time.Time
	streamSeq uint64 // the log's last sequence at the last successful probe
	probeErr  error
	lostSince time.Time // zero while JetStream is in reach
	lagSince  time.Time // start of the current run of samples behind the log; zero when none
	lagFirst  uint64    // the lag at lagSince

	dbProbedAt time.Time
	dbErr      error
}

func newHealth(d Deps) *healthCheck {
	h := &healthCheck{d: d, cfg: d.Health}
	h.cfg.setDefaults()
	return h
}

type healthBody struct {
	Status      string           `json:"status"`
	Reason      string           `json:"reason,omitempty"`
	Timestamp   string           `json:"timestamp"`
	Uptime      string           `json:"uptime"`
	Node        string           `json:"node"`
	Projections healthProjection `json:"projections"`
	NATS        *healthNATS      `json:"nats,omitempty"`
	RequestLogs *healthReqLogs   `json:"request_logs,omitempty"`
	Leader      *healthLeader    `json:"leader,omitempty"`
	Database    *healthDatabase  `json:"database,omitempty"`
}

// healthLeader says which node runs the background duties (key revalidation, log
// retention): Node is "" while none does, Self whether it is this node.
type healthLeader struct {
	Node string `json:"node"`
	Self bool   `json:"self"`
}

type healthDatabase struct {
	Status string `json:"status"` // "ok" or "unreachable"
	Error  string `json:"error,omitempty"`
}

// healthReqLogs is the request-log backlog: messages of GL_REQLOG not written to SQL yet,
// against the stream's limits (past them JetStream drops the oldest, written or not).
type healthReqLogs struct {
	BacklogMessages  uint64  `json:"backlog_messages"`
	BacklogBytes     int64   `json:"backlog_bytes"` // estimated from the stream's mean message size
	OldestPendingAge string  `json:"oldest_pending_age"`
	MaxBytes         int64   `json:"max_bytes"`
	MaxAge           string  `json:"max_age"`
	UsedOfLimit      float64 `json:"used_of_limit"` // the larger share of either limit, 0..1
	ParkedMessages   uint64  `json:"parked_messages"`
	ParkedRecords    uint64  `json:"parked_records"`
	SQL              string  `json:"sql"` // "ok" or "unreachable"
	Error            string  `json:"error,omitempty"`
}

func reqLogHealth(b sqllog.Backlog) *healthReqLogs {
	r := &healthReqLogs{
		BacklogMessages: b.Messages, BacklogBytes: b.Bytes,
		OldestPendingAge: b.OldestAge.Round(time.Millisecond).String(),
		MaxBytes:         b.MaxBytes, MaxAge: b.MaxAge.String(),
		ParkedMessages: b.ParkedMsgs, ParkedRecords: b.ParkedRecords,
		SQL: "ok", Error: b.Err,
	}
	if b.SQLDown {
		r.SQL = "unreachable"
	}
	if b.MaxBytes > 0 {
		r.UsedOfLimit = float64(b.Bytes) / float64(b.MaxBytes)
	}
	if b.MaxAge > 0 {
		r.UsedOfLimit = max(r.UsedOfLimit, float64(b.OldestAge)/float64(b.MaxAge))
	}
	r.UsedOfLimit = float64(int(r.UsedOfLimit*1e4)) / 1e4
	return r
}

type healthProjection struct {
	CaughtUp   bool    `json:"caught_up"`
	AppliedSeq uint64  `json:"applied_seq"`
	StreamSeq  *uint64 `json:"stream_seq,omitempty"` // the log's last sequence, when known
	Lag        *uint64 `json:"lag,omitempty"`        // StreamSeq - AppliedSeq
}

type healthNATS struct {
	Connection string `json:"connection,omitempty"` // CONNECTED, RECONNECTING, CLOSED...
	JetStream  string `json:"jetstream"`            // "ok" or "unreachable"
	Error      string `json:"error,omitempty"`
	// UnreachableFor is how long JetStream has been out of reach.
	UnreachableFor string `json:"unreachable_for,omitempty"`
}

func (h *healthCheck) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := h.d.Now()
	caughtUp, applied := h.d.Ready.CaughtUp(), h.d.Ready.Applied()
	body := healthBody{
		Status:      "healthy",
		Timestamp:   now.UTC().Format(time.RFC3339),
		Uptime:      now.Sub(h.d.Started).Round(time.Millisecond).String(),
		Node:        h.d.Node,
		Projections: healthProjection{CaughtUp: caughtUp, AppliedSeq: applied},
	}
	status := http.StatusOK
	unhealthy := func(reason string) {
		if status == http.StatusOK {
			body.Status, body.Reason, status = "unhealthy", reason, http.StatusServiceUnavailable
		}
	}
	if !caughtUp {
		body.Status, status = "starting", http.StatusServiceUnavailable
	}
	if h.d.Stream != nil || h.d.Conn != nil {
		h.check(r.Context(), now, caughtUp, applied, &body, unhealthy)
	}
	if h.cfg.RequestLogs != nil {
		body.RequestLogs = reqLogHealth(h.cfg.RequestLogs.Backlog())
	}
	if h.cfg.Leader != nil {
		body.Leader = &healthLeader{Node: h.cfg.Leader.Leader(), Self: h.cfg.Leader.Leading()}
	}
	if h.cfg.Database != nil {
		body.Database = &healthDatabase{Status: "ok"}
		if err := h.pingDatabase(r.Context(), now); err != nil {
			body.Database.Status, body.Database.Error = "unreachable", err.Error()
			if body.Status == "healthy" {
				body.Status = "degraded"
			}
		}
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(int(retryAfterStarting/time.Second)))
	}
	writeJSON(w, status, body)
}

// pingDatabase pings the database at most every ProbeEvery and returns the last result.
func (h *healthCheck) pingDatabase(ctx context.Context, now time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.dbProbedAt.IsZero() || now.Sub(h.dbProbedAt) >= h.cfg.ProbeEvery {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.ProbeTimeout)
		h.dbErr = h.cfg.Database.PingContext(pctx)
		cancel()
		h.dbProbedAt = now
	}
	return h.dbErr
}

// check probes the connection and the log's end, and judges the outage and the lag.
func (h *healthCheck) check(ctx context.Context, now time.Time, caughtUp bool, applied uint64, body *healthBody, unhealthy func(string)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := &healthNATS{JetStream: "ok"}
	body.NATS = n
	reachable := true
	if h.d.Conn != nil {
		st := h.d.Conn.Status()
		n.Connection = st.String()
		reachable = st == nats.CONNECTED
	}
	if h.d.Stream != nil && reachable && (h.probedAt.IsZero() || now.Sub(h.probedAt) >= h.cfg.ProbeEvery) {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.ProbeTimeout)
		pos, err := h.d.Stream.Position(pctx)
		cancel()
		h.probedAt, h.probeErr = now, err
		if err == nil {
			h.streamSeq = pos.LastSeq
		}
	}
	if h.probeErr != nil {
		reachable = false
		n.Error = h.probeErr.Error()
	}
	if !reachable {
		n.JetStream = "unreachable"
		if h.lostSince.IsZero() {
			h.lostSince = now
		}
		lost := now.Sub(h.lostSince)
		n.UnreachableFor = lost.Round(time.Millisecond).String()
		if lost >= h.cfg.LostAfter {
			unhealthy("JetStream out of reach for " + n.UnreachableFor)
		} else if body.Status == "healthy" {
			body.Status = "degraded"
		}
		h.probedAt = time.Time{} // probe again as soon as the connection is back
		return
	}
	h.lostSince = time.Time{}
	if h.d.Stream == nil {
		return
	}
	lag := uint64(0)
	if h.streamSeq > applied {
		lag = h.streamSeq - applied
	}
	seq := h.streamSeq
	body.Projections.StreamSeq, body.Projections.Lag = &seq, &lag
	if !caughtUp {
		return // a replay is judged by the starting state, not by its lag
	}
	switch {
	case lag == 0:
		h.lagSince = time.Time{}
	case h.lagSince.IsZero():
		h.lagSince, h.lagFirst = now, lag
	case now.Sub(h.lagSince) >= h.cfg.LagWindow:
		if lag > h.lagFirst {
			unhealthy("projections fall behind the event log: " + strconv.FormatUint(lag, 10) +
				" events behind, " + strconv.FormatUint(h.lagFirst, 10) + " " + now.Sub(h.lagSince).Round(time.Second).String() + " ago")
			return
		}
		h.lagSince, h.lagFirst = now, lag // catching up: judge the next window
	}
}
