package events_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"gpt-load/events"
	"gpt-load/events/eventstest"
)

// candidate is one node of an election test: its own connection, its lease, and a
// record of when its duty ran.
type candidate struct {
	name    string
	nc      *nats.Conn
	lease   *events.Lease
	cancel  context.CancelFunc
	done    chan struct{}
	running atomic.Bool
}

func runCandidate(t *testing.T, c *eventstest.Cluster, name string, ttl time.Duration, isCandidate bool, overlap *atomic.Int32, maxOverlap *atomic.Int32) *candidate {
	t.Helper()
	nc, err := nats.Connect(c.URL(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := events.OpenLease(ctx, js, events.LeaseConfig{Node: name, Replicas: 3, TTL: ttl, Candidate: isCandidate}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	cd := &candidate{name: name, nc: nc, lease: l, done: make(chan struct{})}
	rctx, rcancel := context.WithCancel(context.Background())
	cd.cancel = rcancel
	go func() {
		defer close(cd.done)
		l.Run(rctx, func(ctx context.Context) {
			n := overlap.Add(1)
			for {
				m := maxOverlap.Load()
				if n <= m || maxOverlap.CompareAndSwap(m, n) {
					break
				}
			}
			cd.running.Store(true)
			<-ctx.Done()
			cd.running.Store(false)
			overlap.Add(-1)
		})
	}()
	t.Cleanup(func() { rcancel(); <-cd.done })
	return cd
}

func leaders(cs []*candidate) []*candidate {
	var out []*candidate
	for _, c := range cs {
		if c.running.Load() {
			out = append(out, c)
		}
	}
	return out
}

// TestLeaseElectsOneAndFailsOver runs three candidates and an IS_SLAVE watcher on a
// 3-server cluster: exactly one runs the duty; when it stops gracefully another takes
// over at once, when it dies (its connection cut) another takes over within the lease
// time, and at no moment do two run the duty.
func TestLeaseElectsOneAndFailsOver(t *testing.T) {
	t.Parallel()
	c := eventstest.RunCluster(t, 3)
	const ttl = 2 * time.Second
	var overlap, maxOverlap atomic.Int32
	var cs []*candidate
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			cd := runCandidate(t, c, fmt.Sprintf("n%d", i+1), ttl, true, &overlap, &maxOverlap)
			mu.Lock()
			cs = append(cs, cd)
			mu.Unlock()
		})
	}
	wg.Wait()
	watcher := runCandidate(t, c, "slave", ttl, false, &overlap, &maxOverlap)

	one := func() *candidate {
		t.Helper()
		var l *candidate
		eventstest.CheckFor(t, 3*ttl, 10*time.Millisecond, func() error {
			ls := leaders(cs)
			if len(ls) != 1 {
				return fmt.Errorf("%d leaders", len(ls))
			}
			if got := watcher.lease.Leader(); got != ls[0].name {
				return fmt.Errorf("the watcher sees %q as leader, not %s", got, ls[0].name)
			}
			l = ls[0]
			return nil
		})
		return l
	}
	first := one()
	if watcher.running.Load() || watcher.lease.Leading() {
		t.Fatal("a node that is not a candidate took the lease")
	}

	// A graceful stop hands the lease over: the next leader is there well within the TTL.
	stopped := time.Now()
	first.cancel()
	<-first.done
	second := one()
	handover := time.Since(stopped)
	t.Logf("graceful handover from %s to %s in %v", first.name, second.name, handover.Round(time.Millisecond))
	if handover > ttl {
		t.Errorf("graceful handover took %v, more than the lease time %v", handover, ttl)
	}

	// A leader that dies keeps its lease until it expires: another takes over within
	// the lease time, plus one campaign tick.
	died := time.Now()
	second.nc.Close()
	var third *candidate
	eventstest.CheckFor(t, 3*ttl, 10*time.Millisecond, func() error {
		for _, cd := range leaders(cs) {
			if cd != second {
				third = cd
				return nil
			}
		}
		return fmt.Errorf("no new leader")
	})
	failover := time.Since(died)
	t.Logf("failover from %s (connection cut) to %s in %v (lease %v)", second.name, third.name, failover.Round(time.Millisecond), ttl)
	if failover > ttl+ttl/3+500*time.Millisecond {
		t.Errorf("failover took %v: more than the lease %v and a campaign tick", failover, ttl)
	}
	if second.running.Load() {
		t.Error("the dead leader still runs its duty")
	}
	if m := maxOverlap.Load(); m != 1 {
		t.Errorf("%d nodes ran the duty at the same time", m)
	}
}
