package domain_test

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"gpt-load/domain"
)

func TestAggregateOf(t *testing.T) {
	t.Parallel()
	settings := domain.Aggregate{Kind: domain.AggSettings}
	groups := domain.Aggregate{Kind: domain.AggGroups}
	keys := domain.Aggregate{Kind: domain.AggKeys, GroupID: 7}
	health := domain.Aggregate{Kind: domain.AggHealth, GroupID: 7}
	tests := []struct {
		fact domain.Fact
		want domain.Aggregate
	}{
		{domain.SettingsChanged{}, settings},
		{domain.GroupCreated{Group: domain.Group{ID: 7}}, groups},
		{domain.GroupUpdated{Group: domain.Group{ID: 7}}, groups},
		{domain.GroupDeleted{GroupID: 7}, groups},
		{domain.GroupsReordered{}, groups},
		{domain.SubGroupsChanged{GroupID: 7}, groups},
		{domain.GroupValidated{GroupID: 7}, health},
		{domain.KeysAdded{GroupID: 7}, keys},
		{domain.KeysRemoved{GroupID: 7}, keys},
		{domain.KeysCleared{GroupID: 7}, keys},
		{domain.KeysRestored{GroupID: 7}, keys},
		{domain.KeyNoteChanged{GroupID: 7}, keys},
		{domain.KeyFailed{GroupID: 7}, health},
		{domain.KeySucceeded{GroupID: 7}, health},
		{domain.KeyValidated{GroupID: 7}, health},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%T", tt.fact), func(t *testing.T) {
			t.Parallel()
			if got := domain.AggregateOf(tt.fact); got != tt.want {
				t.Fatalf("AggregateOf = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNewState(t *testing.T) {
	t.Parallel()
	s := domain.NewState(domain.DefaultSettings())
	if s.Seq != 0 || s.SettingsSeeded || s.NumGroups() != 0 || len(s.Groups()) != 0 {
		t.Fatalf("new state not empty: seq %d seeded %v groups %d", s.Seq, s.SettingsSeeded, s.NumGroups())
	}
	if s.Settings != domain.DefaultSettings() {
		t.Fatalf("settings = %+v", s.Settings)
	}
	for _, a := range []domain.Aggregate{{Kind: domain.AggSettings}, {Kind: domain.AggGroups}, {Kind: domain.AggKeys, GroupID: 1}, {Kind: domain.AggHealth, GroupID: 1}} {
		if v := s.Version(a); v != 0 {
			t.Errorf("Version(%+v) = %d", a, v)
		}
	}
	if _, ok := s.Key(1); ok {
		t.Error("Key(1) found in an empty state")
	}
	if s.Keys(1) != nil {
		t.Error("Keys(1) of an empty state is not nil")
	}
	if fact, err := domain.DecideCreateGroup(s, gin(t, stdBody("a", "openai"))); err != nil || fact.Group.ID != 1 {
		t.Fatalf("first group id = %d, %v", fact.Group.ID, err)
	}
}

func TestApplySettingsChanged(t *testing.T) {
	t.Parallel()
	f := newFold()
	next := domain.DefaultSettings()
	next.BlacklistThreshold = 9
	next.AppURL = "https://proxy.example.com"
	ch := f.apply(domain.SettingsChanged{Settings: next, Changed: []string{"app_url", "blacklist_threshold"}})
	if ch != (domain.Changes{Settings: true}) {
		t.Errorf("changes = %+v", ch)
	}
	if f.Settings != next || !f.SettingsSeeded || f.Seq != 1 {
		t.Fatalf("settings %+v seeded %v seq %d", f.Settings, f.SettingsSeeded, f.Seq)
	}
	// The whole settings are replaced, not merged.
	f.apply(domain.SettingsChanged{Settings: domain.DefaultSettings()})
	if f.Settings != domain.DefaultSettings() {
		t.Fatalf("settings not replaced: %+v", f.Settings)
	}
}

func TestApplyGroupCreated(t *testing.T) {
	t.Parallel()
	f := newFold()
	fact, err := domain.DecideCreateGroup(f.State, gin(t, stdBody("alpha", "openai")))
	if err != nil {
		t.Fatal(err)
	}
	if ch := f.apply(fact); ch != (domain.Changes{Groups: true}) {
		t.Errorf("changes = %+v", ch)
	}
	g, ok := f.Group(1)
	if !ok || g.Name != "alpha" {
		t.Fatalf("Group(1) = %+v, %v", g, ok)
	}
	if !g.CreatedAt.Equal(at(1)) || !g.UpdatedAt.Equal(at(1)) || !g.LastValidatedAt.IsZero() {
		t.Errorf("times: created %v updated %v validated %v", g.CreatedAt, g.UpdatedAt, g.LastValidatedAt)
	}
	if byName, ok := f.GroupByName("alpha"); !ok || byName != g {
		t.Errorf("GroupByName = %v, %v", byName, ok)
	}
	if ks := f.Keys(1); ks == nil || ks.Len() != 0 {
		t.Errorf("new group key set = %v", ks)
	}
	if f.NumGroups() != 1 {
		t.Errorf("NumGroups = %d", f.NumGroups())
	}
	nextID := func() uint64 {
		t.Helper()
		fact, err := domain.DecideCreateGroup(f.State, gin(t, stdBody("probe", "openai")))
		if err != nil {
			t.Fatal(err)
		}
		return fact.Group.ID
	}
	if id := nextID(); id != 2 {
		t.Errorf("next id = %d, want 2", id)
	}
	// A created group with a higher id moves the counter past it; a lower one does not move it back.
	f.apply(domain.GroupCreated{Group: domain.Group{ID: 10, Name: "ten", Type: domain.GroupStandard, ChannelType: domain.ChannelOpenAI}})
	if id := nextID(); id != 11 {
		t.Errorf("next id after id 10 = %d, want 11", id)
	}
	f.apply(domain.GroupCreated{Group: domain.Group{ID: 5, Name: "five", Type: domain.GroupStandard, ChannelType: domain.ChannelOpenAI}})
	if id := nextID(); id != 11 {
		t.Errorf("next id after id 5 = %d, want 11", id)
	}
	if f.NumGroups() != 3 {
		t.Errorf("NumGroups = %d", f.NumGroups())
	}
}

func TestApplyGroupUpdated(t *testing.T) {
	t.Parallel()
	f := newFold()
	g := f.create(t, stdBody("alpha", "openai"))    // 1
	agg := f.create(t, aggBody("agg", "openai"))    // 2
	f.link(agg.ID, g.ID)                            // 3
	f.apply(domain.GroupValidated{GroupID: g.ID})   // 4
	f.addKeys(g.ID, "k1", "k2")                     // 5
	f.apply(domain.GroupValidated{GroupID: agg.ID}) // 6
	up, err := domain.DecideUpdateGroup(f.State, g.ID, gin(t, `{"name":"beta","sort":7,"display_name":"Beta"}`))
	if err != nil {
		t.Fatal(err)
	}
	if ch := f.apply(up); ch != (domain.Changes{Groups: true}) { // 7
		t.Errorf("changes = %+v", ch)
	}
	now, _ := f.Group(g.ID)
	if now.Name != "beta" || now.Sort != 7 || now.DisplayName != "Beta" {
		t.Fatalf("updated group = %+v", now)
	}
	if !now.CreatedAt.Equal(at(1)) || !now.UpdatedAt.Equal(at(7)) || !now.LastValidatedAt.Equal(at(4)) {
		t.Errorf("times: created %v updated %v validated %v", now.CreatedAt, now.UpdatedAt, now.LastValidatedAt)
	}
	if g.Name != "alpha" || g.Sort != 0 || !g.UpdatedAt.Equal(at(1)) {
		t.Errorf("the group held before the update changed in place: %+v", g)
	}
	if _, ok := f.GroupByName("alpha"); ok {
		t.Error("old name still taken")
	}
	if byName, ok := f.GroupByName("beta"); !ok || byName.ID != g.ID {
		t.Errorf("GroupByName(beta) = %v, %v", byName, ok)
	}
	if f.Keys(g.ID).Len() != 2 {
		t.Errorf("keys lost: %d", f.Keys(g.ID).Len())
	}
	checkKeySet(t, f.State, g.ID)
	if parents := f.ParentsOf(g.ID); len(parents) != 1 || parents[0].GroupID != agg.ID {
		t.Errorf("ParentsOf = %v", parents)
	}
	// The freed name can be taken by a new group.
	if _, err := domain.DecideCreateGroup(f.State, gin(t, stdBody("alpha", "openai"))); err != nil {
		t.Errorf("old name not free: %v", err)
	}

	// A fact without sub-groups, times or validation keeps the state's.
	before, _ := f.Group(agg.ID)
	f.apply(domain.GroupUpdated{Group: domain.Group{ID: agg.ID, Name: "agg", Type: domain.GroupAggregate, ChannelType: domain.ChannelOpenAI, DisplayName: "A"}, Changed: []string{"display_name"}}) // 8
	after, _ := f.Group(agg.ID)
	if after.DisplayName != "A" || !reflect.DeepEqual(after.SubGroups, before.SubGroups) || len(after.SubGroups) != 1 {
		t.Errorf("aggregate after update = %+v", after)
	}
	if !after.CreatedAt.Equal(at(2)) || !after.UpdatedAt.Equal(at(8)) || !after.LastValidatedAt.Equal(at(6)) {
		t.Errorf("times: created %v updated %v validated %v", after.CreatedAt, after.UpdatedAt, after.LastValidatedAt)
	}

	// An update of a group that is gone changes nothing.
	n := f.NumGroups()
	if ch := f.apply(domain.GroupUpdated{Group: domain.Group{ID: 42, Name: "ghost"}}); ch != (domain.Changes{}) {
		t.Errorf("changes = %+v", ch)
	}
	if _, ok := f.GroupByName("ghost"); ok || f.NumGroups() != n {
		t.Error("update of a missing group created it")
	}
}

func TestApplyGroupDeleted(t *testing.T) {
	t.Parallel()
	f := newFold()
	a := f.create(t, stdBody("a", "openai"))
	b := f.create(t, stdBody("b", "openai"))
	c := f.create(t, stdBody("c", "openai"))
	agg1 := f.create(t, aggBody("agg1", "openai"))
	agg2 := f.create(t, aggBody("agg2", "openai"))
	f.apply(domain.SubGroupsChanged{GroupID: agg1.ID, SubGroups: []domain.SubGroup{{GroupID: a.ID, Weight: 1}, {GroupID: b.ID, Weight: 2}, {GroupID: c.ID, Weight: 3}}})
	f.link(agg2.ID, b.ID)
	f.addKeys(a.ID, "ka1", "ka2")
	f.addKeys(b.ID, "kb1", "kb2")
	kb1 := f.key(t, b.ID, "kb1")
	held, _ := f.Group(agg1.ID)

	if ch := f.apply(domain.GroupDeleted{GroupID: b.ID, Name: "b"}); ch != (domain.Changes{Groups: true, Keys: b.ID}) {
		t.Errorf("changes = %+v", ch)
	}
	if _, ok := f.Group(b.ID); ok {
		t.Error("group still there")
	}
	if _, ok := f.GroupByName("b"); ok {
		t.Error("name still taken")
	}
	if f.Keys(b.ID) != nil {
		t.Error("key set still there")
	}
	if _, ok := f.Key(kb1.ID); ok {
		t.Error("key of the deleted group still found by id")
	}
	g1, _ := f.Group(agg1.ID)
	if want := []domain.SubGroup{{GroupID: a.ID, Weight: 1}, {GroupID: c.ID, Weight: 3}}; !reflect.DeepEqual(g1.SubGroups, want) {
		t.Errorf("agg1 members = %v, want %v", g1.SubGroups, want)
	}
	if g2, _ := f.Group(agg2.ID); len(g2.SubGroups) != 0 {
		t.Errorf("agg2 members = %v", g2.SubGroups)
	}
	if len(held.SubGroups) != 3 {
		t.Errorf("aggregate held before the delete changed in place: %v", held.SubGroups)
	}
	if p := f.ParentsOf(b.ID); len(p) != 0 {
		t.Errorf("ParentsOf(deleted) = %v", p)
	}
	if f.Keys(a.ID).Len() != 2 || f.NumGroups() != 4 {
		t.Errorf("other groups touched: keys %d groups %d", f.Keys(a.ID).Len(), f.NumGroups())
	}
	checkKeySet(t, f.State, a.ID)

	// Keys added to the deleted group later are dropped.
	f.addKeys(b.ID, "kb3")
	if f.Keys(b.ID) != nil {
		t.Error("keys added to a deleted group")
	}
	// Its name is free again and its id is not reused.
	if again := f.create(t, stdBody("b", "openai")); again.ID == b.ID || f.Keys(again.ID).Len() != 0 {
		t.Errorf("recreated group id %d (old %d), keys %d", again.ID, b.ID, f.Keys(again.ID).Len())
	}

	// Deleting an aggregate leaves its members alone.
	f.apply(domain.GroupDeleted{GroupID: agg1.ID, Name: "agg1"})
	if _, ok := f.Group(a.ID); !ok || len(f.ParentsOf(a.ID)) != 0 || f.Keys(a.ID).Len() != 2 {
		t.Error("member of a deleted aggregate changed")
	}
	// A group that is gone: nothing.
	n := f.NumGroups()
	if ch := f.apply(domain.GroupDeleted{GroupID: 99}); ch != (domain.Changes{}) || f.NumGroups() != n {
		t.Errorf("delete of a missing group: changes %+v, groups %d", ch, f.NumGroups())
	}
}

func TestApplyGroupsReordered(t *testing.T) {
	t.Parallel()
	f := newFold()
	a := f.create(t, stdBody("a", "openai"))                                                                                                      // 1
	b := f.create(t, stdBody("b", "openai"))                                                                                                      // 2
	c := f.create(t, stdBody("c", "openai"))                                                                                                      // 3
	ch := f.apply(domain.GroupsReordered{Items: []domain.GroupOrder{{GroupID: a.ID, Sort: 5}, {GroupID: b.ID, Sort: 0}, {GroupID: 99, Sort: 1}}}) // 4
	if ch != (domain.Changes{Groups: true}) {
		t.Errorf("changes = %+v", ch)
	}
	na, _ := f.Group(a.ID)
	nb, _ := f.Group(b.ID)
	if na.Sort != 5 || !na.UpdatedAt.Equal(at(4)) || a.Sort != 0 {
		t.Errorf("a: sort %d updated %v (held sort %d)", na.Sort, na.UpdatedAt, a.Sort)
	}
	if nb != b || !nb.UpdatedAt.Equal(at(2)) {
		t.Errorf("b with an unchanged sort was replaced or touched: %+v", nb)
	}
	if _, ok := f.Group(99); ok {
		t.Error("reorder created a group")
	}
	var order []string
	for _, g := range f.Groups() {
		order = append(order, g.Name)
	}
	if want := []string{"c", "b", "a"}; !slices.Equal(order, want) {
		t.Errorf("Groups() order = %v, want %v (sort asc, id desc)", order, want)
	}
	f.apply(domain.GroupsReordered{Items: []domain.GroupOrder{{GroupID: c.ID, Sort: -1}, {GroupID: b.ID, Sort: 5}}})
	order = order[:0]
	for _, g := range f.Groups() {
		order = append(order, g.Name)
	}
	if want := []string{"c", "b", "a"}; !slices.Equal(order, want) {
		t.Errorf("Groups() order = %v, want %v", order, want)
	}
}

func TestApplySubGroupsChanged(t *testing.T) {
	t.Parallel()
	f := newFold()
	agg := f.create(t, aggBody("agg", "openai"))
	m1 := f.create(t, stdBody("m1", "openai"))
	m2 := f.create(t, stdBody("m2", "openai"))
	subs := []domain.SubGroup{{GroupID: m1.ID, Weight: 3}, {GroupID: m2.ID, Weight: 0}}
	if ch := f.apply(domain.SubGroupsChanged{GroupID: agg.ID, SubGroups: subs}); ch != (domain.Changes{Groups: true}) {
		t.Errorf("changes = %+v", ch)
	}
	subs[0].Weight = 99 // the state holds its own copy
	g, _ := f.Group(agg.ID)
	if want := []domain.SubGroup{{GroupID: m1.ID, Weight: 3}, {GroupID: m2.ID, Weight: 0}}; !reflect.DeepEqual(g.SubGroups, want) {
		t.Errorf("members = %v, want %v", g.SubGroups, want)
	}
	if !g.UpdatedAt.Equal(at(f.seq)) || !g.CreatedAt.Equal(at(1)) || len(agg.SubGroups) != 0 {
		t.Errorf("updated %v created %v held %v", g.UpdatedAt, g.CreatedAt, agg.SubGroups)
	}
	if p := f.ParentsOf(m2.ID); !reflect.DeepEqual(p, []domain.SubGroup{{GroupID: agg.ID, Weight: 0}}) {
		t.Errorf("ParentsOf(m2) = %v", p)
	}
	f.apply(domain.SubGroupsChanged{GroupID: agg.ID})
	if g, _ := f.Group(agg.ID); len(g.SubGroups) != 0 {
		t.Errorf("members after emptying = %v", g.SubGroups)
	}
	if ch := f.apply(domain.SubGroupsChanged{GroupID: 99, SubGroups: subs}); ch != (domain.Changes{}) {
		t.Errorf("changes for a missing group = %+v", ch)
	}
	if _, ok := f.Group(99); ok {
		t.Error("sub-groups of a missing group created it")
	}
}

func TestApplyGroupValidated(t *testing.T) {
	t.Parallel()
	f := newFold()
	g := f.create(t, stdBody("a", "openai"))                                                       // 1
	if ch := f.apply(domain.GroupValidated{GroupID: g.ID}); ch != (domain.Changes{Groups: true}) { // 2
		t.Errorf("changes = %+v", ch)
	}
	now, _ := f.Group(g.ID)
	if !now.LastValidatedAt.Equal(at(2)) || !now.UpdatedAt.Equal(at(1)) || !g.LastValidatedAt.IsZero() {
		t.Errorf("validated %v updated %v (held %v)", now.LastValidatedAt, now.UpdatedAt, g.LastValidatedAt)
	}
	f.apply(domain.GroupValidated{GroupID: g.ID}) // 3
	if now, _ := f.Group(g.ID); !now.LastValidatedAt.Equal(at(3)) {
		t.Errorf("second validation at %v", now.LastValidatedAt)
	}
	if ch := f.apply(domain.GroupValidated{GroupID: 99}); ch != (domain.Changes{}) {
		t.Errorf("changes for a missing group = %+v", ch)
	}
}

func TestApplyKeysAddedIDs(t *testing.T) {
	t.Parallel()
	f := newFold()
	a := f.create(t, stdBody("a", "openai"))
	b := f.create(t, stdBody("b", "openai"))
	type added struct {
		group uint64
		keys  []string
	}
	steps := []added{
		{a.ID, []string{"a1", "a2", "a3"}},             // ids 1-3
		{b.ID, []string{"b1", "a1"}},                   // 4-5: the same key may sit in another group
		{99, []string{"x1", "x2"}},                     // 6-7 used up, keys dropped
		{a.ID, []string{"a4", "a1", "a4", "a5"}},       // 8, (9 dup in group), (10 dup in batch), 11
		{a.ID, nil},                                    // nothing
		{b.ID, []string{"b2"}},                         // 12
		{b.ID, []string{"b3", "b3", "b3", "b4", "b2"}}, // 13, (14, 15), 16, (17)
	}
	for _, st := range steps {
		ch := f.apply(domain.KeysAdded{GroupID: st.group, Keys: newKeys(st.keys...)})
		if st.group == 99 || len(st.keys) == 0 {
			if ch != (domain.Changes{}) {
				t.Errorf("changes = %+v", ch)
			}
		} else if ch != (domain.Changes{Keys: st.group}) {
			t.Errorf("changes = %+v", ch)
		}
	}
	want := map[uint64]struct {
		group uint64
		value string
		seq   uint64
	}{
		1: {a.ID, "a1", 3}, 2: {a.ID, "a2", 3}, 3: {a.ID, "a3", 3},
		4: {b.ID, "b1", 4}, 5: {b.ID, "a1", 4},
		8: {a.ID, "a4", 6}, 11: {a.ID, "a5", 6},
		12: {b.ID, "b2", 8},
		13: {b.ID, "b3", 9}, 16: {b.ID, "b4", 9},
	}
	for id := uint64(0); id <= 20; id++ {
		k, ok := f.Key(id)
		w, exists := want[id]
		if ok != exists {
			t.Errorf("Key(%d) found = %v, want %v", id, ok, exists)
			continue
		}
		if !ok {
			continue
		}
		if k.GroupID != w.group || k.Value != w.value || k.Hash != hashOf(w.value) {
			t.Errorf("Key(%d) = group %d value %q, want %d %q", id, k.GroupID, k.Value, w.group, w.value)
		}
		if k.Status != domain.KeyActive || k.FailureCount != 0 || k.CooldownUntil != 0 || k.Notes != "" || k.LastError != "" {
			t.Errorf("Key(%d) is not a fresh key: %+v", id, k)
		}
		if ts := at(w.seq).UnixNano(); k.CreatedAt != ts || k.UpdatedAt != ts {
			t.Errorf("Key(%d) times %d/%d, want %d", id, k.CreatedAt, k.UpdatedAt, ts)
		}
	}
	if got := keyIDs(f.Keys(a.ID)); !slices.Equal(got, []uint64{1, 2, 3, 8, 11}) {
		t.Errorf("group a ids = %v", got)
	}
	if got := keyIDs(f.Keys(b.ID)); !slices.Equal(got, []uint64{4, 5, 12, 13, 16}) {
		t.Errorf("group b ids = %v", got)
	}
	// The key already in the group keeps its id and its data.
	if k := f.key(t, a.ID, "a1"); k.ID != 1 {
		t.Errorf("a1 id = %d", k.ID)
	}
	if _, ok := f.Keys(a.ID).ByHash(hashOf("x1")); ok {
		t.Error("key of a missing group landed in another group")
	}
	checkKeySet(t, f.State, a.ID)
	checkKeySet(t, f.State, b.ID)
	// The next key gets id 18.
	f.addKeys(a.ID, "a6")
	if k := f.key(t, a.ID, "a6"); k.ID != 18 {
		t.Errorf("next id = %d, want 18", k.ID)
	}
}

func TestApplyKeysRemoved(t *testing.T) {
	t.Parallel()
	f := newFold()
	a := f.create(t, stdBody("a", "openai"))
	b := f.create(t, stdBody("b", "openai"))
	f.addKeys(a.ID, "a1", "a2", "a3", "a4", "a5") // 1-5
	f.addKeys(b.ID, "b1", "b2")                   // 6-7
	ch := f.apply(domain.KeysRemoved{GroupID: a.ID, KeyIDs: []uint64{2, 4, 6, 42, 2}})
	if ch != (domain.Changes{Keys: a.ID}) {
		t.Errorf("changes = %+v", ch)
	}
	if got := keyIDs(f.Keys(a.ID)); !slices.Equal(got, []uint64{1, 3, 5}) {
		t.Errorf("a ids = %v", got)
	}
	if got := keyIDs(f.Keys(b.ID)); !slices.Equal(got, []uint64{6, 7}) {
		t.Errorf("b ids = %v: a removal in a touched b", got)
	}
	for _, v := range []string{"a2", "a4"} {
		if _, ok := f.Keys(a.ID).ByHash(hashOf(v)); ok {
			t.Errorf("%s still found by hash", v)
		}
	}
	for _, id := range []uint64{2, 4} {
		if _, ok := f.Key(id); ok {
			t.Errorf("Key(%d) still found", id)
		}
		if _, ok := f.Keys(a.ID).ByID(id); ok {
			t.Errorf("ByID(%d) still found", id)
		}
	}
	checkKeySet(t, f.State, a.ID)
	checkKeySet(t, f.State, b.ID)
	// A removed key can come back, with a new id.
	f.addKeys(a.ID, "a2")
	if k := f.key(t, a.ID, "a2"); k.ID != 8 {
		t.Errorf("re-added a2 id = %d, want 8", k.ID)
	}
	checkKeySet(t, f.State, a.ID)
	if ch := f.apply(domain.KeysRemoved{GroupID: 99, KeyIDs: []uint64{1}}); ch != (domain.Changes{}) {
		t.Errorf("changes for a missing group = %+v", ch)
	}
	if _, ok := f.Key(1); !ok {
		t.Error("removal for a missing group removed a key")
	}
}

// healthFold is a fold with a group "a" (id 1) whose blacklist threshold is 1 and another
// group "b" (id 2) with the default threshold.
func healthFold(t *testing.T) *fold {
	t.Helper()
	f := newFold()
	f.create(t, `{"name":"a","channel_type":"openai","test_model":"m","upstreams":[{"url":"https://u.example.com","weight":1}],"config":{"blacklist_threshold":1}}`)
	f.create(t, stdBody("b", "openai"))
	return f
}

func TestApplyKeysCleared(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		group     uint64
		scope     domain.KeyScope
		wantA     []string
		wantB     int
		wantCh    domain.Changes
		wantCount [3]int // len, active, invalid of group a
	}{
		{"all", 1, domain.ScopeAll, nil, 3, domain.Changes{Keys: 1}, [3]int{0, 0, 0}},
		{"invalid", 1, domain.ScopeInvalid, []string{"a1", "a3", "a5"}, 3, domain.Changes{Keys: 1}, [3]int{3, 3, 0}},
		{"invalid of the other group", 2, domain.ScopeInvalid, []string{"a1", "a2", "a3", "a4", "a5"}, 2, domain.Changes{Keys: 2}, [3]int{5, 3, 2}},
		{"missing group", 99, domain.ScopeAll, []string{"a1", "a2", "a3", "a4", "a5"}, 3, domain.Changes{}, [3]int{5, 3, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := healthFold(t)
			f.addKeys(1, "a1", "a2", "a3", "a4", "a5")
			f.addKeys(2, "b1", "b2", "b3")
			f.fail(t, 1, "a2")
			f.fail(t, 1, "a4")
			for range 3 {
				f.fail(t, 2, "b2") // threshold 3
			}
			if ch := f.apply(domain.KeysCleared{GroupID: tt.group, Scope: tt.scope}); ch != tt.wantCh {
				t.Errorf("changes = %+v", ch)
			}
			var got []string
			f.Keys(1).Each(func(k *domain.Key) bool { got = append(got, k.Value); return true })
			if !slices.Equal(got, tt.wantA) {
				t.Errorf("group a keys = %v, want %v", got, tt.wantA)
			}
			ks := f.Keys(1)
			if c := [3]int{ks.Len(), ks.Active(), ks.Invalid()}; c != tt.wantCount {
				t.Errorf("group a counts = %v, want %v", c, tt.wantCount)
			}
			if n := f.Keys(2).Len(); n != tt.wantB {
				t.Errorf("group b has %d keys, want %d", n, tt.wantB)
			}
			checkKeySet(t, f.State, 1)
			checkKeySet(t, f.State, 2)
			// The group takes keys again, with fresh ids, cleared ones included.
			f.addKeys(1, "a2", "a9")
			if k := f.key(t, 1, "a9"); k.ID != 10 {
				t.Errorf("next id = %d, want 10", k.ID)
			}
			checkKeySet(t, f.State, 1)
		})
	}
}

func TestApplyKeysRestored(t *testing.T) {
	t.Parallel()
	type want struct {
		status domain.KeyStatus
		count  uint32
	}
	tests := []struct {
		name string
		fact domain.KeysRestored
		want map[string]want // by key of group a; restored ones are checked in full
		b3   domain.KeyStatus
	}{
		{
			name: "listed",
			fact: domain.KeysRestored{GroupID: 1, KeyIDs: []uint64{1, 3, 999, 1}},
			want: map[string]want{"a1": {domain.KeyActive, 0}, "a2": {domain.KeyInvalid, 2}, "a3": {domain.KeyActive, 1}, "a4": {domain.KeyActive, 0}},
			b3:   domain.KeyInvalid,
		},
		{
			name: "all invalid",
			fact: domain.KeysRestored{GroupID: 1, AllInvalid: true},
			want: map[string]want{"a1": {domain.KeyActive, 0}, "a2": {domain.KeyActive, 0}, "a3": {domain.KeyActive, 1}, "a4": {domain.KeyActive, 0}},
			b3:   domain.KeyInvalid,
		},
		{
			name: "listed key of another group",
			fact: domain.KeysRestored{GroupID: 1, KeyIDs: []uint64{7}},
			want: map[string]want{"a1": {domain.KeyInvalid, 2}, "a2": {domain.KeyInvalid, 2}, "a3": {domain.KeyActive, 1}, "a4": {domain.KeyActive, 0}},
			b3:   domain.KeyInvalid,
		},
		{
			name: "missing group",
			fact: domain.KeysRestored{GroupID: 99, AllInvalid: true, KeyIDs: []uint64{1, 2}},
			want: map[string]want{"a1": {domain.KeyInvalid, 2}, "a2": {domain.KeyInvalid, 2}, "a3": {domain.KeyActive, 1}, "a4": {domain.KeyActive, 0}},
			b3:   domain.KeyInvalid,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFold()
			f.create(t, `{"name":"a","channel_type":"openai","test_model":"m","upstreams":[{"url":"https://u.example.com","weight":1}],"config":{"blacklist_threshold":2}}`)
			f.create(t, `{"name":"b","channel_type":"openai","test_model":"m","upstreams":[{"url":"https://u.example.com","weight":1}],"config":{"blacklist_threshold":1}}`)
			f.addKeys(1, "a1", "a2", "a3", "a4") // 1-4
			f.addKeys(2, "b1", "b2", "b3")       // 5-7
			f.apply(domain.KeyFailed{GroupID: 1, KeyID: 1, Kind: domain.FailureRateLimit, Message: "slow down", RetryUntil: at(1000)})
			f.fail(t, 1, "a1")
			f.fail(t, 1, "a1")
			f.fail(t, 1, "a2")
			f.fail(t, 1, "a2")
			f.fail(t, 1, "a3")
			f.fail(t, 2, "b3")
			a3 := f.key(t, 1, "a3")
			if k := f.key(t, 1, "a1"); k.Status != domain.KeyInvalid || k.CooldownUntil == 0 || k.LastError == "" {
				t.Fatalf("setup: a1 = %+v", k)
			}
			ch := f.apply(tt.fact)
			if wantCh := (domain.Changes{Keys: tt.fact.GroupID}); tt.fact.GroupID != 99 && ch != wantCh {
				t.Errorf("changes = %+v", ch)
			}
			for v, w := range tt.want {
				k := f.key(t, 1, v)
				if k.Status != w.status || k.FailureCount != w.count {
					t.Errorf("%s: status %v count %d, want %v %d", v, k.Status, k.FailureCount, w.status, w.count)
				}
			}
			for _, v := range []string{"a1", "a2"} {
				if k := f.key(t, 1, v); k.Status == domain.KeyActive {
					if k.CooldownUntil != 0 || k.LastError != "" || k.UpdatedAt != at(f.seq).UnixNano() {
						t.Errorf("restored %s not cleared: %+v", v, k)
					}
				}
			}
			if k := f.key(t, 1, "a3"); k != a3 {
				t.Errorf("active a3 touched by the restore: %+v, was %+v", k, a3)
			}
			if k := f.key(t, 2, "b3"); k.Status != tt.b3 {
				t.Errorf("b3 status %v", k.Status)
			}
			checkKeySet(t, f.State, 1)
			checkKeySet(t, f.State, 2)
		})
	}
}

func TestApplyKeyNoteChanged(t *testing.T) {
	t.Parallel()
	f := newFold()
	f.create(t, stdBody("a", "openai"))
	f.create(t, stdBody("b", "openai"))
	f.addKeys(1, "a1") // 1
	f.addKeys(2, "b1") // 2
	if ch := f.apply(domain.KeyNoteChanged{GroupID: 1, KeyID: 1, Notes: "primary"}); ch != (domain.Changes{Keys: 1}) {
		t.Errorf("changes = %+v", ch)
	}
	if k := f.key(t, 1, "a1"); k.Notes != "primary" || k.UpdatedAt != at(f.seq).UnixNano() {
		t.Errorf("a1 = %+v", k)
	}
	b1 := f.key(t, 2, "b1")
	for _, fact := range []domain.KeyNoteChanged{{GroupID: 1, KeyID: 2, Notes: "x"}, {GroupID: 1, KeyID: 9, Notes: "x"}, {GroupID: 9, KeyID: 1, Notes: "x"}} {
		if ch := f.apply(fact); ch != (domain.Changes{}) {
			t.Errorf("%+v: changes = %+v", fact, ch)
		}
	}
	if k := f.key(t, 2, "b1"); k != b1 {
		t.Errorf("b1 changed by a note addressed to another group: %+v", k)
	}
	if k := f.key(t, 1, "a1"); k.Notes != "primary" {
		t.Errorf("a1 notes = %q", k.Notes)
	}
	f.apply(domain.KeyNoteChanged{GroupID: 1, KeyID: 1})
	if k := f.key(t, 1, "a1"); k.Notes != "" {
		t.Errorf("notes not cleared: %q", k.Notes)
	}
}

func TestKeyLookups(t *testing.T) {
	t.Parallel()
	f := newFold()
	f.create(t, stdBody("a", "openai"))
	f.create(t, stdBody("b", "openai"))
	f.create(t, aggBody("agg", "openai"))
	f.addKeys(1, "k1", "k2")              // 1-2
	f.addKeys(2, "k1", "k3")              // 3-4
	f.addKeys(99, "lost")                 // 5
	f.addKeys(1, "k4")                    // 6
	f.apply(domain.KeysAdded{GroupID: 2}) // nothing
	f.addKeys(2, "k5")                    // 7
	tests := []struct {
		id    uint64
		group uint64
		value string
	}{
		{0, 0, ""}, {1, 1, "k1"}, {2, 1, "k2"}, {3, 2, "k1"}, {4, 2, "k3"}, {5, 0, ""}, {6, 1, "k4"}, {7, 2, "k5"}, {8, 0, ""}, {1 << 40, 0, ""},
	}
	for _, tt := range tests {
		k, ok := f.Key(tt.id)
		if ok != (tt.group != 0) {
			t.Errorf("Key(%d) found = %v", tt.id, ok)
			continue
		}
		if ok && (k.GroupID != tt.group || k.Value != tt.value || k.ID != tt.id) {
			t.Errorf("Key(%d) = %+v", tt.id, k)
		}
		if ok {
			if byID, _ := f.Keys(tt.group).ByID(tt.id); byID != k {
				t.Errorf("Keys(%d).ByID(%d) is not the key State.Key gives", tt.group, tt.id)
			}
		}
	}
	if k, ok := f.Keys(1).ByHash(hashOf("k1")); !ok || k.ID != 1 {
		t.Errorf("a ByHash(k1) = %v, %v", k, ok)
	}
	if k, ok := f.Keys(2).ByHash(hashOf("k1")); !ok || k.ID != 3 {
		t.Errorf("b ByHash(k1) = %v, %v", k, ok)
	}
	if _, ok := f.Keys(1).ByHash(hashOf("k3")); ok {
		t.Error("a ByHash(k3) found a key of b")
	}
	if _, ok := f.Keys(1).ByID(3); ok {
		t.Error("a ByID(3) found a key of b")
	}
	if ks := f.Keys(3); ks == nil || ks.Len() != 0 {
		t.Errorf("aggregate key set = %v", ks)
	}
	// Each and EachDesc stop when told to.
	var seen []uint64
	f.Keys(1).Each(func(k *domain.Key) bool { seen = append(seen, k.ID); return false })
	f.Keys(1).EachDesc(func(k *domain.Key) bool { seen = append(seen, k.ID); return false })
	if !slices.Equal(seen, []uint64{1, 6}) {
		t.Errorf("early stop saw %v", seen)
	}
}

// collidingHash is a hash whose first 8 bytes are shared by every colliding hash, told apart
// by n.
func collidingHash(n byte) domain.KeyHash {
	var h domain.KeyHash
	copy(h[:8], "prefix!!")
	h[31] = n
	return h
}

func TestKeySetCompaction(t *testing.T) {
	t.Parallel()
	const (
		big   = 4000 // keys of group x, in 4 facts
		small = 1000 // keys of group y, interleaved with x's
	)
	type plan struct {
		name   string
		events [][]int // per KeysRemoved fact, positions (0..big-1 in add order) of x's keys
	}
	positions := func(keep func(i int) bool) []int {
		var out []int
		for i := range big {
			if keep(i) {
				out = append(out, i)
			}
		}
		return out
	}
	oneByOne := func(n int) [][]int {
		var out [][]int
		for i := range n {
			out = append(out, []int{(i * 7) % big})
		}
		return out
	}
	plans := []plan{
		{"every other key", [][]int{positions(func(i int) bool { return i%2 == 0 })}},
		{"first third", [][]int{positions(func(i int) bool { return i < big/3 })}},
		{"just under a quarter", [][]int{positions(func(i int) bool { return i < big/4-1 })}},
		{"exactly a quarter", [][]int{positions(func(i int) bool { return i >= big-big/4 })}},
		{"a quarter in two steps", [][]int{positions(func(i int) bool { return i%8 == 0 }), positions(func(i int) bool { return i%8 == 4 })}},
		{"all but one", [][]int{positions(func(i int) bool { return i != 1234 })}},
		{"all", [][]int{positions(func(int) bool { return true })}},
		{"one by one", oneByOne(1500)},
		{"colliding prefixes", [][]int{{0}, positions(func(i int) bool { return i%3 == 1 })}},
	}
	for _, p := range plans {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			f := newFold()
			x := f.create(t, `{"name":"x","channel_type":"openai","test_model":"m","upstreams":[{"url":"https://u.example.com","weight":1}],"config":{"blacklist_threshold":1}}`)
			y := f.create(t, stdBody("y", "openai"))
			xKeys := make([]domain.NewKey, big)
			for i := range xKeys {
				v := fmt.Sprintf("x-%05d", i)
				xKeys[i] = domain.NewKey{Value: v, Hash: hashOf(v)}
			}
			// Keys 0, 1000, 2000, 3000 of x share the first bytes of their hashes.
			for i := 0; i < big; i += 1000 {
				xKeys[i].Hash = collidingHash(byte(i / 1000))
			}
			var yAll []string
			for c := range 4 {
				f.apply(domain.KeysAdded{GroupID: x.ID, Keys: xKeys[c*1000 : (c+1)*1000]})
				var ys []string
				for j := range small / 4 {
					ys = append(ys, fmt.Sprintf("y-%d-%d", c, j))
				}
				f.addKeys(y.ID, ys...)
				yAll = append(yAll, ys...)
			}
			ids := make([]uint64, big)
			for i, nk := range xKeys {
				k, ok := f.Keys(x.ID).ByHash(nk.Hash)
				if !ok {
					t.Fatalf("x key %d not found", i)
				}
				ids[i] = k.ID
			}
			// Some keys of x are invalid and carry notes, so removals must keep the counters.
			for i := 5; i < big; i += 10 {
				f.apply(domain.KeyFailed{GroupID: x.ID, KeyID: ids[i], Kind: domain.FailureAuth, Message: "401"})
				f.apply(domain.KeyNoteChanged{GroupID: x.ID, KeyID: ids[i], Notes: fmt.Sprint("note ", i)})
			}
			checkKeySet(t, f.State, x.ID)
			removed := map[int]bool{}
			fresh := map[int]bool{} // removed, then added again
			for n, ev := range p.events {
				var kids []uint64
				for _, i := range ev {
					kids = append(kids, ids[i])
					removed[i] = true
				}
				f.apply(domain.KeysRemoved{GroupID: x.ID, KeyIDs: kids})
				if n%100 == 0 || n == len(p.events)-1 {
					checkKeySet(t, f.State, x.ID)
				}
			}
			check := func() {
				t.Helper()
				ks := f.Keys(x.ID)
				live, invalid := 0, 0
				for i, nk := range xKeys {
					k, byHash := ks.ByHash(nk.Hash)
					_, byID := ks.ByID(ids[i])
					sk, inState := f.Key(ids[i])
					if removed[i] {
						if byHash || byID || inState {
							t.Fatalf("removed key %d found: hash %v id %v state %v", i, byHash, byID, inState)
						}
						continue
					}
					live++
					if !byHash || !byID || !inState || k.ID != ids[i] || sk != k || k.Value != nk.Value {
						t.Fatalf("key %d: hash %v id %v state %v, %+v", i, byHash, byID, inState, k)
					}
					wantInvalid := i%10 == 5 && !fresh[i]
					if (k.Status == domain.KeyInvalid) != wantInvalid || wantInvalid && k.Notes != fmt.Sprint("note ", i) {
						t.Fatalf("key %d: status %v notes %q", i, k.Status, k.Notes)
					}
					if wantInvalid {
						invalid++
					}
				}
				if ks.Len() != live || ks.Invalid() != invalid || ks.Active() != live-invalid {
					t.Fatalf("counts %d/%d/%d, want %d/%d/%d", ks.Len(), ks.Active(), ks.Invalid(), live, live-invalid, invalid)
				}
				for _, v := range yAll {
					if k, ok := f.Keys(y.ID).ByHash(hashOf(v)); !ok || k.Value != v {
						t.Fatalf("y key %s lost", v)
					}
				}
				checkKeySet(t, f.State, x.ID)
				checkKeySet(t, f.State, y.ID)
			}
			check()

			// Health and restore still address the right keys after compaction.
			for i := 0; i < big; i += 10 {
				if !removed[i] {
					f.apply(domain.KeyFailed{GroupID: x.ID, KeyID: ids[i], Kind: domain.FailureAuth, Message: "401"})
				}
			}
			for i := 0; i < big; i += 10 {
				if !removed[i] {
					if k, _ := f.Key(ids[i]); k.Status != domain.KeyInvalid {
						t.Fatalf("key %d not blacklisted", i)
					}
				}
			}
			f.apply(domain.KeysRestored{GroupID: x.ID, KeyIDs: ids})
			// The restore took the i%10 == 5 keys back too: blacklist them again.
			for i := 5; i < big; i += 10 {
				if !removed[i] {
					f.apply(domain.KeyFailed{GroupID: x.ID, KeyID: ids[i], Kind: domain.FailureAuth, Message: "401"})
				}
			}
			check()

			// Removed keys come back with new ids; the colliding ones too.
			var back []domain.NewKey
			for i, nk := range xKeys {
				if removed[i] {
					back = append(back, nk)
				}
			}
			for len(back) > 0 {
				n := min(len(back), domain.MaxKeysPerEvent)
				f.apply(domain.KeysAdded{GroupID: x.ID, Keys: back[:n]})
				back = back[n:]
			}
			for i, nk := range xKeys {
				if removed[i] {
					k, ok := f.Keys(x.ID).ByHash(nk.Hash)
					if !ok || k.ID <= ids[big-1] || k.Value != nk.Value {
						t.Fatalf("re-added key %d: %+v, %v", i, k, ok)
					}
					ids[i] = k.ID
					delete(removed, i)
					fresh[i] = true
				}
			}
			check()
		})
	}
}

func TestKeySetHashPrefixCollisions(t *testing.T) {
	t.Parallel()
	f := newFold()
	g := f.create(t, stdBody("a", "openai"))
	nk := func(n byte) domain.NewKey { return domain.NewKey{Value: fmt.Sprint("c", n), Hash: collidingHash(n)} }
	f.apply(domain.KeysAdded{GroupID: g.ID, Keys: []domain.NewKey{nk(1), nk(2), nk(3)}}) // 1-3
	f.addKeys(g.ID, "p1", "p2")                                                          // 4-5
	found := func(want ...byte) {
		t.Helper()
		for n := byte(1); n <= 6; n++ {
			k, ok := f.Keys(g.ID).ByHash(collidingHash(n))
			if ok != slices.Contains(want, n) {
				t.Fatalf("c%d found = %v, want %v", n, ok, !ok)
			}
			if ok && k.Value != fmt.Sprint("c", n) {
				t.Fatalf("c%d lookup gave %q", n, k.Value)
			}
		}
		checkKeySet(t, f.State, g.ID)
	}
	found(1, 2, 3)
	// A colliding hash of a batch is not a duplicate.
	if _, rep, _ := domain.DecideAddKeys(f.State, g.ID, []domain.NewKey{nk(1), nk(4)}); rep.Added != 1 {
		t.Errorf("DecideAddKeys added %d, want 1", rep.Added)
	}
	f.apply(domain.KeysRemoved{GroupID: g.ID, KeyIDs: []uint64{1}})
	found(2, 3)
	f.apply(domain.KeysAdded{GroupID: g.ID, Keys: []domain.NewKey{nk(4), nk(1)}}) // 6-7
	found(1, 2, 3, 4)
	f.apply(domain.KeysRemoved{GroupID: g.ID, KeyIDs: []uint64{3}})
	found(1, 2, 4)
	f.apply(domain.KeysRemoved{GroupID: g.ID, KeyIDs: []uint64{4, 5}}) // compacts
	found(1, 2, 4)
	f.apply(domain.KeysAdded{GroupID: g.ID, Keys: []domain.NewKey{nk(5), nk(6), nk(3)}})
	found(1, 2, 3, 4, 5, 6)
	f.apply(domain.KeysCleared{GroupID: g.ID, Scope: domain.ScopeAll})
	found()
	f.apply(domain.KeysAdded{GroupID: g.ID, Keys: []domain.NewKey{nk(2), nk(3)}})
	found(2, 3)
}

func TestKeyHealthThreshold(t *testing.T) {
	t.Parallel()
	// Steps: F auth failure, R rate limit, S success, V valid validation, X invalid
	// validation, U upstream failure, C client failure, N not a failure.
	// Want: per step, a (active) or i (invalid), and the failure count after it.
	tests := []struct {
		name   string
		system int
		config string
		steps  string
		status string
		counts []uint32
	}{
		{"threshold 3", 3, "", "FFF", "aai", []uint32{1, 2, 3}},
		{"threshold 1", 1, "", "F", "i", []uint32{1}},
		{"threshold 0 never blacklists", 0, "", "FFFFFFFFFF", "aaaaaaaaaa", []uint32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"group threshold below the system's", 5, `{"blacklist_threshold":2}`, "FF", "ai", []uint32{1, 2}},
		{"group threshold above the system's", 1, `{"blacklist_threshold":4}`, "FFFF", "aaai", []uint32{1, 2, 3, 4}},
		{"group threshold 0 never blacklists", 1, `{"blacklist_threshold":0}`, "FFFFF", "aaaaa", []uint32{1, 2, 3, 4, 5}},
		{"other group settings do not apply", 2, `{"max_retries":9}`, "FF", "ai", []uint32{1, 2}},
		{"a success ends the streak", 3, "", "FFSFFF", "aaaaai", []uint32{1, 2, 0, 1, 2, 3}},
		{"rate limits never count", 1, "", "RRRR", "aaaa", []uint32{0, 0, 0, 0}},
		{"rate limits do not break the streak", 3, "", "FRFRF", "aaaai", []uint32{1, 1, 2, 2, 3}},
		{"failures of an invalid key still count", 2, "", "FFFF", "aiii", []uint32{1, 2, 3, 4}},
		{"a success does not reactivate", 1, "", "FSF", "iii", []uint32{1, 0, 1}},
		{"a valid validation reactivates", 1, "", "FV", "ia", []uint32{1, 0}},
		{"invalid validations count", 3, "", "XXX", "aai", []uint32{1, 2, 3}},
		{"validations and proxy failures add up", 3, "", "FXF", "aai", []uint32{1, 2, 3}},
		{"blacklisted again after a valid validation", 2, "", "XXVXX", "aiaai", []uint32{1, 2, 0, 1, 2}},
		{"a valid validation of an active key clears its count", 3, "", "FFVFF", "aaaaa", []uint32{1, 2, 0, 1, 2}},
		{"upstream, client and non-failures do nothing", 1, "", "UCN", "aaa", []uint32{0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFold()
			st := domain.DefaultSettings()
			st.BlacklistThreshold = tt.system
			f.apply(domain.SettingsChanged{Settings: st, Changed: []string{"blacklist_threshold"}})
			body := `{"name":"a","channel_type":"openai","test_model":"m","upstreams":[{"url":"https://u.example.com","weight":1}]`
			if tt.config != "" {
				body += `,"config":` + tt.config
			}
			g := f.create(t, body+"}")
			f.addKeys(g.ID, "k", "other")
			id := f.key(t, g.ID, "k").ID
			other := f.key(t, g.ID, "other")
			for i, step := range tt.steps {
				var fact domain.Fact
				switch step {
				case 'F':
					fact = domain.KeyFailed{GroupID: g.ID, KeyID: id, Kind: domain.FailureAuth, Status: 401, Message: "F"}
				case 'R':
					fact = domain.KeyFailed{GroupID: g.ID, KeyID: id, Kind: domain.FailureRateLimit, Status: 429, Message: "R", RetryUntil: at(f.seq + 60)}
				case 'U':
					fact = domain.KeyFailed{GroupID: g.ID, KeyID: id, Kind: domain.FailureUpstream, Status: 502, Message: "U"}
				case 'C':
					fact = domain.KeyFailed{GroupID: g.ID, KeyID: id, Kind: domain.FailureClient, Status: 400, Message: "C"}
				case 'N':
					fact = domain.KeyFailed{GroupID: g.ID, KeyID: id, Kind: domain.FailureNone, Status: 200}
				case 'S':
					fact = domain.KeySucceeded{GroupID: g.ID, KeyID: id}
				case 'V':
					fact = domain.KeyValidated{GroupID: g.ID, KeyID: id, Valid: true}
				case 'X':
					fact = domain.KeyValidated{GroupID: g.ID, KeyID: id, Status: 401, Message: "X"}
				}
				f.apply(fact)
				k := f.key(t, g.ID, "k")
				wantStatus := domain.KeyActive
				if tt.status[i] == 'i' {
					wantStatus = domain.KeyInvalid
				}
				if k.Status != wantStatus || k.FailureCount != tt.counts[i] {
					t.Fatalf("after step %d (%c): status %v count %d, want %v %d", i, step, k.Status, k.FailureCount, wantStatus, tt.counts[i])
				}
				switch step {
				case 'F', 'X', 'R':
					if k.LastError != string(step) {
						t.Errorf("after step %d: last error %q", i, k.LastError)
					}
				case 'V':
					if k.LastError != "" || k.CooldownUntil != 0 {
						t.Errorf("after a valid validation: last error %q cooldown %d", k.LastError, k.CooldownUntil)
					}
				case 'U', 'C', 'N':
					if k.UpdatedAt != at(3).UnixNano() || k.LastError != "" {
						t.Errorf("a failure that does not count touched the key: %+v", k)
					}
				}
				checkKeySet(t, f.State, g.ID)
			}
			if k := f.key(t, g.ID, "other"); k != other {
				t.Errorf("another key changed: %+v", k)
			}
		})
	}
}

func TestKeyHealthThresholdChange(t *testing.T) {
	t.Parallel()
	setThreshold := func(f *fold, n int) {
		st := f.Settings
		st.BlacklistThreshold = n
		f.apply(domain.SettingsChanged{Settings: st, Changed: []string{"blacklist_threshold"}})
	}
	setGroupConfig := func(t *testing.T, f *fold, config string) {
		up, err := domain.DecideUpdateGroup(f.State, 1, gin(t, `{"config":`+config+`}`))
		if err != nil {
			t.Fatal(err)
		}
		f.apply(up)
	}
	type step struct {
		do     func(t *testing.T, f *fold)
		status domain.KeyStatus
		count  uint32
	}
	fail := func(t *testing.T, f *fold) { f.fail(t, 1, "k") }
	tests := []struct {
		name   string
		system int
		steps  []step
	}{
		{"lowered below the count: no blacklisting until the next failure", 5, []step{
			{fail, domain.KeyActive, 1}, {fail, domain.KeyActive, 2}, {fail, domain.KeyActive, 3},
			{func(t *testing.T, f *fold) { setThreshold(f, 2) }, domain.KeyActive, 3},
			{fail, domain.KeyInvalid, 4},
		}},
		{"raised: later failures use the new threshold", 2, []step{
			{fail, domain.KeyActive, 1},
			{func(t *testing.T, f *fold) { setThreshold(f, 4) }, domain.KeyActive, 1},
			{fail, domain.KeyActive, 2}, {fail, domain.KeyActive, 3}, {fail, domain.KeyInvalid, 4},
		}},
		{"raised after blacklisting: the key stays invalid", 2, []step{
			{fail, domain.KeyActive, 1}, {fail, domain.KeyInvalid, 2},
			{func(t *testing.T, f *fold) { setThreshold(f, 10) }, domain.KeyInvalid, 2},
			{fail, domain.KeyInvalid, 3},
		}},
		{"set to 0: never", 3, []step{
			{fail, domain.KeyActive, 1}, {fail, domain.KeyActive, 2},
			{func(t *testing.T, f *fold) { setThreshold(f, 0) }, domain.KeyActive, 2},
			{fail, domain.KeyActive, 3}, {fail, domain.KeyActive, 4},
		}},
		{"group override set later", 5, []step{
			{fail, domain.KeyActive, 1}, {fail, domain.KeyActive, 2},
			{func(t *testing.T, f *fold) { setGroupConfig(t, f, `{"blacklist_threshold":1}`) }, domain.KeyActive, 2},
			{fail, domain.KeyInvalid, 3},
		}},
		{"group override wins over a later system change", 5, []step{
			{func(t *testing.T, f *fold) { setGroupConfig(t, f, `{"blacklist_threshold":3}`) }, domain.KeyActive, 0},
			{func(t *testing.T, f *fold) { setThreshold(f, 1) }, domain.KeyActive, 0},
			{fail, domain.KeyActive, 1}, {fail, domain.KeyActive, 2}, {fail, domain.KeyInvalid, 3},
		}},
		{"group override cleared: the system threshold again", 1, []step{
			{func(t *testing.T, f *fold) { setGroupConfig(t, f, `{"blacklist_threshold":5}`) }, domain.KeyActive, 0},
			{fail, domain.KeyActive, 1},
			{func(t *testing.T, f *fold) { setGroupConfig(t, f, `{}`) }, domain.KeyActive, 1},
			{fail, domain.KeyInvalid, 2},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFold()
			setThreshold(f, tt.system)
			f.create(t, stdBody("a", "openai"))
			f.addKeys(1, "k")
			for i, st := range tt.steps {
				st.do(t, f)
				if k := f.key(t, 1, "k"); k.Status != st.status || k.FailureCount != st.count {
					t.Fatalf("after step %d: status %v count %d, want %v %d", i, k.Status, k.FailureCount, st.status, st.count)
				}
				checkKeySet(t, f.State, 1)
			}
		})
	}
}

func TestKeyHealthCooldown(t *testing.T) {
	t.Parallel()
	f := healthFold(t) // group a: threshold 1
	f.addKeys(1, "k")
	id := f.key(t, 1, "k").ID
	limit := func(until time.Time, msg string) {
		f.apply(domain.KeyFailed{GroupID: 1, KeyID: id, Kind: domain.FailureRateLimit, Status: 429, Message: msg, RetryUntil: until})
	}
	later, earlier := at(1000), at(500)
	limit(later, "first")
	k := f.key(t, 1, "k")
	if k.CooldownUntil != later.UnixNano() || k.LastError != "first" || k.UpdatedAt != at(f.seq).UnixNano() {
		t.Fatalf("after a rate limit: %+v", k)
	}
	if k.Usable(later.UnixNano()-1) || !k.Usable(later.UnixNano()) {
		t.Error("Usable does not follow the cooldown")
	}
	limit(earlier, "second")
	if k := f.key(t, 1, "k"); k.CooldownUntil != later.UnixNano() || k.LastError != "second" {
		t.Errorf("an earlier retry time shortened the cooldown: %+v", k)
	}
	limit(time.Time{}, "third")
	if k := f.key(t, 1, "k"); k.CooldownUntil != later.UnixNano() {
		t.Errorf("a rate limit without a retry time changed the cooldown: %+v", k)
	}
	limit(at(2000), "fourth")
	if k := f.key(t, 1, "k"); k.CooldownUntil != at(2000).UnixNano() || k.Status != domain.KeyActive || k.FailureCount != 0 {
		t.Errorf("a later retry time did not extend the cooldown: %+v", k)
	}
	f.apply(domain.KeySucceeded{GroupID: 1, KeyID: id})
	if k := f.key(t, 1, "k"); k.CooldownUntil != 0 || k.FailureCount != 0 || !k.Usable(0) {
		t.Errorf("a success did not end the cooldown: %+v", k)
	}
	limit(at(3000), "again")
	f.apply(domain.KeyValidated{GroupID: 1, KeyID: id, Valid: true})
	if k := f.key(t, 1, "k"); k.CooldownUntil != 0 || k.LastError != "" {
		t.Errorf("a valid validation did not end the cooldown: %+v", k)
	}
	// An invalid key is not usable whatever its cooldown.
	f.fail(t, 1, "k")
	if k := f.key(t, 1, "k"); k.Status != domain.KeyInvalid || k.Usable(at(9999).UnixNano()) {
		t.Errorf("invalid key usable: %+v", k)
	}
}

func TestFactsAboutUnknownKeysChangeNothing(t *testing.T) {
	t.Parallel()
	facts := []struct {
		name string
		fact domain.Fact
	}{
		{"failure of a key of another group", domain.KeyFailed{GroupID: 1, KeyID: 4, Kind: domain.FailureAuth}},
		{"rate limit of a key of another group", domain.KeyFailed{GroupID: 1, KeyID: 4, Kind: domain.FailureRateLimit, RetryUntil: at(900)}},
		{"failure of an unknown key", domain.KeyFailed{GroupID: 1, KeyID: 999, Kind: domain.FailureAuth}},
		{"failure in an unknown group", domain.KeyFailed{GroupID: 99, KeyID: 1, Kind: domain.FailureAuth}},
		{"failure of a removed key", domain.KeyFailed{GroupID: 1, KeyID: 3, Kind: domain.FailureAuth}},
		{"failure in a deleted group", domain.KeyFailed{GroupID: 3, KeyID: 6, Kind: domain.FailureAuth}},
		{"success of a key of another group", domain.KeySucceeded{GroupID: 2, KeyID: 2}},
		{"success in a deleted group", domain.KeySucceeded{GroupID: 3, KeyID: 6}},
		{"validation of an unknown key", domain.KeyValidated{GroupID: 1, KeyID: 999, Valid: true}},
		{"invalid validation in an unknown group", domain.KeyValidated{GroupID: 99, KeyID: 1}},
		{"validation of a key of another group", domain.KeyValidated{GroupID: 2, KeyID: 2, Valid: true}},
		{"note of a removed key", domain.KeyNoteChanged{GroupID: 1, KeyID: 3, Notes: "x"}},
		{"restore of a key of another group", domain.KeysRestored{GroupID: 2, KeyIDs: []uint64{2}}},
		{"restore in a deleted group", domain.KeysRestored{GroupID: 3, AllInvalid: true}},
		{"removal in a deleted group", domain.KeysRemoved{GroupID: 3, KeyIDs: []uint64{6}}},
		{"clear of a deleted group", domain.KeysCleared{GroupID: 3, Scope: domain.ScopeAll}},
		{"keys added to a deleted group", domain.KeysAdded{GroupID: 3, Keys: newKeys("new")}},
	}
	snapshot := func(s *domain.State) map[uint64]domain.Key {
		out := map[uint64]domain.Key{}
		for _, g := range s.Groups() {
			if ks := s.Keys(g.ID); ks != nil {
				ks.Each(func(k *domain.Key) bool { out[k.ID] = *k; return true })
			}
		}
		return out
	}
	for _, tt := range facts {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := healthFold(t)                  // groups 1 (threshold 1) and 2
			f.create(t, stdBody("c", "openai")) // 3
			f.addKeys(1, "a1", "a2", "a3")      // 1-3
			f.addKeys(2, "b1")                  // 4
			f.addKeys(1, "a4")                  // 5
			f.addKeys(3, "c1")                  // 6
			f.fail(t, 1, "a2")                  // a2 invalid
			f.apply(domain.KeysRemoved{GroupID: 1, KeyIDs: []uint64{3}})
			f.apply(domain.GroupDeleted{GroupID: 3, Name: "c"})
			before := snapshot(f.State)
			groups := f.Groups()
			if ch := f.apply(tt.fact); ch.Settings || ch.Groups {
				t.Errorf("changes = %+v", ch)
			}
			if after := snapshot(f.State); !reflect.DeepEqual(after, before) {
				t.Errorf("keys changed:\nbefore %+v\nafter  %+v", before, after)
			}
			if !reflect.DeepEqual(f.Groups(), groups) {
				t.Error("groups changed")
			}
			if _, ok := f.Key(6); ok {
				t.Error("key of the deleted group found")
			}
			checkKeySet(t, f.State, 1)
			checkKeySet(t, f.State, 2)
		})
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	settings := domain.Aggregate{Kind: domain.AggSettings}
	groups := domain.Aggregate{Kind: domain.AggGroups}
	keys := func(id uint64) domain.Aggregate { return domain.Aggregate{Kind: domain.AggKeys, GroupID: id} }
	health := func(id uint64) domain.Aggregate { return domain.Aggregate{Kind: domain.AggHealth, GroupID: id} }
	tracked := []domain.Aggregate{settings, groups, keys(1), keys(2), keys(3), keys(99), health(1), health(2)}
	tests := []struct {
		name    string
		fact    domain.Fact
		advance []domain.Aggregate
		changes domain.Changes
	}{
		{"settings", domain.SettingsChanged{Settings: domain.DefaultSettings()}, []domain.Aggregate{settings}, domain.Changes{Settings: true}},
		{"group created", domain.GroupCreated{Group: domain.Group{ID: 4, Name: "d", Type: domain.GroupStandard, ChannelType: domain.ChannelOpenAI}}, []domain.Aggregate{groups}, domain.Changes{Groups: true}},
		{"group updated", domain.GroupUpdated{Group: domain.Group{ID: 1, Name: "a2", Type: domain.GroupStandard, ChannelType: domain.ChannelOpenAI}}, []domain.Aggregate{groups}, domain.Changes{Groups: true}},
		{"group deleted", domain.GroupDeleted{GroupID: 2, Name: "b"}, []domain.Aggregate{groups}, domain.Changes{Groups: true, Keys: 2}},
		{"groups reordered", domain.GroupsReordered{Items: []domain.GroupOrder{{GroupID: 1, Sort: 3}}}, []domain.Aggregate{groups}, domain.Changes{Groups: true}},
		{"sub-groups changed", domain.SubGroupsChanged{GroupID: 3, SubGroups: []domain.SubGroup{{GroupID: 1, Weight: 1}}}, []domain.Aggregate{groups}, domain.Changes{Groups: true}},
		{"group validated", domain.GroupValidated{GroupID: 1}, nil, domain.Changes{Groups: true}},
		{"keys added", domain.KeysAdded{GroupID: 1, Keys: newKeys("new")}, []domain.Aggregate{keys(1)}, domain.Changes{Keys: 1}},
		{"keys added to a missing group", domain.KeysAdded{GroupID: 99, Keys: newKeys("new")}, []domain.Aggregate{keys(99)}, domain.Changes{}},
		{"keys removed", domain.KeysRemoved{GroupID: 2, KeyIDs: []uint64{3}}, []domain.Aggregate{keys(2)}, domain.Changes{Keys: 2}},
		{"keys cleared", domain.KeysCleared{GroupID: 1, Scope: domain.ScopeInvalid}, []domain.Aggregate{keys(1)}, domain.Changes{Keys: 1}},
		{"keys restored", domain.KeysRestored{GroupID: 1, AllInvalid: true}, []domain.Aggregate{keys(1)}, domain.Changes{Keys: 1}},
		{"note", domain.KeyNoteChanged{GroupID: 2, KeyID: 3, Notes: "n"}, []domain.Aggregate{keys(2)}, domain.Changes{Keys: 2}},
		{"auth failure", domain.KeyFailed{GroupID: 1, KeyID: 1, Kind: domain.FailureAuth}, nil, domain.Changes{Keys: 1}},
		{"rate limit", domain.KeyFailed{GroupID: 1, KeyID: 1, Kind: domain.FailureRateLimit, RetryUntil: at(100)}, nil, domain.Changes{Keys: 1}},
		{"success", domain.KeySucceeded{GroupID: 2, KeyID: 3}, nil, domain.Changes{Keys: 2}},
		{"validated", domain.KeyValidated{GroupID: 1, KeyID: 2, Valid: true}, nil, domain.Changes{Keys: 1}},
		{"failure of an unknown key", domain.KeyFailed{GroupID: 99, KeyID: 1, Kind: domain.FailureAuth}, nil, domain.Changes{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFold()
			f.apply(domain.SettingsChanged{Settings: domain.DefaultSettings()})       // 1
			f.create(t, stdBody("a", "openai"))                                       // 2
			f.create(t, stdBody("b", "openai"))                                       // 3
			f.create(t, aggBody("c", "openai"))                                       // 4
			f.addKeys(1, "a1", "a2")                                                  // 5
			f.addKeys(2, "b1")                                                        // 6
			f.apply(domain.KeyFailed{GroupID: 1, KeyID: 1, Kind: domain.FailureAuth}) // 7
			before := make([]uint64, len(tracked))
			for i, a := range tracked {
				before[i] = f.Version(a)
			}
			want := []uint64{1, 4, 5, 6, 0, 0, 0, 0}
			if !slices.Equal(before, want) {
				t.Fatalf("versions before = %v, want %v", before, want)
			}
			if ch := f.apply(tt.fact); ch != tt.changes { // 8
				t.Errorf("changes = %+v, want %+v", ch, tt.changes)
			}
			if f.Seq != 8 {
				t.Errorf("Seq = %d, want 8", f.Seq)
			}
			for i, a := range tracked {
				want := before[i]
				if slices.Contains(tt.advance, a) {
					want = 8
				}
				if got := f.Version(a); got != want {
					t.Errorf("Version(%+v) = %d, want %d", a, got, want)
				}
			}
		})
	}
}

func TestApplyKeepsEmptyLists(t *testing.T) {
	t.Parallel()
	// A group's empty lists stay empty lists (JSON []) through every transition that
	// rebuilds the group; they never turn into null.
	tests := []struct {
		name string
		fact func(agg, std uint64) domain.Fact
	}{
		{"reordered", func(agg, std uint64) domain.Fact {
			return domain.GroupsReordered{Items: []domain.GroupOrder{{GroupID: agg, Sort: 4}, {GroupID: std, Sort: 4}}}
		}},
		{"validated", func(agg, std uint64) domain.Fact { return domain.GroupValidated{GroupID: agg} }},
		{"sub-groups changed", func(agg, std uint64) domain.Fact {
			return domain.SubGroupsChanged{GroupID: agg, SubGroups: []domain.SubGroup{{GroupID: std, Weight: 1}}}
		}},
		{"member deleted", func(agg, std uint64) domain.Fact { return domain.GroupDeleted{GroupID: std} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFold()
			agg := f.create(t, aggBody("agg", "openai"))
			std := f.create(t, stdBody("s", "openai"))
			f.link(agg.ID, std.ID)
			f.apply(tt.fact(agg.ID, std.ID))
			g, _ := f.Group(agg.ID)
			if u, h := jsonOf(t, g.Upstreams), jsonOf(t, g.HeaderRules); u != "[]" || h != "[]" {
				t.Errorf("aggregate upstreams %s, header rules %s", u, h)
			}
			if s, ok := f.Group(std.ID); ok {
				if h := jsonOf(t, s.HeaderRules); h != "[]" {
					t.Errorf("standard header rules %s", h)
				}
			}
			// And through an update and a copy.
			up, err := domain.DecideUpdateGroup(f.State, agg.ID, gin(t, `{"sort":9}`))
			if err != nil {
				t.Fatal(err)
			}
			cp, err := domain.DecideCopyGroup(f.State, agg.ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, g := range []domain.Group{up.Group, cp.Group} {
				if u, h := jsonOf(t, g.Upstreams), jsonOf(t, g.HeaderRules); u != "[]" || h != "[]" {
					t.Errorf("%s: upstreams %s, header rules %s", g.Name, u, h)
				}
			}
		})
	}
}

func TestDisableEnableKeys(t *testing.T) {
	t.Parallel()
	f := newFold()
	g := f.create(t, stdBody("dis", "openai"))
	f.addKeys(g.ID, "k1", "k2")
	k1 := f.key(t, g.ID, "k1")

	fact, n, err := domain.DecideDisableKeys(f.State, g.ID, []uint64{k1.ID, k1.ID}, false)
	if err != nil || n != 1 {
		t.Fatalf("disable = %v, %d, %v", fact, n, err)
	}
	if ch := f.apply(fact); ch.Keys != g.ID {
		t.Fatalf("changes %+v", ch)
	}
	k := f.key(t, g.ID, "k1")
	if !k.Disabled || k.Status != domain.KeyActive || k.Selectable() || k.Usable(0) {
		t.Fatalf("disabled key %+v: keeps its status, leaves rotation", k)
	}
	// Disabling again changes nothing; an unknown id is not found; aggregates hold no keys.
	if fact, _, err := domain.DecideDisableKeys(f.State, g.ID, []uint64{k1.ID}, false); fact != nil || err != nil {
		t.Fatalf("second disable = %v, %v", fact, err)
	}
	_, _, err = domain.DecideDisableKeys(f.State, g.ID, []uint64{999}, false)
	wantCode(t, err, domain.ENOTFOUND)
	// A disabled key keeps counting failures and can be blacklisted while disabled.
	for i := 0; i < 3; i++ {
		f.fail(t, g.ID, "k1")
	}
	if k := f.key(t, g.ID, "k1"); k.Status != domain.KeyInvalid || !k.Disabled {
		t.Fatalf("after failures %+v", k)
	}
	fact, n, err = domain.DecideDisableKeys(f.State, g.ID, []uint64{k1.ID}, true)
	if err != nil || n != 1 {
		t.Fatalf("enable = %v, %d, %v", fact, n, err)
	}
	f.apply(fact)
	if k := f.key(t, g.ID, "k1"); k.Disabled {
		t.Fatal("still disabled after enable")
	}
	checkKeySet(t, f.State, g.ID)
}
