package limits_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"gpt-load/domain"
	"gpt-load/events/eventstest"
	"gpt-load/proxy/limits"
)

// admitted counts how many of n requests at now the limiter admits.
func admitted(l *limits.Limiter, k *domain.ProxyKey, now time.Time, n int) int {
	ok := 0
	for range n {
		if r, _ := l.Admit(k, now.UnixNano()); r == limits.Admitted {
			ok++
		}
	}
	return ok
}

// TestSharesFollowDemand runs two limiters that report over a real NATS server: the burst
// of a key is split by their demand, and a node that stops reporting gives its share back
// after StaleAfter rounds.
func TestSharesFollowDemand(t *testing.T) {
	t.Parallel()
	srv := eventstest.RunServer(t, "")
	conn := func() *nats.Conn {
		nc, err := srv.Connect()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	a := limits.New(limits.Config{Node: "a", Conn: conn(), Now: clock, Log: zerolog.Nop()})
	b := limits.New(limits.Config{Node: "b", Conn: conn(), Now: clock, Log: zerolog.Nop()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k := &domain.ProxyKey{ID: 1, Name: "k", Enabled: true, RPM: 600}
	keys := []*domain.ProxyKey{k}
	for _, l := range []*limits.Limiter{a, b} {
		l.Sync(1, keys)
		go l.Run(ctx) // its own rounds are an hour apart: the test steps by hand
	}
	time.Sleep(50 * time.Millisecond) // the subscriptions are in place

	// Node a sees three times node b's demand, every round.
	round := func(nodes ...*limits.Limiter) {
		for i, l := range nodes {
			demand := []int{30, 10}[i]
			admitted(l, k, now.Add(-time.Hour), demand) // counted as demand, not spent now
		}
		for _, l := range nodes {
			l.Step(ctx)
		}
		time.Sleep(20 * time.Millisecond) // the reports arrive
	}
	for range 6 {
		round(a, b)
	}
	// A full bucket of each share: a holds about 3/4 of 600, b about 1/4.
	later := now.Add(2 * time.Minute)
	na, nb := admitted(a, k, later, 1000), admitted(b, k, later, 1000)
	t.Logf("bursts after rebalancing: a %d, b %d", na, nb)
	if math.Abs(float64(na)-450) > 25 || math.Abs(float64(nb)-150) > 25 {
		t.Errorf("bursts a %d, b %d: want about 450 and 150", na, nb)
	}
	if total := na + nb; total < 570 || total > 630 {
		t.Errorf("the two nodes hold %d together, want about 600", total)
	}

	// b stops reporting: after its rounds are stale a owns the whole limit.
	for range 4 {
		round(a)
	}
	later = later.Add(2 * time.Minute)
	if n := admitted(a, k, later, 1000); n < 590 || n > 610 {
		t.Errorf("alone after b went silent, a holds %d, want 600", n)
	}
}

// TestAloneOwnsTheLimit: a node that hears nobody keeps the whole limit.
func TestAloneOwnsTheLimit(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	l := limits.New(limits.Config{Now: func() time.Time { return now }, Log: zerolog.Nop()})
	k := &domain.ProxyKey{ID: 7, Enabled: true, RPM: 60}
	l.Sync(1, []*domain.ProxyKey{k})
	if n := admitted(l, k, now, 100); n != 60 {
		t.Fatalf("burst %d, want 60", n)
	}
	l.Step(context.Background())
	if n := admitted(l, k, now.Add(30*time.Second), 100); n != 30 {
		t.Fatalf("after half a minute %d, want 30", n)
	}
}

// TestSharedLimitWithRoundsOutOfStep: three nodes whose rounds fall at different moments
// of each second (so each decides on the others' reports of its previous round) share a
// 60 RPM key under 200 requests a minute split 50/30/20: after the first minute's bursts,
// every minute admits 57 to 63.
func TestSharedLimitWithRoundsOutOfStep(t *testing.T) {
	t.Parallel()
	srv := eventstest.RunServer(t, "")
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k := &domain.ProxyKey{ID: 1, Name: "k", Enabled: true, RPM: 60}
	var nodes []*limits.Limiter
	for _, name := range []string{"a", "b", "c"} {
		nc, err := srv.Connect()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		l := limits.New(limits.Config{Node: name, Conn: nc, Now: clock, Interval: time.Hour, Log: zerolog.Nop()})
		l.Sync(1, []*domain.ProxyKey{k})
		go l.Run(ctx)
		nodes = append(nodes, l)
	}
	time.Sleep(50 * time.Millisecond) // the subscriptions are in place
	perMinute := make([]int, 4)
	start := now
	for i := range 2400 { // 100 ms steps: 4 minutes
		if i%3 == 0 { // a request every 300 ms: 200 a minute
			n := []int{0, 0, 0, 0, 0, 1, 1, 1, 2, 2}[(i/3)%10]
			if r, _ := nodes[n].Admit(k, now.UnixNano()); r == limits.Admitted {
				perMinute[int(now.Sub(start)/time.Minute)]++
			}
		}
		now = now.Add(100 * time.Millisecond)
		for j, l := range nodes {
			if (i+3*j)%10 == 0 { // node j's round, once a second, 300 ms after node j-1's
				l.Step(ctx)
				time.Sleep(2 * time.Millisecond) // its report arrives
			}
		}
	}
	t.Logf("admitted per minute %v", perMinute)
	for m, n := range perMinute[1:] {
		if n < 57 || n > 63 {
			t.Errorf("minute %d admitted %d, want 57..63", m+2, n)
		}
	}
}
