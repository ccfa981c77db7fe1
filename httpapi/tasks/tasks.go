// Package tasks keeps the single slot of long admin tasks (key imports, key deletes, key
// validations; API.md 3.4): at most one runs at a time, its progress is visible while it
// runs, and its outcome stays visible for an hour after it ends.
//
// The slot lives behind Store. Memory keeps it in the node's memory (a single node); KV
// keeps it in a JetStream key-value bucket shared by every node of a cluster.
package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"
)

// Type names a kind of task, as the API shows it.
type Type string

const (
	KeyValidation Type = "KEY_VALIDATION"
	KeyImport     Type = "KEY_IMPORT"
	KeyDelete     Type = "KEY_DELETE"
)

// Status is the state of the slot (API.md 3.4). The zero Status means no task ran (or the
// last one expired).
type Status struct {
	ID              string          `json:"-"` // the task's own id; an owner updates only its task
	TaskType        Type            `json:"task_type"`
	IsRunning       bool            `json:"is_running"`
	GroupName       string          `json:"group_name,omitempty"`
	Processed       int             `json:"processed"`
	Total           int             `json:"total"`
	Result          json.RawMessage `json:"result,omitempty"`
	Error           string          `json:"error,omitempty"`
	StartedAt       time.Time       `json:"started_at"`
	FinishedAt      *time.Time      `json:"finished_at,omitempty"`
	DurationSeconds *float64        `json:"duration_seconds,omitempty"`
}

// ErrBusy is returned by Store.Begin while another task holds the slot.
var ErrBusy = errors.New("a task is already running, please wait")

// ErrNotOwner is returned by Store.Update for a task that no longer holds the slot.
var ErrNotOwner = errors.New("the task no longer holds the slot")

// Store holds the one task slot.
type Store interface {
	// Begin claims the slot for st (running, with an ID); ErrBusy while another task runs.
	Begin(ctx context.Context, st Status) error
	// Update replaces the status of the task that holds the slot; ErrNotOwner if st.ID
	// is not that task.
	Update(ctx context.Context, st Status) error
	// Current is the running task, or the last one within its retention; the zero
	// Status when there is none.
	Current(ctx context.Context) (Status, error)
}

// Retention is how long a finished task stays visible.
const Retention = time.Hour

// Memory is a Store in the memory of one node.
type Memory struct {
	mu  sync.Mutex
	cur Status
	now func() time.Time
}

// NewMemory returns an empty in-memory slot. now defaults to time.Now.
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{now: now}
}

// Begin implements Store.
func (m *Memory) Begin(_ context.Context, st Status) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur.IsRunning {
		return ErrBusy
	}
	m.cur = st
	return nil
}

// Update implements Store.
func (m *Memory) Update(_ context.Context, st Status) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur.ID != st.ID || !m.cur.IsRunning {
		return ErrNotOwner
	}
	m.cur = st
	return nil
}

// Current implements Store.
func (m *Memory) Current(context.Context) (Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.cur.IsRunning && m.cur.FinishedAt != nil && m.now().Sub(*m.cur.FinishedAt) > Retention {
		m.cur = Status{}
	}
	return m.cur, nil
}

// Work is the body of a task. It reports progress through p and returns the result to
// show (a JSON-encodable value) or an error.
type Work func(ctx context.Context, p *Progress) (result any, err error)

// Runner starts tasks in the slot and keeps their status up to date.
type Runner struct {
	store Store
	log   zerolog.Logger
	now   func() time.Time
	// every is the least time between two progress updates of the store: a shared store
	// should not be written for each chunk of a big import.
	every time.Duration
}

// NewRunner runs tasks in store. now defaults to time.Now.
func NewRunner(store Store, log zerolog.Logger, now func() time.Time) *Runner {
	if store == nil {
		panic("tasks: nil store")
	}
	if now == nil {
		now = time.Now
	}
	return &Runner{store: store, log: log, now: now, every: 250 * time.Millisecond}
}

// Store is the slot the runner uses.
func (r *Runner) Store() Store { return r.store }

// Start claims the slot for a task of type typ on group with total entries, then runs
// work in its own goroutine under ctx. It returns the initial status, or ErrBusy (or the
// store's error) without running anything.
func (r *Runner) Start(ctx context.Context, typ Type, group string, total int, work Work) (Status, error) {
	st := Status{
		ID: nuid.Next(), TaskType: typ, IsRunning: true, GroupName: group,
		Total: total, StartedAt: r.now(),
	}
	if err := r.store.Begin(ctx, st); err != nil {
		return Status{}, err
	}
	p := &Progress{r: r, st: st, ctx: context.WithoutCancel(ctx)}
	go p.run(ctx, work)
	return st, nil
}

// Progress lets a task report how far it got. It is safe for concurrent use.
type Progress struct {
	r         *Runner
	ctx       context.Context // for saving: a status must be saved even after the task was cancelled
	processed atomic.Int64
	mu        sync.Mutex
	st        Status
	saved     time.Time
}

// Set records that n entries are processed and saves the status when the last save is
// old enough.
func (p *Progress) Set(n int) {
	p.processed.Store(int64(n))
	p.save()
}

// Add records d more processed entries.
func (p *Progress) Add(d int) {
	p.processed.Add(int64(d))
	p.save()
}

// save writes the progress to the store when the last write is older than the runner's
// interval. Callers never queue behind a write in progress: the next one carries their
// progress.
func (p *Progress) save() {
	if !p.mu.TryLock() {
		return
	}
	defer p.mu.Unlock()
	now := p.r.now()
	if now.Sub(p.saved) < p.r.every {
		return
	}
	p.saved = now
	p.st.Processed = int(p.processed.Load())
	// A progress update that fails is not worth failing the task: the final update says
	// how it ended.
	if err := p.r.store.Update(p.ctx, p.st); err != nil {
		p.r.log.Warn().Err(err).Str("task", string(p.st.TaskType)).Msg("task progress not saved")
	}
}

func (p *Progress) run(ctx context.Context, work Work) {
	var (
		result any
		err    error
	)
	func() {
		defer func() {
			if v := recover(); v != nil {
				PanicFields(p.r.log.Error(), v).Str("task", string(p.st.TaskType)).Msg("task panicked")
				err = fmt.Errorf("internal error")
			}
		}()
		result, err = work(ctx, p)
	}()
	p.mu.Lock()
	end := p.r.now()
	p.st.IsRunning = false
	p.st.Processed = int(p.processed.Load())
	p.st.FinishedAt = &end
	d := end.Sub(p.st.StartedAt).Seconds()
	p.st.DurationSeconds = &d
	if err != nil {
		p.st.Error = err.Error()
	} else if result != nil {
		if p.st.Result, err = json.Marshal(result); err != nil {
			p.st.Error = "cannot encode the result: " + err.Error()
		}
	}
	final := p.st
	p.mu.Unlock()
	// The slot must be released even when the task's context is gone.
	if err := p.r.store.Update(p.ctx, final); err != nil {
		p.r.log.Error().Err(err).Str("task", string(final.TaskType)).Msg("task end not saved")
	}
	ev := p.r.log.Info()
	if final.Error != "" {
		ev = p.r.log.Warn().Str("error", final.Error)
	}
	ev.Str("task", string(final.TaskType)).Str("group", final.GroupName).Int("processed", final.Processed).
		Int("total", final.Total).Float64("seconds", *final.DurationSeconds).Msg("task finished")
}

// PanicFields adds a recovered panic to a log event without showing a value that could
// hold a secret (a panic raised with an upstream key, or with an error quoting a request
// URL): a runtime error (index out of range, nil map…) is shown, being made of types and
// numbers only; any other value by its type alone. The stack goes with it: a Go stack
// shows arguments as machine words, never what a string holds.
func PanicFields(e *zerolog.Event, v any) *zerolog.Event {
	if re, ok := v.(runtime.Error); ok {
		e = e.Str("panic", re.Error())
	} else {
		e = e.Str("panic", fmt.Sprintf("a value of type %T (not shown: it may hold a secret)", v))
	}
	return e.Bytes("stack", debug.Stack())
}
