package projections

import (
	"runtime/debug"
	"sync"
	"time"
)

// A burst of writes (an import of many keys, a mass deletion) leaves garbage the runtime
// would carry as resident memory for minutes: the request bodies and decoded events, key
// sets grown with slack, and the event store's write cache. Once such a burst has been
// quiet for a moment the runner packs the state as it does after a long replay and hands
// the garbage back to the OS; once more after the event store's caches have expired.
// Ordinary traffic never gets here: small changes do not add up to a burst.

// settler schedules that packing. Its fields are guarded by mu; the work runs on a timer
// goroutine under the runner's write lock, like any other change of the state.
type settler struct {
	mu      sync.Mutex
	weight  int // keys and events applied since the last settle
	timer   *time.Timer
	stopped bool
	settles int
}

// note counts a change of weight w (keys touched, at least 1) and, past the burst size,
// (re)arms the settle timer so that it fires once the burst has been quiet for a while.
func (r *Runner) noteBurst(w int) {
	s := &r.settle
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.weight += w
	if s.weight < r.cfg.BurstSize {
		return
	}
	if s.timer == nil {
		s.timer = time.AfterFunc(r.cfg.SettleAfter, r.settleNow)
		return
	}
	s.timer.Reset(r.cfg.SettleAfter)
}

// settleNow packs the state, rebuilds the pools from it and returns free memory to the
// OS; then again as the event store's caches expire.
func (r *Runner) settleNow() {
	s := &r.settle
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	weight := s.weight
	s.weight = 0
	s.settles++
	s.mu.Unlock()

	start := time.Now()
	r.trim()
	debug.FreeOSMemory()
	r.zl.Info().Int("weight", weight).Dur("took_ms", time.Since(start)).Msg("state packed after a burst of changes")
	r.freeLater(1)
}

// freeLater returns free memory to the OS again after round × SettleAgain, twice: the
// event store drops its caches block by block once they have been idle for a while.
func (r *Runner) freeLater(round int) {
	if round > 2 {
		return
	}
	s := &r.settle
	time.AfterFunc(r.cfg.SettleAgain, func() {
		s.mu.Lock()
		stopped, busy := s.stopped, s.weight >= r.cfg.BurstSize
		s.mu.Unlock()
		if stopped || busy {
			return // a new burst settles itself
		}
		debug.FreeOSMemory()
		r.freeLater(round + 1)
	})
}

// stopSettling cancels a pending settle; the runner calls it on its way out.
func (r *Runner) stopSettling() {
	s := &r.settle
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	if s.timer != nil {
		s.timer.Stop()
	}
}

// Settles is how many times the state was packed after a burst (for tests and metrics).
func (r *Runner) Settles() int {
	r.settle.mu.Lock()
	defer r.settle.mu.Unlock()
	return r.settle.settles
}
