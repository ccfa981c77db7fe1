package tasks_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"gpt-load/httpapi/tasks"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func waitDone(t *testing.T, s tasks.Store) tasks.Status {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		st, err := s.Current(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !st.IsRunning {
			return st
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("task did not finish")
	return tasks.Status{}
}

func TestMemorySlot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := tasks.NewMemory(c.now)
	if st, _ := m.Current(ctx); st.TaskType != "" || st.IsRunning || !st.StartedAt.IsZero() {
		t.Fatalf("fresh slot: %+v", st)
	}
	a := tasks.Status{ID: "a", TaskType: tasks.KeyImport, IsRunning: true, Total: 3, StartedAt: c.now()}
	if err := m.Begin(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := m.Begin(ctx, tasks.Status{ID: "b", IsRunning: true}); !errors.Is(err, tasks.ErrBusy) {
		t.Fatalf("second begin: %v", err)
	}
	if err := m.Update(ctx, tasks.Status{ID: "b", IsRunning: true}); !errors.Is(err, tasks.ErrNotOwner) {
		t.Fatalf("update by another task: %v", err)
	}
	a.Processed = 2
	if err := m.Update(ctx, a); err != nil {
		t.Fatal(err)
	}
	end := c.now().Add(time.Second)
	a.IsRunning, a.FinishedAt = false, &end
	if err := m.Update(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := m.Update(ctx, a); !errors.Is(err, tasks.ErrNotOwner) {
		t.Fatalf("update after the end: %v", err)
	}
	c.add(tasks.Retention)
	if st, _ := m.Current(ctx); st.ID != "a" || st.Processed != 2 {
		t.Fatalf("finished task within retention: %+v", st)
	}
	c.add(2 * time.Second)
	if st, _ := m.Current(ctx); st.TaskType != "" {
		t.Fatalf("finished task after retention: %+v", st)
	}
	if err := m.Begin(ctx, tasks.Status{ID: "c", IsRunning: true}); err != nil {
		t.Fatalf("begin after the end: %v", err)
	}
}

func TestRunner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("result", func(t *testing.T) {
		t.Parallel()
		m := tasks.NewMemory(nil)
		r := tasks.NewRunner(m, zerolog.Nop(), nil)
		release := make(chan struct{})
		st, err := r.Start(ctx, tasks.KeyImport, "g1", 10, func(ctx context.Context, p *tasks.Progress) (any, error) {
			p.Set(4)
			<-release
			p.Add(6)
			return map[string]int{"added_count": 10}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !st.IsRunning || st.Total != 10 || st.GroupName != "g1" || st.TaskType != tasks.KeyImport {
			t.Fatalf("initial status %+v", st)
		}
		if _, err := r.Start(ctx, tasks.KeyDelete, "g2", 1, nil); !errors.Is(err, tasks.ErrBusy) {
			t.Fatalf("start while running: %v", err)
		}
		close(release)
		end := waitDone(t, m)
		if end.Processed != 10 || end.Error != "" || end.FinishedAt == nil || end.DurationSeconds == nil {
			t.Fatalf("end %+v", end)
		}
		var res map[string]int
		if err := json.Unmarshal(end.Result, &res); err != nil || res["added_count"] != 10 {
			t.Fatalf("result %s", end.Result)
		}
	})
	t.Run("error and panic", func(t *testing.T) {
		t.Parallel()
		m := tasks.NewMemory(nil)
		r := tasks.NewRunner(m, zerolog.Nop(), nil)
		if _, err := r.Start(ctx, tasks.KeyValidation, "g", 1, func(context.Context, *tasks.Progress) (any, error) {
			return nil, errors.New("upstream unreachable")
		}); err != nil {
			t.Fatal(err)
		}
		if end := waitDone(t, m); end.Error != "upstream unreachable" || end.Result != nil {
			t.Fatalf("failed task %+v", end)
		}
		if _, err := r.Start(ctx, tasks.KeyValidation, "g", 1, func(context.Context, *tasks.Progress) (any, error) {
			panic("boom")
		}); err != nil {
			t.Fatal(err)
		}
		if end := waitDone(t, m); end.Error != "internal error" || end.IsRunning {
			t.Fatalf("panicked task %+v", end)
		}
	})
}
