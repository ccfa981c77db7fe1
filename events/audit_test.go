package events_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/events/eventstest"
)

// appendFact appends one fact, guarded by its aggregate's current end (health facts are
// never guarded).
func appendFact(tb testing.TB, st *events.Store, f domain.Fact) {
	tb.Helper()
	ctx := context.Background()
	var expect uint64
	if agg := domain.AggregateOf(f); agg.Kind != domain.AggHealth {
		var err error
		if expect, err = st.LastSeq(ctx, agg); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := st.Append(ctx, events.ActorAdmin, expect, f); err != nil {
		tb.Fatalf("append %T: %v", f, err)
	}
}

// auditLog fills a log with a mix of every kind of event over several groups; health
// facts are the bulk, as in a real log. It returns every event in log order.
func auditLog(tb testing.TB, st *events.Store, health int) []events.Event {
	tb.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	appendFact(tb, st, domain.SettingsChanged{Settings: domain.DefaultSettings(), Changed: []string{}})
	for id := uint64(1); id <= 4; id++ {
		appendFact(tb, st, domain.GroupCreated{Group: group(id, fmt.Sprint("g", id))})
	}
	agg := group(5, "pool")
	agg.Type = domain.GroupAggregate
	appendFact(tb, st, domain.GroupCreated{Group: agg})
	appendFact(tb, st, domain.SubGroupsChanged{GroupID: 5, SubGroups: []domain.SubGroup{{GroupID: 1, Weight: 1}, {GroupID: 2, Weight: 3}}})
	cipher := events.NewCipherMust(tb, "")
	for i := 0; i < health; i++ {
		gid := uint64(1 + rng.IntN(4))
		switch {
		case i%97 == 0:
			g := group(gid, fmt.Sprint("g", gid))
			g.Sort = i
			appendFact(tb, st, domain.GroupUpdated{Group: g, Changed: []string{"sort"}})
		case i%89 == 0:
			appendFact(tb, st, domain.GroupsReordered{Items: []domain.GroupOrder{{GroupID: gid, Sort: i}}})
		case i%53 == 0:
			v := fmt.Sprint("sk-", i)
			appendFact(tb, st, domain.KeysAdded{GroupID: gid, Keys: []domain.NewKey{{Value: v, Hash: cipher.Hash(v)}}})
		case i%41 == 0:
			appendFact(tb, st, domain.KeyNoteChanged{GroupID: gid, KeyID: 1, Notes: "n"})
		default:
			if err := st.Publish(events.ActorProxy, domain.KeyFailed{GroupID: gid, KeyID: uint64(i), Kind: domain.FailureAuth, Status: 401}); err != nil {
				tb.Fatal(err)
			}
		}
	}
	fctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := st.Flush(fctx); err != nil {
		tb.Fatal(err)
	}
	all, err := st.Read(ctx, 1, 1<<30)
	if err != nil {
		tb.Fatal(err)
	}
	return all
}

// naiveAudit is the reference: filter the whole log, newest first.
func naiveAudit(all []events.Event, q events.AuditQuery) ([]uint64, int) {
	var match []uint64
	for i := len(all) - 1; i >= 0; i-- {
		ev := all[i]
		if len(q.Types) > 0 && !slices.Contains(q.Types, ev.Type) {
			continue
		}
		if q.GroupID != 0 && !slices.Contains(events.GroupsOf(ev.Fact), q.GroupID) {
			continue
		}
		match = append(match, ev.Meta.Seq)
	}
	total := len(match)
	if q.Offset >= len(match) {
		return nil, total
	}
	match = match[q.Offset:]
	if len(match) > q.Limit {
		match = match[:q.Limit]
	}
	return match, total
}

func TestAuditPageMatchesFullScan(t *testing.T) {
	t.Parallel()
	js := eventstest.RunServer(t, "").JetStream(t)
	st := openStore(t, js, events.StoreConfig{})
	all := auditLog(t, st, 3000)
	audit := events.NewAudit(st)
	ctx := context.Background()
	queries := []events.AuditQuery{
		{Limit: 15},
		{Limit: 15, Offset: 2990},
		{Limit: 1000, Offset: 100},
		{GroupID: 1, Limit: 15},
		{GroupID: 2, Limit: 50, Offset: 300},
		{GroupID: 5, Limit: 15},
		{GroupID: 99, Limit: 15},
		{Types: []string{"group.updated"}, Limit: 10},
		{Types: []string{"group.updated", "groups.reordered"}, GroupID: 3, Limit: 7, Offset: 3},
		{Types: []string{"keys.added", "key.note_changed"}, Limit: 20, Offset: 5},
		{Types: []string{"settings.changed"}, Limit: 5},
		{Types: []string{"settings.changed"}, GroupID: 1, Limit: 5},
		{Types: []string{"key.failed"}, GroupID: 4, Limit: 100, Offset: 600},
		{Types: []string{"group.subgroups_changed"}, GroupID: 2, Limit: 5},
		{Types: []string{"key.validated"}, Limit: 5},
	}
	for _, q := range queries {
		want, wantTotal := naiveAudit(all, q)
		page, err := audit.Page(ctx, q)
		if err != nil {
			t.Fatalf("%+v: %v", q, err)
		}
		var got []uint64
		for _, ev := range page.Events {
			got = append(got, ev.Meta.Seq)
		}
		if page.Total != wantTotal || !slices.Equal(got, want) {
			t.Errorf("%+v: total %d, want %d; seqs %v, want %v", q, page.Total, wantTotal, got, want)
		}
	}
	// The index of group events follows the log as it grows.
	appendFact(t, st, domain.GroupDeleted{GroupID: 3, Name: "g3"})
	page, err := audit.Page(ctx, events.AuditQuery{GroupID: 3, Types: []string{"group.deleted"}, Limit: 5})
	if err != nil || page.Total != 1 || len(page.Events) != 1 || page.Events[0].Type != "group.deleted" {
		t.Fatalf("after a new group event: %+v, %v", page, err)
	}
	if _, err := audit.Page(ctx, events.AuditQuery{Types: []string{"no.such"}, Limit: 1}); domain.ErrorCode(err) != domain.EINVALID {
		t.Fatalf("unknown type: %v", err)
	}
}

func TestAuditEmptyLog(t *testing.T) {
	t.Parallel()
	js := eventstest.RunServer(t, "").JetStream(t)
	st := openStore(t, js, events.StoreConfig{})
	page, err := events.NewAudit(st).Page(context.Background(), events.AuditQuery{GroupID: 1, Limit: 10})
	if err != nil || page.Total != 0 || len(page.Events) != 0 {
		t.Fatalf("%+v %v", page, err)
	}
}

// BenchmarkAuditPage is the time to answer one audit page on a log of 100,000 events,
// with the reader and with the naive full read of the log it replaces.
func BenchmarkAuditPage(b *testing.B) {
	js := eventstest.RunServer(b, "").JetStream(b)
	st, err := events.OpenStore(context.Background(), js, events.StoreConfig{Node: "n1"}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	all := auditLog(b, st, 100_000)
	audit := events.NewAudit(st)
	ctx := context.Background()
	for _, c := range []struct {
		name string
		q    events.AuditQuery
	}{
		{"newest", events.AuditQuery{Limit: 15}},
		{"group", events.AuditQuery{GroupID: 2, Limit: 15}},
		{"group-config-of-group", events.AuditQuery{GroupID: 2, Types: []string{"group.updated"}, Limit: 15}},
		{"rare-type", events.AuditQuery{Types: []string{"keys.added"}, Limit: 15}},
		{"page-100", events.AuditQuery{GroupID: 1, Limit: 15, Offset: 1485}},
	} {
		b.Run(c.name, func(b *testing.B) {
			t0 := time.Now()
			if _, err := audit.Page(ctx, c.q); err != nil { // builds the index of group events once
				b.Fatal(err)
			}
			b.Logf("first page: %v", time.Since(t0))
			for b.Loop() {
				if _, err := audit.Page(ctx, c.q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("naive-full-read", func(b *testing.B) {
		for b.Loop() {
			evs, err := st.Read(ctx, 1, len(all)+1)
			if err != nil {
				b.Fatal(err)
			}
			naiveAudit(evs, events.AuditQuery{GroupID: 2, Limit: 15})
		}
	})
}
