// Package projections builds the in-memory read models of the service from the event log:
// settings, groups and key pools. Every node replays the log at start (from a snapshot when
// it has one) and then follows it, so all nodes converge on the same state.
package projections

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"gpt-load/domain"
	"gpt-load/events"
)

// Log is what the runner needs of the event log.
type Log interface {
	Position(ctx context.Context) (events.Position, error)
	Follow(ctx context.Context, after uint64, handle func(ev events.Event, pending uint64) error) error
}

// Config tunes the runner.
type Config struct {
	// Seed is the settings in force on an empty log (defaults with the environment's seeds).
	Seed domain.Settings
	// SnapshotEvery is how many events after the last snapshot justify a new one.
	SnapshotEvery uint64
	// SnapshotInterval is the least time between two snapshots taken while following.
	SnapshotInterval time.Duration
	// PublishEvery bounds how many events are applied before readers see them while the
	// log is being replayed; once caught up every event is published at once.
	PublishEvery int
	// BurstSize is how many keys (or events) applied after the catch-up make a burst
	// whose garbage is handed back to the OS once it has been quiet for SettleAfter, and
	// again after SettleAgain (see settle.go).
	BurstSize   int
	SettleAfter time.Duration
	SettleAgain time.Duration
}

func (c *Config) setDefaults() {
	if c.SnapshotEvery == 0 {
		c.SnapshotEvery = 1000
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = time.Minute
	}
	if c.PublishEvery == 0 {
		c.PublishEvery = 512
	}
	if c.BurstSize == 0 {
		c.BurstSize = 20_000
	}
	if c.SettleAfter == 0 {
		c.SettleAfter = time.Second
	}
	if c.SettleAgain == 0 {
		// The embedded server's file store drops its write cache after 10 s idle.
		c.SettleAgain = 15 * time.Second
	}
}

// ErrStopped is returned to waiters once the runner has stopped.
var ErrStopped = errors.New("projections: stopped")

// Runner owns the projected state. One goroutine (Run) applies events; readers use Read
// (shared lock, for admin queries and command decisions) or View (lock-free, for the proxy).
type Runner struct {
	log   Log
	snaps *events.Snapshots
	cfg   Config
	zl    zerolog.Logger

	mu    sync.RWMutex
	state *domain.State

	view     atomic.Pointer[View]
	applied  atomic.Uint64 // last sequence visible to readers (state and view)
	caughtUp atomic.Bool

	waitMu sync.Mutex
	waitCh chan struct{} // closed and replaced at every publish
	done   chan struct{}
	err    error

	// owned by the Run goroutine
	dirtyView  bool
	dirtyPools map[uint64]struct{}
	unshown    int
	lastSnap   uint64
	lastSnapAt time.Time
	streamAt   time.Time

	settle settler
}

// New builds a runner; call Run to start it.
func New(log Log, snaps *events.Snapshots, cfg Config, zl zerolog.Logger) *Runner {
	if log == nil || snaps == nil {
		panic("projections: nil log or snapshots")
	}
	cfg.setDefaults()
	r := &Runner{
		log: log, snaps: snaps, cfg: cfg, zl: zl,
		state:      domain.NewState(cfg.Seed),
		waitCh:     make(chan struct{}),
		done:       make(chan struct{}),
		dirtyPools: map[uint64]struct{}{},
	}
	r.view.Store(buildView(r.state, nil))
	return r
}

// Read calls f with the current state under a shared lock. f must not keep references to
// keys after it returns, nor call back into the runner.
func (r *Runner) Read(f func(s *domain.State)) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	f(r.state)
}

// View is the latest published view; it never blocks.
func (r *Runner) View() *View { return r.view.Load() }

// Applied is the last log sequence readers can see.
func (r *Runner) Applied() uint64 { return r.applied.Load() }

// CaughtUp reports whether the runner has applied everything the log held when it
// started: until then the node must not serve from its state.
func (r *Runner) CaughtUp() bool { return r.caughtUp.Load() }

// WaitFor returns once readers can see sequence seq: read your writes.
func (r *Runner) WaitFor(ctx context.Context, seq uint64) error {
	for {
		r.waitMu.Lock()
		ch := r.waitCh
		r.waitMu.Unlock()
		if r.applied.Load() >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-r.done:
			return ErrStopped
		case <-ctx.Done():
			return fmt.Errorf("wait for event %d: %w", seq, ctx.Err())
		}
	}
}

// Run loads the snapshot, replays the tail of the log and follows it until ctx ends. On
// the way out it takes a last snapshot. It returns ctx's error on a normal stop, and any
// other error when an event cannot be applied: the node must not go on with a state that
// skipped a fact.
func (r *Runner) Run(ctx context.Context) (err error) {
	defer func() {
		r.stopSettling()
		r.err = err
		close(r.done)
	}()
	pos, err := r.log.Position(ctx)
	if err != nil {
		return err
	}
	r.streamAt = pos.Created
	start := time.Now()
	r.loadSnapshot(pos)
	from := r.state.Seq
	r.lastSnap = from // lastSnapAt stays zero: a long replay is saved as soon as it is done
	r.publish()
	if pos.LastSeq <= from {
		r.markCaughtUp(start, 0)
	}
	replayed := 0
	err = r.log.Follow(ctx, from, func(ev events.Event, pending uint64) error {
		w := r.apply(ev)
		replayed++
		if r.caughtUp.Load() {
			r.noteBurst(w)
		}
		if pending == 0 || r.unshown >= r.cfg.PublishEvery {
			r.publish()
		}
		if pending == 0 && !r.caughtUp.Load() {
			if replayed >= 1000 {
				r.trim()
			}
			r.markCaughtUp(start, replayed)
		}
		if pending == 0 {
			r.maybeSnapshot(false)
		}
		return nil
	})
	if ctx.Err() != nil {
		r.publish()
		r.maybeSnapshot(true)
		return ctx.Err()
	}
	return err
}

// trim packs the state a long replay built (see domain.State.Trim) and rebuilds the pools
// so they hold the packed values, not the replay's copies.
func (r *Runner) trim() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state.Trim()
	v := r.view.Load()
	for id, g := range v.byID {
		g.pool.build(r.state.Keys(id))
	}
}

func (r *Runner) markCaughtUp(start time.Time, replayed int) {
	// Loading a snapshot or replaying a long log is a one-time burst of garbage; hand it
	// back to the OS now instead of carrying it as resident memory.
	debug.FreeOSMemory()
	r.caughtUp.Store(true)
	r.mu.RLock()
	seq := r.state.Seq
	r.mu.RUnlock()
	r.zl.Info().Uint64("seq", seq).Int("replayed", replayed).
		Dur("took_ms", time.Since(start)).Msg("projections caught up with the event log")
}

// apply folds one event into the state and returns its weight: the keys it added, at
// least 1.
func (r *Runner) apply(ev events.Event) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ev.Rebase != nil {
		// A rebase (gpt-load migrate-keys) replaces the whole state: every pool is built
		// anew from it.
		r.state = ev.Rebase
		r.view.Store(buildView(r.state, nil))
		r.dirtyView = true
		clear(r.dirtyPools)
		r.unshown++
		return 1
	}
	ch := r.state.Apply(ev.Fact, ev.Meta)
	weight := max(1, int(ch.AddedTo-ch.AddedFrom))
	r.unshown++
	if ch.Settings || ch.Groups || ch.ProxyKeys {
		r.dirtyView = true
	}
	if ch.Keys != 0 {
		r.updatePool(ev.Fact, ch)
	}
	return weight
}

// updatePool carries a key change into the group's pool: in place where it can, by a
// rebuild at the next publish where it cannot. A group created in this batch has no
// pool yet; the next view builds it from the state.
func (r *Runner) updatePool(f domain.Fact, ch domain.Changes) {
	g, ok := r.view.Load().byID[ch.Keys]
	if !ok {
		return
	}
	h, ks := g.pool, r.state.Keys(ch.Keys)
	if ks == nil {
		return
	}
	key := func(id uint64) *domain.Key {
		k, _ := ks.ByID(id)
		return k
	}
	switch f := f.(type) {
	case domain.KeysAdded:
		h.added(ks, ch.AddedFrom, ch.AddedTo)
	case domain.KeysRemoved:
		for _, id := range f.KeyIDs {
			h.sync(id, nil)
		}
	case domain.KeysRestored:
		if f.AllInvalid {
			h.rebuild = true
		}
		for _, id := range f.KeyIDs {
			h.sync(id, key(id))
		}
	case domain.KeyFailed:
		h.sync(f.KeyID, key(f.KeyID))
	case domain.KeySucceeded:
		h.sync(f.KeyID, key(f.KeyID))
	case domain.KeyValidated:
		h.sync(f.KeyID, key(f.KeyID))
	case domain.KeysDisabled:
		for _, id := range f.KeyIDs {
			h.sync(id, key(id))
		}
	case domain.KeysEnabled:
		for _, id := range f.KeyIDs {
			h.sync(id, key(id))
		}
	case domain.KeyNoteChanged:
		return
	default: // KeysCleared and anything else touching many keys
		h.rebuild = true
	}
	if h.needsRebuild() {
		r.dirtyPools[ch.Keys] = struct{}{}
	}
}

// publish makes everything applied so far visible: the view and the pools of groups whose
// keys changed, then the applied sequence, then wakes waiters.
func (r *Runner) publish() {
	r.mu.RLock()
	seq := r.state.Seq
	if r.dirtyView {
		r.view.Store(buildView(r.state, r.view.Load()))
		r.dirtyView = false
	}
	v := r.view.Load()
	for id := range r.dirtyPools {
		if g, ok := v.byID[id]; ok && g.pool.needsRebuild() {
			g.pool.build(r.state.Keys(id))
		}
		delete(r.dirtyPools, id)
	}
	r.mu.RUnlock()
	r.unshown = 0
	r.applied.Store(seq)
	r.waitMu.Lock()
	close(r.waitCh)
	r.waitCh = make(chan struct{})
	r.waitMu.Unlock()
}

func (r *Runner) loadSnapshot(pos events.Position) {
	var loaded *domain.State
	info, err := r.snaps.Load(func(info events.SnapshotInfo, body io.Reader) error {
		if !info.StreamCreated.Equal(pos.Created) {
			return fmt.Errorf("taken from another event stream (created %s, this one %s)", info.StreamCreated, pos.Created)
		}
		if info.Seq > pos.LastSeq {
			return fmt.Errorf("covers event %d but the log ends at %d", info.Seq, pos.LastSeq)
		}
		s, err := domain.DecodeState(body)
		if err != nil {
			return err
		}
		loaded = s
		return nil
	})
	switch {
	case errors.Is(err, events.ErrNoSnapshot):
		r.zl.Info().Msg("no snapshot: replaying the whole event log")
	case err != nil:
		r.zl.Warn().Err(err).Msg("snapshot not usable: removed, replaying the whole event log")
		if rerr := r.snaps.Remove(); rerr != nil {
			r.zl.Warn().Err(rerr).Msg("unusable snapshot not removed")
		}
	default:
		r.state = loaded
		r.dirtyView = true
		r.view.Store(buildView(r.state, nil))
		r.zl.Info().Uint64("seq", info.Seq).Int64("bytes", info.Bytes).Msg("state loaded from snapshot")
	}
}

// maybeSnapshot saves the state when enough happened since the last one (or, when final,
// whenever anything did). It runs on the Run goroutine between events, under the shared
// lock, so admin reads go on while it writes.
func (r *Runner) maybeSnapshot(final bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	seq := r.state.Seq
	behind := seq - r.lastSnap
	if behind == 0 {
		return
	}
	if !final && (behind < r.cfg.SnapshotEvery || time.Since(r.lastSnapAt) < r.cfg.SnapshotInterval) {
		return
	}
	start := time.Now()
	info := events.SnapshotInfo{Seq: seq, StreamCreated: r.streamAt, TakenAt: start.UTC()}
	if err := r.snaps.Save(info, r.state.Encode); err != nil {
		r.zl.Error().Err(err).Msg("snapshot failed; the next start replays more of the log")
		return
	}
	r.lastSnap, r.lastSnapAt = seq, time.Now()
	r.zl.Info().Uint64("seq", seq).Dur("took_ms", time.Since(start)).Msg("snapshot saved")
}
