package limits

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"gpt-load/domain"
	"gpt-load/events"
)

// DemandSubject is the core NATS subject on which nodes report their demand per key. No
// stream may capture it: reports are for the moment, never kept.
const DemandSubject = "gl.proxykey_demand"

// UsageBucket is the key-value bucket of the token counters per key and period.
const UsageBucket = "gl_proxykey_usage"

// Reason tells which limit refused a request.
type Reason uint8

const (
	Admitted     Reason = iota
	OverRPM             // requests per minute
	OverTPM             // tokens per minute
	DailyQuota          // the UTC day's tokens are spent
	MonthlyQuota        // the UTC month's tokens are spent
)

func (r Reason) String() string {
	return [...]string{"", "rpm", "tpm", "daily_tokens", "monthly_tokens"}[r]
}

// Config configures a Limiter. Zero values take the defaults.
type Config struct {
	Node string // this node's name in demand reports; required with Conn
	// Conn carries demand reports between nodes; nil: this node owns every limit alone.
	Conn *nats.Conn
	// KV holds the quota counters; nil: they are counted in this node's memory only.
	KV jetstream.KeyValue
	// Interval is the period of reports, rebalancing and quota flushes (default 1 s). A node
	// silent for StaleAfter intervals (default 3) loses its share.
	Interval   time.Duration
	StaleAfter int
	Now        func() time.Time // the clock of the limits (default time.Now)
	Log        zerolog.Logger
}

func (c *Config) setDefaults() {
	if c.Interval <= 0 {
		c.Interval = time.Second
	}
	if c.StaleAfter <= 0 {
		c.StaleAfter = 3
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// OpenUsageBucket creates or finds the bucket of quota counters. Counters of a period are
// kept a little longer than a month after their last change.
func OpenUsageBucket(ctx context.Context, js jetstream.JetStream, replicas int, log zerolog.Logger) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	err := events.Retry(ctx, log, "create key-value bucket "+UsageBucket, func(ctx context.Context) (err error) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      UsageBucket,
			Description: "gpt-load: tokens used per named proxy key and UTC day or month",
			TTL:         35 * 24 * time.Hour,
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    max(replicas, 1),
		})
		return err
	})
	return kv, err
}

// keyState is what one node keeps of one named key.
type keyState struct {
	id             uint64
	rpm, tpm       bucket
	rpmLim, tpmLim atomic.Int64
	dayLim, monLim atomic.Int64

	demand   atomic.Int64 // requests seen (admitted or not) since the last report
	lastUsed atomic.Int64 // Unix ns of the last admitted request
	day, mon period
	smoothed float64 // demand per interval, smoothed (rebalancer only)
}

// period counts the tokens of a key in one UTC day or month: the cluster's total as the
// bucket last showed it, plus what this node counted since its last flush.
type period struct {
	end   atomic.Int64 // Unix ns when the period ends; the counts belong to the period before it
	total atomic.Int64
	delta atomic.Int64
	name  string // "20261202" or "202612" (rebalancer only)
}

// used is the period's count at now; a period that has ended counts 0.
func (p *period) used(now int64) int64 {
	if now >= p.end.Load() {
		return 0
	}
	return p.total.Load() + p.delta.Load()
}

type stateMap = map[uint64]*keyState

// Limiter enforces the limits of named proxy keys on this node.
type Limiter struct {
	cfg      Config
	states   atomic.Pointer[stateMap]
	mu       sync.Mutex // serialises changes to states and the rebalancer's maps
	synced   atomic.Uint64
	reported time.Time // the last report (rebalancer only)

	peersMu sync.Mutex
	peers   map[string]*peer
	tick    uint64

	totalsMu sync.Mutex
	totals   map[string]counter // quota counters as the bucket shows them, by bucket key
}

type peer struct {
	heard  uint64 // the tick of the last report
	demand map[uint64]float64
}

// counter is a quota counter's value in the bucket.
type counter struct {
	Tokens   int64 `json:"tokens"`
	LastUsed int64 `json:"last_used,omitempty"` // Unix ns
}

// New builds a Limiter; Run makes it report, rebalance and flush.
func New(cfg Config) *Limiter {
	cfg.setDefaults()
	if cfg.Conn != nil && cfg.Node == "" {
		panic("limits: a node name is required to report demand")
	}
	l := &Limiter{cfg: cfg, peers: map[string]*peer{}, totals: map[string]counter{}}
	l.states.Store(&stateMap{})
	return l
}

// Sync makes the limiter follow the named keys of a view (ver is their version): new keys
// get full buckets, changed limits take effect, deleted keys are dropped. It is cheap when
// ver did not move.
func (l *Limiter) Sync(ver uint64, keys []*domain.ProxyKey) {
	if l.synced.Load() == ver && ver != 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.synced.Load() == ver && ver != 0 {
		return
	}
	now := l.cfg.Now()
	old := *l.states.Load()
	next := make(stateMap, len(keys))
	for _, k := range keys {
		st := old[k.ID]
		if st == nil {
			st = &keyState{id: k.ID}
			l.startPeriods(st, now)
		}
		st.rpmLim.Store(k.RPM)
		st.tpmLim.Store(k.TPM)
		st.dayLim.Store(k.DailyTokens)
		st.monLim.Store(k.MonthlyTokens)
		share := l.shareOf(st)
		st.rpm.setRate(perUnit(k.RPM, share), now.UnixNano())
		st.tpm.setRate(perUnit(k.TPM, share), now.UnixNano())
		next[k.ID] = st
	}
	l.states.Store(&next)
	l.synced.Store(ver)
}

func (l *Limiter) state(id uint64) *keyState { return (*l.states.Load())[id] }

// Admit decides whether a request of key k may go on at now (Unix ns): Admitted, or the
// limit that refuses it and how long until it would not.
func (l *Limiter) Admit(k *domain.ProxyKey, now int64) (Reason, time.Duration) {
	st := l.state(k.ID)
	if st == nil {
		return Admitted, 0
	}
	st.demand.Add(1)
	if q := st.monLim.Load(); q > 0 && st.mon.used(now) >= q {
		return MonthlyQuota, time.Duration(st.mon.end.Load() - now)
	}
	if q := st.dayLim.Load(); q > 0 && st.day.used(now) >= q {
		return DailyQuota, time.Duration(st.day.end.Load() - now)
	}
	if w := st.tpm.wait(now); w > 0 {
		return OverTPM, time.Duration(w)
	}
	if w := st.rpm.take(now); w > 0 {
		return OverRPM, time.Duration(w)
	}
	st.lastUsed.Store(now)
	return Admitted, 0
}

// Charge counts the tokens of an answer of key id against its per-minute bucket and its
// quotas.
func (l *Limiter) Charge(id uint64, tokens int64, now int64) {
	st := l.state(id)
	if st == nil || tokens <= 0 {
		return
	}
	st.tpm.spend(tokens, now)
	st.day.delta.Add(tokens)
	st.mon.delta.Add(tokens)
}

// ProxyKeyUsage reports what key id has used in the current UTC day and month across the
// cluster (as far as the counters show, plus what this node has not flushed yet), and
// when it was last used (zero: not seen since the counters of this month began).
func (l *Limiter) ProxyKeyUsage(id uint64) (daily, monthly int64, lastUsed time.Time) {
	now := l.cfg.Now()
	var last int64
	dk, mk := l.counter(dayKey(id, now)), l.counter(monthKey(id, now))
	if st := l.state(id); st != nil {
		daily, monthly = st.day.used(now.UnixNano()), st.mon.used(now.UnixNano())
		last = st.lastUsed.Load()
	} else {
		daily, monthly = dk.Tokens, mk.Tokens
	}
	if last = max(last, dk.LastUsed, mk.LastUsed); last > 0 {
		lastUsed = time.Unix(0, last).UTC()
	}
	return daily, monthly, lastUsed
}

func (l *Limiter) counter(key string) counter {
	l.totalsMu.Lock()
	defer l.totalsMu.Unlock()
	return l.totals[key]
}

func dayName(t time.Time) string   { return t.UTC().Format("20060102") }
func monthName(t time.Time) string { return t.UTC().Format("200601") }

func dayKey(id uint64, t time.Time) string {
	return strconv.FormatUint(id, 10) + ".d." + dayName(t)
}

func monthKey(id uint64, t time.Time) string {
	return strconv.FormatUint(id, 10) + ".m." + monthName(t)
}

func endOfDay(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.UTC)
}

func endOfMonth(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
}

// startPeriods points a key's counters at the periods of now, with the totals the bucket
// shows for them.
func (l *Limiter) startPeriods(st *keyState, now time.Time) {
	if dn := dayName(now); st.day.name != dn {
		st.day.name = dn
		st.day.total.Store(l.counter(dayKey(st.id, now)).Tokens)
		st.day.delta.Store(0)
		st.day.end.Store(endOfDay(now).UnixNano())
	}
	if mn := monthName(now); st.mon.name != mn {
		st.mon.name = mn
		st.mon.total.Store(l.counter(monthKey(st.id, now)).Tokens)
		st.mon.delta.Store(0)
		st.mon.end.Store(endOfMonth(now).UnixNano())
	}
}

// Run reports demand, rebalances the shares and flushes the quota counters every
// interval, and follows the other nodes' reports and the counters, until ctx ends.
func (l *Limiter) Run(ctx context.Context) error {
	if l.cfg.Conn != nil {
		sub, err := l.cfg.Conn.Subscribe(DemandSubject, l.onReport)
		if err != nil {
			return err
		}
		defer sub.Unsubscribe()
	}
	if l.cfg.KV != nil {
		w, err := l.cfg.KV.WatchAll(ctx)
		if err != nil {
			return err
		}
		defer w.Stop()
		go l.follow(ctx, w)
	}
	// Quota counters are flushed on their own round, so that the bucket's latency never
	// delays a demand report (a late report makes a node look gone to the others).
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		t := time.NewTicker(l.cfg.Interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				l.flush(fctx, l.cfg.Now())
				cancel()
				return
			case <-t.C:
				l.flush(ctx, l.cfg.Now())
			}
		}
	}()
	defer func() { <-flushed }()
	t := time.NewTicker(l.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			now := l.cfg.Now()
			l.report(now)
			l.rebalance(now)
		}
	}
}

// Step runs one round at once: report, rebalance, flush (tests; Run runs them every
// interval, the flush on its own).
func (l *Limiter) Step(ctx context.Context) {
	now := l.cfg.Now()
	l.report(now)
	l.rebalance(now)
	l.flush(ctx, now)
}

type report struct {
	Node   string             `json:"node"`
	Demand map[string]float64 `json:"demand"` // key id → requests per second
}

// report measures this node's demand per limited key and sends it to the others.
func (l *Limiter) report(now time.Time) {
	l.mu.Lock()
	// Demand is a rate: requests per second of the limits' clock since the last report,
	// so that a round that came late (a busy node) does not look like more demand.
	per := 1.0
	if !l.reported.IsZero() {
		if el := now.Sub(l.reported); el > 0 {
			per = float64(time.Second) / float64(el)
		}
	}
	l.reported = now
	rep := report{Node: l.cfg.Node, Demand: map[string]float64{}}
	for id, st := range *l.states.Load() {
		d := float64(st.demand.Swap(0)) * per
		// Smoothed over about two intervals: steady under jitter, quick to follow a shift.
		st.smoothed = 0.5*st.smoothed + 0.5*d
		if st.smoothed < 1e-3 {
			st.smoothed = 0
		}
		if st.smoothed > 0 && (st.rpmLim.Load() > 0 || st.tpmLim.Load() > 0) {
			rep.Demand[strconv.FormatUint(id, 10)] = st.smoothed
		}
	}
	l.mu.Unlock()
	l.peersMu.Lock()
	l.tick++
	l.peersMu.Unlock()
	if l.cfg.Conn == nil {
		return
	}
	b, err := json.Marshal(rep)
	if err == nil {
		err = l.cfg.Conn.Publish(DemandSubject, b)
	}
	if err != nil {
		l.cfg.Log.Warn().Err(err).Msg("cannot report proxy-key demand")
	}
}

func (l *Limiter) onReport(m *nats.Msg) {
	var rep report
	if err := json.Unmarshal(m.Data, &rep); err != nil || rep.Node == "" || rep.Node == l.cfg.Node {
		return
	}
	d := make(map[uint64]float64, len(rep.Demand))
	for k, v := range rep.Demand {
		if id, err := strconv.ParseUint(k, 10, 64); err == nil && v > 0 {
			d[id] = v
		}
	}
	l.peersMu.Lock()
	l.peers[rep.Node] = &peer{heard: l.tick, demand: d}
	l.peersMu.Unlock()
}

// shareOf is this node's share of key st's limits: its demand over the demand of every
// node heard from lately. Every node is given a little, so that one whose demand just
// began is not refused until the next round; a node alone owns the whole limit.
func (l *Limiter) shareOf(st *keyState) float64 {
	l.peersMu.Lock()
	defer l.peersMu.Unlock()
	n, sum := 1.0, st.smoothed
	for name, p := range l.peers {
		if l.tick-p.heard > uint64(l.cfg.StaleAfter) {
			delete(l.peers, name)
			continue
		}
		n++
		sum += p.demand[st.id]
	}
	if n == 1 {
		return 1
	}
	// The floor: 2% of the mean demand, so the unused part is at most 2% of the limit.
	floor := 0.02*sum/n + 1e-6
	return (st.smoothed + floor) / (sum + n*floor)
}

func (l *Limiter) rebalance(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ns := now.UnixNano()
	for _, st := range *l.states.Load() {
		rpm, tpm := st.rpmLim.Load(), st.tpmLim.Load()
		if rpm == 0 && tpm == 0 {
			continue
		}
		share := l.shareOf(st)
		st.rpm.setRate(perUnit(rpm, share), ns)
		st.tpm.setRate(perUnit(tpm, share), ns)
	}
}

// flush adds what this node counted to the bucket's counters (compare-and-set, retried on
// a conflict), then moves the counters on to a new day or month.
func (l *Limiter) flush(ctx context.Context, now time.Time) {
	// The counters to write are picked under the lock, written without it: a slow bucket
	// never holds up the reports and rebalancing.
	type write struct {
		per     *period
		key     string
		d, last int64
	}
	var writes []write
	l.mu.Lock()
	states := *l.states.Load()
	for _, st := range states {
		last := st.lastUsed.Load()
		for _, w := range []write{
			{&st.day, strconv.FormatUint(st.id, 10) + ".d." + st.day.name, 0, last},
			{&st.mon, strconv.FormatUint(st.id, 10) + ".m." + st.mon.name, 0, last},
		} {
			w.d = w.per.delta.Load()
			if w.d != 0 || last != 0 && last > l.counter(w.key).LastUsed {
				writes = append(writes, w)
			}
		}
	}
	l.mu.Unlock()
	for _, w := range writes {
		total, err := l.add(ctx, w.key, w.d, w.last)
		if err != nil {
			l.cfg.Log.Warn().Err(err).Str("counter", w.key).Msg("cannot flush proxy-key usage")
			continue
		}
		w.per.total.Store(total)
		w.per.delta.Add(-w.d)
	}
	l.mu.Lock()
	for _, st := range states {
		l.startPeriods(st, now)
	}
	l.mu.Unlock()
}

// maxCAS bounds the compare-and-set retries of one counter update.
const maxCAS = 10

// add adds d tokens to a counter and returns its new total.
func (l *Limiter) add(ctx context.Context, key string, d, last int64) (int64, error) {
	if l.cfg.KV == nil {
		c := l.counter(key)
		c.Tokens += d
		c.LastUsed = max(c.LastUsed, last)
		l.setCounter(key, c)
		return c.Tokens, nil
	}
	for range maxCAS {
		var c counter
		var rev uint64
		e, err := l.cfg.KV.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return 0, err
		default:
			if err := json.Unmarshal(e.Value(), &c); err != nil {
				return 0, err
			}
			rev = e.Revision()
		}
		c.Tokens += d
		c.LastUsed = max(c.LastUsed, last)
		b, _ := json.Marshal(c)
		if rev == 0 {
			_, err = l.cfg.KV.Create(ctx, key, b)
		} else {
			_, err = l.cfg.KV.Update(ctx, key, b, rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) || isWrongSeq(err) {
			continue
		}
		if err != nil {
			return 0, err
		}
		l.setCounter(key, c)
		return c.Tokens, nil
	}
	return 0, errors.New("counter kept changing")
}

func isWrongSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == 10164)
}

func (l *Limiter) setCounter(key string, c counter) {
	l.totalsMu.Lock()
	defer l.totalsMu.Unlock()
	l.totals[key] = c
}

// follow keeps the counters as the bucket shows them, for every node's flushes.
func (l *Limiter) follow(ctx context.Context, w jetstream.KeyWatcher) {
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			var c counter
			if json.Unmarshal(e.Value(), &c) != nil {
				continue
			}
			l.setCounter(e.Key(), c)
			l.applyCounter(e.Key(), c)
		}
	}
}

// applyCounter shows a counter another node flushed in the key's current period.
func (l *Limiter) applyCounter(key string, c counter) {
	parts := strings.Split(key, ".")
	if len(parts) != 3 {
		return
	}
	id, err := strconv.ParseUint(parts[0], 10, 64)
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.state(id)
	if st == nil {
		return
	}
	switch {
	case parts[1] == "d" && parts[2] == st.day.name:
		st.day.total.Store(max(st.day.total.Load(), c.Tokens))
	case parts[1] == "m" && parts[2] == st.mon.name:
		st.mon.total.Store(max(st.mon.total.Load(), c.Tokens))
	}
}
