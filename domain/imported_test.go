package domain_test

import (
	"fmt"
	"testing"
	"time"

	"gpt-load/domain"
)

// importedKeys makes n keys with ids from first, value prefix p, every third invalid.
func importedKeys(p string, ids ...uint64) []domain.ImportedKey {
	out := make([]domain.ImportedKey, len(ids))
	for i, id := range ids {
		v := fmt.Sprintf("%s-%04d", p, id)
		st := "active"
		if i%3 == 2 {
			st = "invalid"
		}
		out[i] = domain.ImportedKey{ID: id, Value: v, Hash: hashOf(v), Status: st, Notes: "n" + v,
			FailureCount: uint32(i % 3), CreatedAt: t0.Add(-time.Hour).UnixNano(), UpdatedAt: t0.Add(-time.Minute).UnixNano()}
	}
	return out
}

// importGroup decides and applies an imported group.
func (f *fold) importGroup(t testing.TB, body string, imp domain.GroupImport, overwrite bool) domain.ImportedGroupReport {
	t.Helper()
	fact, rep, err := domain.DecideImportGroup(f.State, gin(t, body), imp, overwrite)
	if err != nil {
		t.Fatalf("import %s: %v", body, err)
	}
	if fact != nil {
		f.apply(*fact)
	}
	return rep
}

func (f *fold) importKeys(t testing.TB, gid uint64, keys []domain.ImportedKey) domain.ImportedKeysReport {
	t.Helper()
	fact, rep, err := domain.DecideImportKeys(f.State, gid, keys)
	if err != nil {
		t.Fatalf("import keys: %v", err)
	}
	if len(fact.Keys) > 0 {
		f.apply(*fact)
	}
	return rep
}

// TestImportKeepsIDsAndHandsOutFreshOnesAbove imports groups and keys with ids from another
// store, interleaved between groups and out of order, then checks that every field is kept,
// every key is found by id, new groups and keys get ids above the imported ones, and a
// snapshot of the state gives the same state and the same future.
func TestImportKeepsIDsAndHandsOutFreshOnesAbove(t *testing.T) {
	t.Parallel()
	f := newFold()
	created := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	rep := f.importGroup(t, stdBody("a", "openai"), domain.GroupImport{ID: 7, CreatedAt: created, UpdatedAt: created.Add(time.Hour)}, false)
	if rep.ID != 7 || rep.Outcome != domain.ImportCreated || rep.Renumbered {
		t.Fatalf("group a: %+v", rep)
	}
	f.importGroup(t, stdBody("b", "gemini"), domain.GroupImport{ID: 1}, false)
	agg := f.importGroup(t, aggBody("pool", "openai"), domain.GroupImport{ID: 12, SubGroups: []domain.SubGroup{{GroupID: 7, Weight: 70}}}, false)
	if g, _ := f.Group(12); agg.ID != 12 || len(g.SubGroups) != 1 || g.SubGroups[0] != (domain.SubGroup{GroupID: 7, Weight: 70}) {
		t.Fatalf("aggregate: %+v %+v", agg, g)
	}
	if g, _ := f.Group(7); !g.CreatedAt.Equal(created) || !g.UpdatedAt.Equal(created.Add(time.Hour)) {
		t.Fatalf("group times %v %v", g.CreatedAt, g.UpdatedAt)
	}
	// Ids interleaved between the groups, one batch out of order, a gap.
	f.importKeys(t, 7, importedKeys("a", 1, 2, 3, 10, 11))
	f.importKeys(t, 1, importedKeys("b", 5, 4, 6, 20))
	r := f.importKeys(t, 7, append(importedKeys("a", 8, 9), importedKeys("a", 1)...))
	if r.Imported != 2 || r.Existing != 1 {
		t.Fatalf("second batch: %+v", r)
	}
	for _, gid := range []uint64{1, 7} {
		checkKeySet(t, f.State, gid)
	}
	k := f.key(t, 7, "a-0003")
	if k.ID != 3 || k.Status != domain.KeyInvalid || k.Notes != "na-0003" || k.FailureCount != 2 ||
		k.CreatedAt != t0.Add(-time.Hour).UnixNano() || k.UpdatedAt != t0.Add(-time.Minute).UnixNano() {
		t.Fatalf("key a-0003: %+v", k)
	}
	if got, want := keyIDs(f.Keys(1)), []uint64{4, 5, 6, 20}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ids of b: %v, want %v", got, want)
	}
	// A key id a live key holds is renumbered above everything.
	r = f.importKeys(t, 1, importedKeys("b", 2))
	if r.Renumbered != 1 {
		t.Fatalf("taken id: %+v", r)
	}
	if k := f.key(t, 1, "b-0002"); k.ID != 21 {
		t.Fatalf("renumbered key got id %d, want 21", k.ID)
	}
	// What is born afterwards goes above the imported ids.
	g := f.create(t, stdBody("later", "openai"))
	if g.ID != 13 {
		t.Fatalf("next group id %d, want 13", g.ID)
	}
	f.addKeys(g.ID, "later-1")
	if k := f.key(t, g.ID, "later-1"); k.ID != 22 {
		t.Fatalf("next key id %d, want 22", k.ID)
	}
	// Snapshot: same state, same future.
	got := decode(t, encode(t, f.State))
	compareStates(t, f.State, got)
	compareFutures(t, f.State, got)
}

// TestImportExistingGroup: a group whose name is taken is left alone, or replaced whole
// (keys included) with overwrite; its old keys' ids are free for the import again.
func TestImportExistingGroup(t *testing.T) {
	t.Parallel()
	f := newFold()
	old := f.create(t, stdBody("a", "openai")) // id 1
	f.addKeys(old.ID, "mine-1", "mine-2")      // ids 1, 2
	f.create(t, stdBody("x", "openai"))        // id 2
	rep := f.importGroup(t, stdBody("a", "gemini"), domain.GroupImport{ID: 5}, false)
	if rep.Outcome != domain.ImportExists || rep.ID != 1 {
		t.Fatalf("no overwrite: %+v", rep)
	}
	if g, _ := f.Group(1); g.ChannelType != "openai" || f.Keys(1).Len() != 2 {
		t.Fatalf("existing group changed: %+v", g)
	}
	// The wanted id 2 is held by x: renumbered; a's old id and keys are gone.
	rep = f.importGroup(t, stdBody("a", "gemini"), domain.GroupImport{ID: 2}, true)
	if rep.Outcome != domain.ImportReplaced || !rep.Renumbered || rep.ID != 3 {
		t.Fatalf("overwrite: %+v", rep)
	}
	if _, ok := f.Group(1); ok {
		t.Fatal("the replaced group is still there under its old id")
	}
	if g, ok := f.GroupByName("a"); !ok || g.ID != 3 || g.ChannelType != "gemini" {
		t.Fatalf("group a: %+v", g)
	}
	// Key ids 1 and 2 belonged to the dropped group: free again.
	if r := f.importKeys(t, 3, importedKeys("a", 1, 2)); r.Renumbered != 0 {
		t.Fatalf("%+v", r)
	}
	checkKeySet(t, f.State, 3)
	if k := f.key(t, 3, "a-0002"); k.ID != 2 {
		t.Fatalf("id %d", k.ID)
	}
	// Overwrite of the same id replaces config and keys.
	f.importGroup(t, stdBody("a", "anthropic"), domain.GroupImport{ID: 3}, true)
	if g, _ := f.Group(3); g.ChannelType != "anthropic" || f.Keys(3).Len() != 0 {
		t.Fatalf("replaced group: %+v, %d keys", g, f.Keys(3).Len())
	}
	f.importKeys(t, 3, importedKeys("a", 1, 2))
	checkKeySet(t, f.State, 3)
	// A fact that names an id twice, or out of order (decided elsewhere, or racing another
	// import), is still folded to unique ids.
	dup := append(importedKeys("d", 40, 30), importedKeys("e", 40, 30, 2)...)
	f.apply(domain.KeysImported{GroupID: 3, Keys: dup})
	checkKeySet(t, f.State, 3)
	if n := f.Keys(3).Len(); n != 7 {
		t.Fatalf("%d keys after the odd fact, want 7", n)
	}
	if k := f.key(t, 3, "e-0040"); k.ID <= 40 {
		t.Fatalf("the second key named 40 got id %d", k.ID)
	}
	got := decode(t, encode(t, f.State))
	compareStates(t, f.State, got)
}

func TestDecideImportRejects(t *testing.T) {
	t.Parallel()
	f := newFold()
	f.importGroup(t, stdBody("a", "openai"), domain.GroupImport{ID: 1}, false)
	if _, _, err := domain.DecideImportGroup(f.State, gin(t, stdBody("bad name!", "openai")), domain.GroupImport{ID: 2}, false); err == nil {
		t.Error("a bad name was accepted")
	}
	if _, _, err := domain.DecideImportGroup(f.State, gin(t, aggBody("p", "openai")), domain.GroupImport{ID: 2, SubGroups: []domain.SubGroup{{GroupID: 9, Weight: 1}}}, false); err == nil {
		t.Error("a missing member was accepted")
	}
	bad := importedKeys("a", 1)
	bad[0].Status = "disabled"
	if _, _, err := domain.DecideImportKeys(f.State, 1, bad); err == nil {
		t.Error("an unknown status was accepted")
	}
	if _, _, err := domain.DecideImportKeys(f.State, 9, importedKeys("a", 1)); err == nil {
		t.Error("keys for a missing group were accepted")
	}
}
