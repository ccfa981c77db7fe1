package domain_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"gpt-load/domain"
)

// keysFold holds:
//
//	1 a    standard, blacklist threshold 1: k1 (1), k2 (2), k3 (3, invalid), k4 (4)
//	2 agg  aggregate
//	3 b    standard, blacklist threshold 1: k1 (5), k5 (6), k6 (7, invalid)
//	4 gone deleted, had g1 (8)
func keysFold(t *testing.T) *fold {
	t.Helper()
	f := newFold()
	body := func(name string) string {
		return `{"name":"` + name + `","channel_type":"openai","test_model":"m","upstreams":[{"url":"https://u.example.com","weight":1}],"config":{"blacklist_threshold":1}}`
	}
	f.create(t, body("a"))
	f.create(t, aggBody("agg", "openai"))
	f.create(t, body("b"))
	f.create(t, body("gone"))
	f.addKeys(1, "k1", "k2", "k3", "k4")
	f.addKeys(3, "k1", "k5", "k6")
	f.addKeys(4, "g1")
	f.fail(t, 1, "k3")
	f.fail(t, 3, "k6")
	f.apply(domain.GroupDeleted{GroupID: 4, Name: "gone"})
	return f
}

func hashes(values ...string) []domain.KeyHash {
	out := make([]domain.KeyHash, len(values))
	for i, v := range values {
		out[i] = hashOf(v)
	}
	return out
}

func TestDecideAddKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		group   uint64
		keys    []domain.NewKey
		removed []uint64 // keys removed before deciding
		code    domain.Code
		want    []string
		ignored int
	}{
		{name: "new keys in order", group: 1, keys: newKeys("n2", "n1"), want: []string{"n2", "n1"}},
		{name: "duplicates in the batch", group: 1, keys: newKeys("n1", "n1", "n2", "n1"), want: []string{"n1", "n2"}, ignored: 2},
		{name: "already in the group", group: 1, keys: newKeys("k1", "n1", "k2", "k3"), want: []string{"n1"}, ignored: 3},
		{name: "in another group only", group: 1, keys: newKeys("k5", "k6"), want: []string{"k5", "k6"}},
		{name: "same hash, other value", group: 1, keys: []domain.NewKey{{Value: "n1", Hash: hashOf("n1")}, {Value: "other", Hash: hashOf("n1")}}, want: []string{"n1"}, ignored: 1},
		{name: "empty value", group: 1, keys: newKeys("", "n1"), want: []string{"n1"}, ignored: 1},
		{name: "all known", group: 1, keys: newKeys("k1", "k2", "k1"), ignored: 3},
		{name: "none", group: 1},
		{name: "removed key comes back", group: 1, removed: []uint64{2}, keys: newKeys("k2", "k1"), want: []string{"k2"}, ignored: 1},
		{name: "key of a deleted group", group: 1, keys: newKeys("g1"), want: []string{"g1"}},
		{name: "aggregate", group: 2, keys: newKeys("n1"), code: domain.EINVALID},
		{name: "deleted group", group: 4, keys: newKeys("n1"), code: domain.ENOTFOUND},
		{name: "missing group", group: 99, keys: newKeys("n1"), code: domain.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := keysFold(t)
			if tt.removed != nil {
				f.apply(domain.KeysRemoved{GroupID: tt.group, KeyIDs: tt.removed})
			}
			before := 0
			if ks := f.Keys(tt.group); ks != nil {
				before = ks.Len()
			}
			fact, rep, err := domain.DecideAddKeys(f.State, tt.group, tt.keys)
			wantCode(t, err, tt.code)
			if err != nil {
				return
			}
			var got []string
			for _, k := range fact.Keys {
				got = append(got, k.Value)
				if k.Hash != hashOf(k.Value) {
					t.Errorf("key %q carries another hash", k.Value)
				}
			}
			if fact.GroupID != tt.group || !slices.Equal(got, tt.want) {
				t.Fatalf("fact = group %d keys %v, want %v", fact.GroupID, got, tt.want)
			}
			if rep != (domain.AddReport{Added: len(tt.want), Ignored: tt.ignored}) {
				t.Errorf("report = %+v", rep)
			}
			if f.Keys(tt.group).Len() != before {
				t.Fatal("deciding changed the state")
			}
			f.apply(fact)
			if n := f.Keys(tt.group).Len(); n != before+len(tt.want) {
				t.Errorf("%d keys after apply, want %d", n, before+len(tt.want))
			}
			for i, v := range tt.want {
				if k := f.key(t, tt.group, v); k.ID != 9+uint64(i) || k.Status != domain.KeyActive {
					t.Errorf("%s: id %d status %v, want id %d", v, k.ID, k.Status, 9+i)
				}
			}
			checkKeySet(t, f.State, tt.group)
		})
	}
}

func TestDecideRemoveKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		group  uint64
		hashes []domain.KeyHash
		code   domain.Code
		want   []uint64
	}{
		{name: "by hash", group: 1, hashes: hashes("k3", "k1"), want: []uint64{3, 1}},
		{name: "unknown hashes ignored", group: 1, hashes: hashes("x", "k2", "y"), want: []uint64{2}},
		{name: "duplicates once", group: 1, hashes: hashes("k1", "k1", "k4", "k1"), want: []uint64{1, 4}},
		{name: "the same key in another group", group: 3, hashes: hashes("k1"), want: []uint64{5}},
		{name: "key of another group only", group: 1, hashes: hashes("k5")},
		{name: "none", group: 1},
		{name: "aggregate", group: 2, hashes: hashes("k1"), code: domain.EINVALID},
		{name: "deleted group", group: 4, hashes: hashes("g1"), code: domain.ENOTFOUND},
		{name: "missing group", group: 99, hashes: hashes("k1"), code: domain.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := keysFold(t)
			fact, ok, err := domain.DecideRemoveKeys(f.State, tt.group, tt.hashes)
			wantCode(t, err, tt.code)
			if err != nil {
				return
			}
			if ok != (len(tt.want) > 0) || fact.GroupID != tt.group || !slices.Equal(fact.KeyIDs, tt.want) {
				t.Fatalf("fact = %+v, ok %v, want ids %v", fact, ok, tt.want)
			}
			before := f.Keys(tt.group).Len()
			f.apply(fact)
			if n := f.Keys(tt.group).Len(); n != before-len(tt.want) {
				t.Errorf("%d keys after apply, want %d", n, before-len(tt.want))
			}
			for _, id := range tt.want {
				if _, found := f.Key(id); found {
					t.Errorf("key %d still there", id)
				}
			}
			checkKeySet(t, f.State, 1)
			checkKeySet(t, f.State, 3)
		})
	}
}

func TestDecideRestoreKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		group  uint64
		hashes []domain.KeyHash
		code   domain.Code
		want   []uint64
	}{
		{name: "only invalid keys", group: 1, hashes: hashes("k1", "k3", "x"), want: []uint64{3}},
		{name: "active keys only", group: 1, hashes: hashes("k1", "k2")},
		{name: "duplicates once", group: 1, hashes: hashes("k3", "k3"), want: []uint64{3}},
		{name: "invalid key of another group", group: 1, hashes: hashes("k6")},
		{name: "invalid key of its group", group: 3, hashes: hashes("k6", "k3"), want: []uint64{7}},
		{name: "aggregate", group: 2, hashes: hashes("k3"), code: domain.EINVALID},
		{name: "missing group", group: 99, hashes: hashes("k3"), code: domain.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := keysFold(t)
			fact, ok, err := domain.DecideRestoreKeys(f.State, tt.group, tt.hashes)
			wantCode(t, err, tt.code)
			if err != nil {
				return
			}
			if ok != (len(tt.want) > 0) || fact.GroupID != tt.group || fact.AllInvalid || !slices.Equal(fact.KeyIDs, tt.want) {
				t.Fatalf("fact = %+v, ok %v, want ids %v", fact, ok, tt.want)
			}
			invalid := f.Keys(tt.group).Invalid()
			f.apply(fact)
			if n := f.Keys(tt.group).Invalid(); n != invalid-len(tt.want) {
				t.Errorf("%d invalid keys after apply, want %d", n, invalid-len(tt.want))
			}
			for _, id := range tt.want {
				if k, _ := f.Key(id); k.Status != domain.KeyActive || k.FailureCount != 0 || k.LastError != "" {
					t.Errorf("key %d after restore: %+v", id, k)
				}
			}
			checkKeySet(t, f.State, tt.group)
		})
	}
}

func TestDecideRestoreAllInvalid(t *testing.T) {
	t.Parallel()
	f := keysFold(t)
	f.fail(t, 1, "k1")
	fact, n, err := domain.DecideRestoreAllInvalid(f.State, 1)
	if err != nil || n != 2 || fact.GroupID != 1 || !fact.AllInvalid || fact.KeyIDs != nil {
		t.Fatalf("= %+v, %d, %v", fact, n, err)
	}
	f.apply(fact)
	if ks := f.Keys(1); ks.Invalid() != 0 || ks.Active() != 4 || f.Keys(3).Invalid() != 1 {
		t.Errorf("after apply: a %d/%d, b invalid %d", ks.Active(), ks.Invalid(), f.Keys(3).Invalid())
	}
	checkKeySet(t, f.State, 1)
	if _, n, err := domain.DecideRestoreAllInvalid(f.State, 1); err != nil || n != 0 {
		t.Errorf("with none invalid: %d, %v", n, err)
	}
	_, _, err = domain.DecideRestoreAllInvalid(f.State, 2)
	wantCode(t, err, domain.EINVALID)
	_, _, err = domain.DecideRestoreAllInvalid(f.State, 4)
	wantCode(t, err, domain.ENOTFOUND)
}

func TestDecideClearKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		group uint64
		scope domain.KeyScope
		code  domain.Code
		n     int
		left  int
	}{
		{name: "all", group: 1, scope: domain.ScopeAll, n: 4, left: 0},
		{name: "invalid", group: 1, scope: domain.ScopeInvalid, n: 1, left: 3},
		{name: "invalid of b", group: 3, scope: domain.ScopeInvalid, n: 1, left: 2},
		{name: "bad scope", group: 1, scope: "active", code: domain.EINVALID},
		{name: "empty scope", group: 1, scope: "", code: domain.EINVALID},
		{name: "aggregate", group: 2, scope: domain.ScopeAll, code: domain.EINVALID},
		{name: "missing group", group: 99, scope: domain.ScopeAll, code: domain.ENOTFOUND},
		{name: "missing group and bad scope", group: 99, scope: "x", code: domain.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := keysFold(t)
			fact, n, err := domain.DecideClearKeys(f.State, tt.group, tt.scope)
			wantCode(t, err, tt.code)
			if tt.code == domain.EINVALID && tt.group == 1 {
				wantFields(t, err, "scope")
			}
			if err != nil {
				return
			}
			if fact != (domain.KeysCleared{GroupID: tt.group, Scope: tt.scope}) || n != tt.n {
				t.Fatalf("= %+v, %d", fact, n)
			}
			f.apply(fact)
			if l := f.Keys(tt.group).Len(); l != tt.left {
				t.Errorf("%d keys left, want %d", l, tt.left)
			}
			checkKeySet(t, f.State, 1)
			checkKeySet(t, f.State, 3)
		})
	}
}

func TestDecideKeyNotes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		id     uint64
		notes  string
		code   domain.Code
		group  uint64
		stored string
	}{
		{name: "trimmed", id: 6, notes: "  hello\t", group: 3, stored: "hello"},
		{name: "empty", id: 1, notes: "", group: 1, stored: ""},
		{name: "255 characters", id: 1, notes: strings.Repeat("é", 255), group: 1, stored: strings.Repeat("é", 255)},
		{name: "255 characters and spaces", id: 1, notes: "  " + strings.Repeat("n", 255) + "  ", group: 1, stored: strings.Repeat("n", 255)},
		{name: "256 characters", id: 1, notes: strings.Repeat("é", 256), code: domain.EINVALID},
		{name: "invalid key", id: 3, notes: "dead", group: 1, stored: "dead"},
		{name: "unknown key", id: 99, notes: "x", code: domain.ENOTFOUND},
		{name: "id 0", id: 0, notes: "x", code: domain.ENOTFOUND},
		{name: "key of a deleted group", id: 8, notes: "x", code: domain.ENOTFOUND},
		{name: "removed key", id: 2, notes: "x", code: domain.ENOTFOUND},
		{name: "unknown key and too long", id: 99, notes: strings.Repeat("x", 300), code: domain.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := keysFold(t)
			f.apply(domain.KeysRemoved{GroupID: 1, KeyIDs: []uint64{2}})
			fact, err := domain.DecideKeyNotes(f.State, tt.id, tt.notes)
			if tt.code == domain.EINVALID {
				wantFields(t, err, "notes")
				return
			}
			wantCode(t, err, tt.code)
			if err != nil {
				return
			}
			if fact != (domain.KeyNoteChanged{GroupID: tt.group, KeyID: tt.id, Notes: tt.stored}) {
				t.Fatalf("fact = %+v", fact)
			}
			f.apply(fact)
			if k, _ := f.Key(tt.id); k.Notes != tt.stored {
				t.Errorf("notes after apply = %q", k.Notes)
			}
		})
	}
}

func TestDecideSettings(t *testing.T) {
	t.Parallel()
	seeded := domain.DefaultSettings()
	seeded.ProxyKeys = "a,b"
	tests := []struct {
		name    string
		seeded  bool
		changes map[string]string
		ok      bool
		changed []string
		fields  []string
		check   func(t *testing.T, s domain.Settings)
	}{
		{name: "nothing, not seeded", changes: nil, ok: true},
		{name: "same value, not seeded", changes: map[string]string{"max_retries": "3"}, ok: true},
		{name: "nothing, seeded", seeded: true, changes: nil},
		{name: "same value, seeded", seeded: true, changes: map[string]string{"max_retries": "3", "app_url": `"http://localhost:3001"`}},
		{name: "same keys after normalizing", seeded: true, changes: map[string]string{"proxy_keys": `" a , b ,"`}},
		{name: "one change", seeded: true, changes: map[string]string{"max_retries": "5"}, ok: true, changed: []string{"max_retries"},
			check: func(t *testing.T, s domain.Settings) {
				if s.MaxRetries != 5 {
					t.Errorf("max_retries = %d", s.MaxRetries)
				}
			}},
		{name: "changes in table order", seeded: true, changes: map[string]string{"blacklist_threshold": "0", "max_retries": "3", "app_url": `"https://x.example.com"`, "proxy_keys": `"c"`}, ok: true,
			changed: []string{"app_url", "proxy_keys", "blacklist_threshold"},
			check: func(t *testing.T, s domain.Settings) {
				want := seeded
				want.AppURL, want.ProxyKeys, want.BlacklistThreshold = "https://x.example.com", "c", 0
				if s != want {
					t.Errorf("settings = %+v", s)
				}
			}},
		{name: "change, not seeded", changes: map[string]string{"request_timeout": "30"}, ok: true, changed: []string{"request_timeout"}},
		{name: "invalid", seeded: true, changes: map[string]string{"max_retries": "-1", "bogus": "1", "app_url": `"https://ok.example.com"`}, fields: []string{"bogus", "max_retries"}},
		{name: "null", seeded: true, changes: map[string]string{"max_retries": "null"}, fields: []string{"max_retries"}},
		{name: "invalid, not seeded", changes: map[string]string{"proxy_keys": `" , "`}, fields: []string{"proxy_keys"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFold()
			if tt.seeded {
				f.apply(domain.SettingsChanged{Settings: seeded})
			}
			before := f.Settings
			changes := map[string]json.RawMessage{}
			for k, v := range tt.changes {
				changes[k] = json.RawMessage(v)
			}
			fact, ok, err := domain.DecideSettings(f.State, changes)
			if f.Settings != before {
				t.Fatal("deciding changed the state")
			}
			if tt.fields != nil {
				wantFields(t, err, tt.fields...)
				if ok {
					t.Error("ok with an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if !slices.Equal(fact.Changed, tt.changed) {
				t.Errorf("changed = %v, want %v", fact.Changed, tt.changed)
			}
			if tt.check != nil {
				tt.check(t, fact.Settings)
			}
			v := f.Version(domain.Aggregate{Kind: domain.AggSettings})
			f.apply(fact)
			if f.Settings != fact.Settings || !f.SettingsSeeded || f.Version(domain.Aggregate{Kind: domain.AggSettings}) == v {
				t.Errorf("after apply: %+v seeded %v", f.Settings, f.SettingsSeeded)
			}
			// The same command again changes nothing.
			if _, ok, err := domain.DecideSettings(f.State, changes); ok || err != nil {
				t.Errorf("repeated: ok %v, %v", ok, err)
			}
		})
	}
}

func TestDecideSeedSettings(t *testing.T) {
	t.Parallel()
	env := domain.DefaultSettings()
	env.ProxyKeys, env.AppURL = "from-env", "https://env.example.com"
	f := &fold{State: domain.NewState(env)}
	fact, ok := domain.DecideSeedSettings(f.State)
	if !ok || fact.Settings != env || fact.Changed == nil || len(fact.Changed) != 0 {
		t.Fatalf("= %+v, %v", fact, ok)
	}
	f.apply(fact)
	if !f.SettingsSeeded || f.Settings != env {
		t.Fatalf("after apply: %+v, seeded %v", f.Settings, f.SettingsSeeded)
	}
	if _, ok := domain.DecideSeedSettings(f.State); ok {
		t.Error("seeded twice")
	}
	// A settings change also seeds.
	g := newFold()
	change, ok, err := domain.DecideSettings(g.State, map[string]json.RawMessage{"max_retries": json.RawMessage("1")})
	if !ok || err != nil {
		t.Fatal(ok, err)
	}
	g.apply(change)
	if _, ok := domain.DecideSeedSettings(g.State); ok {
		t.Error("seeding after a settings change")
	}
}

func TestNextKeyChunk(t *testing.T) {
	t.Parallel()
	many := func(n, size int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = strings.Repeat("k", size)
		}
		return out
	}
	tests := []struct {
		name   string
		values []string
		want   int
	}{
		{"empty", nil, 0},
		{"few short keys", many(10, 50), 10},
		{"count bound", many(domain.MaxKeysPerEvent+5, 50), domain.MaxKeysPerEvent},
		{"size bound", many(1000, domain.MaxKeyBytes), domain.MaxKeyBytesPerEvent / domain.MaxKeyBytes},
		{"one key over the size bound still goes alone", many(2, domain.MaxKeyBytesPerEvent+1), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := domain.NextKeyChunk(tt.values); got != tt.want {
				t.Fatalf("NextKeyChunk = %d, want %d", got, tt.want)
			}
		})
	}
}
