package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/httpapi/tasks"
	"gpt-load/projections/sqllog"
)

// LogRecorder takes request-log records from the proxy; *events.ReqLogPublisher
// implements it (the same shape as proxy.LogRecorder).
type LogRecorder interface {
	Record(rec *domain.RequestLog)
}

// Metrics counts proxied traffic for Prometheus and, at each scrape, reads the state of
// the node (key pools, projection lag, request-log backlog, leader, task slot).
//
// Traffic is counted from the request-log records the proxy hands over (Recorder): one
// per attempt, the last one of a request marked final. Label sets are bounded: the group
// name, its channel and the HTTP status, never a key or a path; models only in the token
// counter, at most maxModels per group (the rest count as "other"), since a client names
// them. The hot path pays one or two lock-free map reads (copy-on-write maps of
// pre-resolved series) and a few atomic adds.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	attempts *prometheus.CounterVec
	retries  *prometheus.CounterVec
	duration *prometheus.HistogramVec
	upstream *prometheus.HistogramVec
	tokens   *prometheus.CounterVec

	series atomic.Pointer[map[seriesKey]*series]
	models atomic.Pointer[map[modelKey]*modelSeries]
	mu     sync.Mutex // serialises the copy-on-write of series and models

	src atomic.Pointer[metricsSource] // the node's state read at scrape time; set by New

	pub   atomic.Pointer[publisherStats]
	store atomic.Pointer[appendStats]
	facts atomic.Pointer[func() uint64]
	aff   atomic.Pointer[func() (hits, moved, misses uint64)]
	wait  atomic.Pointer[func() int]
}

// AppendStatser reads the event log's append counters; *events.Store implements it.
type AppendStatser interface {
	Stats() events.AppendStats
}

type appendStats struct{ AppendStatser }

// WatchStore adds the event log's append count, latency and conflicts to every scrape.
func (m *Metrics) WatchStore(s AppendStatser) {
	m.store.Store(&appendStats{s})
}

// WatchDroppedFacts adds the count of key-health facts dropped because the event log did
// not keep up (proxy.Handler.DroppedFacts) to every scrape.
func (m *Metrics) WatchDroppedFacts(dropped func() uint64) {
	m.facts.Store(&dropped)
}

// WatchAffinity adds the prompt-cache affinity lookups of the proxy (hits, moves to
// another key, misses; proxy.Handler.AffinityStats) to every scrape.
func (m *Metrics) WatchAffinity(stats func() (hits, moved, misses uint64)) {
	m.aff.Store(&stats)
}

// WatchWaitingFacts adds the number of key-health facts waiting for the event log to
// acknowledge them (proxy.Handler.WaitingFacts) to every scrape.
func (m *Metrics) WatchWaitingFacts(waiting func() int) {
	m.wait.Store(&waiting)
}

// PublisherStats reads the counters of the request-log publisher;
// *events.ReqLogPublisher implements it.
type PublisherStats interface {
	Stats() events.ReqLogStats
}

type publisherStats struct{ PublisherStats }

// WatchPublisher adds the request-log publisher's counters (published, dropped, queued
// bytes) to every scrape.
func (m *Metrics) WatchPublisher(p PublisherStats) {
	m.pub.Store(&publisherStats{p})
}

// projectorStats is what the SQL projector counts; *sqllog.Projector implements it.
type projectorStats interface {
	Stats() sqllog.Stats
}

type metricsSource struct {
	d     Deps
	tasks tasks.Store
}

// watch makes the node's state (d) and task slot part of every scrape.
func (m *Metrics) watch(d Deps, slot tasks.Store) {
	m.src.Store(&metricsSource{d: d, tasks: slot})
}

type seriesKey struct {
	group  string
	status int
}

type modelKey struct{ group, model string }

// modelSeries are the token counters of one group and model.
type modelSeries struct{ prompt, completion prometheus.Counter }

// maxModels bounds the model label values per group: past it, tokens count as "other".
const maxModels = 50

// series are the collectors of one group and status, resolved once.
type series struct {
	requests, attempts, retries prometheus.Counter
	duration, upstream          prometheus.Observer
}

// NewMetrics registers the traffic metrics and the Go runtime's in a registry of their own.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gpt_load_proxy_requests_total",
		Help: "Proxied requests by group, channel and the status answered to the client (after retries).",
	}, []string{"group", "channel", "status"})
	m.attempts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gpt_load_proxy_attempts_total",
		Help: "Upstream attempts by group, channel and the upstream's status (0: no answer).",
	}, []string{"group", "channel", "status"})
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gpt_load_proxy_retries_total",
		Help: "Attempts that were retried with another key, by group, channel and status.",
	}, []string{"group", "channel", "status"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "gpt_load_proxy_request_duration_seconds",
		Help:    "Duration of proxied requests, retries included, by group, channel and status.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
	}, []string{"group", "channel", "status"})
	m.upstream = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "gpt_load_proxy_upstream_duration_seconds",
		Help:    "Time the upstream took to answer an attempt with its headers, by group, channel and the upstream's status.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
	}, []string{"group", "channel", "status"})
	m.tokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gpt_load_proxy_tokens_total",
		Help: "Tokens the upstream reported, by group, model (at most 50 per group, then \"other\") and kind (prompt, completion).",
	}, []string{"group", "model", "kind"})
	m.reg.MustRegister(m.requests, m.attempts, m.retries, m.duration, m.upstream, m.tokens,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		stateCollector{m})
	empty := map[seriesKey]*series{}
	m.series.Store(&empty)
	noModels := map[modelKey]*modelSeries{}
	m.models.Store(&noModels)
	return m
}

// Recorder wraps next so that every record is counted before next takes it.
func (m *Metrics) Recorder(next LogRecorder) LogRecorder {
	return recorder{m: m, next: next}
}

type recorder struct {
	m    *Metrics
	next LogRecorder
}

func (r recorder) Record(rec *domain.RequestLog) {
	r.m.observe(rec)
	r.next.Record(rec)
}

func (m *Metrics) observe(rec *domain.RequestLog) {
	s := m.resolve(seriesKey{group: rec.GroupName, status: rec.StatusCode})
	s.attempts.Inc()
	if rec.UpstreamNS > 0 {
		s.upstream.Observe(float64(rec.UpstreamNS) / 1e9)
	}
	if rec.RequestType != domain.RequestFinal {
		s.retries.Inc()
		return
	}
	s.requests.Inc()
	s.duration.Observe(float64(rec.DurationMS) / 1000)
	if rec.PromptTokens > 0 || rec.CompletionTokens > 0 {
		ms := m.resolveModel(modelKey{rec.GroupName, rec.Model})
		ms.prompt.Add(float64(rec.PromptTokens))
		ms.completion.Add(float64(rec.CompletionTokens))
	}
}

// resolveModel returns the token counters of k, creating them on first use; a group's
// models past maxModels share the counters of "other".
func (m *Metrics) resolveModel(k modelKey) *modelSeries {
	if s, ok := (*m.models.Load())[k]; ok {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := *m.models.Load()
	if s, ok := cur[k]; ok {
		return s
	}
	n := 0
	for kk := range cur {
		if kk.group == k.group {
			n++
		}
	}
	label := k.model
	if n >= maxModels {
		label = "other"
	} else if label == "" {
		label = "unknown"
	}
	s := &modelSeries{
		prompt:     m.tokens.WithLabelValues(k.group, label, "prompt"),
		completion: m.tokens.WithLabelValues(k.group, label, "completion"),
	}
	if n >= maxModels {
		// Not remembered under its own name, so the map stays bounded too.
		if o, ok := cur[modelKey{k.group, "\x00other"}]; ok {
			return o
		}
		k = modelKey{k.group, "\x00other"}
	}
	next := make(map[modelKey]*modelSeries, len(cur)+1)
	for kk, v := range cur {
		next[kk] = v
	}
	next[k] = s
	m.models.Store(&next)
	return s
}

// channelOf is the channel type of the group named name, read from the node's state.
func (m *Metrics) channelOf(name string) string {
	src := m.src.Load()
	if src == nil || src.d.State == nil {
		return ""
	}
	ch := ""
	src.d.State.Read(func(s *domain.State) {
		for _, g := range s.Groups() {
			if g.Name == name {
				ch = string(g.ChannelType)
				return
			}
		}
	})
	return ch
}

// resolve returns the series of k, creating them on first use.
func (m *Metrics) resolve(k seriesKey) *series {
	if s, ok := (*m.series.Load())[k]; ok {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := *m.series.Load()
	if s, ok := cur[k]; ok {
		return s
	}
	st, ch := strconv.Itoa(k.status), m.channelOf(k.group)
	s := &series{
		requests: m.requests.WithLabelValues(k.group, ch, st),
		attempts: m.attempts.WithLabelValues(k.group, ch, st),
		retries:  m.retries.WithLabelValues(k.group, ch, st),
		duration: m.duration.WithLabelValues(k.group, ch, st),
		upstream: m.upstream.WithLabelValues(k.group, ch, st),
	}
	next := make(map[seriesKey]*series, len(cur)+1)
	for kk, v := range cur {
		next[kk] = v
	}
	next[k] = s
	m.series.Store(&next)
	return s
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{MaxRequestsInFlight: 4})
}

// stateCollector reads the node's state at scrape time.
type stateCollector struct{ m *Metrics }

var (
	descKeys = prometheus.NewDesc("gpt_load_keys", "Upstream keys by group and status (active, invalid).",
		[]string{"group", "status"}, nil)
	descApplied = prometheus.NewDesc("gpt_load_projection_applied_sequence", "Last event-log sequence this node's projections applied.", nil, nil)
	descLag     = prometheus.NewDesc("gpt_load_projection_lag", "Events of the log this node's projections have not applied yet.", nil, nil)
	descCaught  = prometheus.NewDesc("gpt_load_projection_caught_up", "1 once the node has replayed the event log and serves.", nil, nil)
	descBacklog = prometheus.NewDesc("gpt_load_request_log_backlog_messages", "Request-log messages waiting in JetStream to be written to SQL.", nil, nil)
	descBytes   = prometheus.NewDesc("gpt_load_request_log_backlog_bytes", "Estimated bytes of the request-log backlog.", nil, nil)
	descParked  = prometheus.NewDesc("gpt_load_request_log_parked_records_total", "Request-log records given up on by this node (not written to SQL).", nil, nil)
	descLeader  = prometheus.NewDesc("gpt_load_leader", "1 when this node runs the background duties (key revalidation, log retention).", nil, nil)
	descTask    = prometheus.NewDesc("gpt_load_task_running", "1 while a task of the type runs in the cluster's task slot.", []string{"type"}, nil)
	descWritten = prometheus.NewDesc("gpt_load_request_logs_written_total", "Request-log records this node wrote to SQL.", nil, nil)
	descPub     = prometheus.NewDesc("gpt_load_request_logs_published_total", "Request-log records this node handed to JetStream (acknowledged).", nil, nil)
	descDropped = prometheus.NewDesc("gpt_load_request_logs_dropped_total", "Request-log records this node lost before JetStream took them (queue full, or unsent at stop).", nil, nil)
	descQueued  = prometheus.NewDesc("gpt_load_request_log_queued_bytes", "Request-log bytes this node holds, not yet acknowledged by JetStream.", nil, nil)
	descResting = prometheus.NewDesc("gpt_load_keys_resting", "Active keys out of rotation by group and reason: disabled by an admin, or cooling down after a rate limit.",
		[]string{"group", "reason"}, nil)
	descAppends   = prometheus.NewDesc("gpt_load_event_append_seconds", "Guarded appends to the event log by this node (admin changes), and the time they took, acknowledgement included.", nil, nil)
	descConflicts = prometheus.NewDesc("gpt_load_event_append_conflicts_total", "Appends refused because the aggregate had moved on (another writer came first).", nil, nil)
	descAppendErr = prometheus.NewDesc("gpt_load_event_append_errors_total", "Appends that failed otherwise (NATS out of reach, timeout, event too large).", nil, nil)
	descAffinity  = prometheus.NewDesc("gpt_load_prompt_cache_affinity_total", "Prompt-cache affinity lookups by result: hit (the conversation's key served), moved (its key rested or failed, another took over), miss (a conversation new to this node).", []string{"result"}, nil)
	descFacts     = prometheus.NewDesc("gpt_load_key_health_facts_dropped_total", "Key-health facts this node dropped: more were waiting for the event log than its buffer holds, or the log was away when the node stopped.", nil, nil)
	descFactsWait = prometheus.NewDesc("gpt_load_key_health_facts_waiting", "Key-health facts this node holds until the event log acknowledges them (sent again while it is away).", nil, nil)
)

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descKeys, descApplied, descLag, descCaught, descBacklog, descBytes, descParked, descLeader, descTask, descWritten, descPub, descDropped, descQueued,
		descResting, descAppends, descConflicts, descAppendErr, descFacts, descAffinity, descFactsWait} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	src := c.m.src.Load()
	if src == nil {
		return
	}
	d := &src.d
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	now := time.Now().UnixNano()
	caughtUp := d.Ready.CaughtUp()
	applied := d.Ready.Applied()
	gauge(descCaught, b2f(caughtUp))
	gauge(descApplied, float64(applied))
	if d.Stream != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		pos, err := d.Stream.Position(ctx)
		cancel()
		if err == nil {
			lag := uint64(0)
			if pos.LastSeq > applied {
				lag = pos.LastSeq - applied
			}
			gauge(descLag, float64(lag))
		}
	}
	if d.State != nil && caughtUp {
		d.State.Read(func(s *domain.State) {
			for _, g := range s.Groups() {
				ks := s.Keys(g.ID)
				if ks == nil {
					continue
				}
				gauge(descKeys, float64(ks.Active()), g.Name, "active")
				gauge(descKeys, float64(ks.Invalid()), g.Name, "invalid")
				disabled, cooling := 0, 0
				ks.Each(func(k *domain.Key) bool {
					if k.Status == domain.KeyActive {
						if k.Disabled {
							disabled++
						} else if k.CooldownUntil > now {
							cooling++
						}
					}
					return true
				})
				gauge(descResting, float64(disabled), g.Name, "disabled")
				gauge(descResting, float64(cooling), g.Name, "cooldown")
			}
		})
	}
	if st := c.m.store.Load(); st != nil {
		a := st.Stats()
		ch <- prometheus.MustNewConstSummary(descAppends, a.Appends, a.Took.Seconds(), nil)
		ch <- prometheus.MustNewConstMetric(descConflicts, prometheus.CounterValue, float64(a.Conflicts))
		ch <- prometheus.MustNewConstMetric(descAppendErr, prometheus.CounterValue, float64(a.Errors))
	}
	if f := c.m.facts.Load(); f != nil {
		ch <- prometheus.MustNewConstMetric(descFacts, prometheus.CounterValue, float64((*f)()))
	}
	if f := c.m.aff.Load(); f != nil {
		hits, moved, misses := (*f)()
		ch <- prometheus.MustNewConstMetric(descAffinity, prometheus.CounterValue, float64(hits), "hit")
		ch <- prometheus.MustNewConstMetric(descAffinity, prometheus.CounterValue, float64(moved), "moved")
		ch <- prometheus.MustNewConstMetric(descAffinity, prometheus.CounterValue, float64(misses), "miss")
	}
	if f := c.m.wait.Load(); f != nil {
		gauge(descFactsWait, float64((*f)()))
	}
	if rl := d.Health.RequestLogs; rl != nil {
		b := rl.Backlog()
		gauge(descBacklog, float64(b.Messages))
		gauge(descBytes, float64(b.Bytes))
		ch <- prometheus.MustNewConstMetric(descParked, prometheus.CounterValue, float64(b.ParkedRecords))
		if ps, ok := rl.(projectorStats); ok {
			ch <- prometheus.MustNewConstMetric(descWritten, prometheus.CounterValue, float64(ps.Stats().Written))
		}
	}
	if p := c.m.pub.Load(); p != nil {
		st := p.Stats()
		ch <- prometheus.MustNewConstMetric(descPub, prometheus.CounterValue, float64(st.Published))
		ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(st.Dropped))
		gauge(descQueued, float64(st.QueuedBytes))
	}
	if l := d.Health.Leader; l != nil {
		gauge(descLeader, b2f(l.Leading()))
	}
	if src.tasks != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := src.tasks.Current(ctx)
		cancel()
		if err == nil {
			for _, typ := range []tasks.Type{tasks.KeyImport, tasks.KeyDelete, tasks.KeyValidation} {
				gauge(descTask, b2f(st.IsRunning && st.TaskType == typ), string(typ))
			}
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
