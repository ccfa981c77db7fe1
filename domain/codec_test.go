package domain_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"gpt-load/domain"
)

// richFold builds a state with seeded settings, standard groups with every field, two
// aggregates, a deleted group, a copy, and about n keys in several groups, with duplicates,
// keys sent to a missing group, removals, notes, cooldowns, invalid keys and restores.
//
//	1 s1   openai, blacklist threshold 1, member of agg (weight 3)
//	2 s2   openai, member of agg (weight 0)
//	3 s3   gemini, member of agg2
//	4 gone deleted (was a member of agg)
//	5 agg  aggregate openai
//	6 agg2 aggregate gemini
//	7 s1_copy
func richFold(t testing.TB, n int) *fold {
	t.Helper()
	f := newFold()
	st := domain.DefaultSettings()
	st.BlacklistThreshold, st.AppURL, st.ProxyKeys = 2, "https://proxy.example.com", "pk1,pk2"
	f.apply(domain.SettingsChanged{Settings: st, Changed: []string{"app_url", "proxy_keys", "blacklist_threshold"}})
	f.create(t, `{"name":"s1","display_name":"S1","description":"first","channel_type":"openai","sort":3,"test_model":"gpt",
		"upstreams":[{"url":"https://a.example.com","weight":2},{"url":"https://b.example.com","weight":0}],
		"param_overrides":{"temperature":0.2},"model_redirect_rules":{"gpt-4":"gpt-4.1"},"model_redirect_strict":true,
		"config":{"blacklist_threshold":1,"proxy_url":"socks5://127.0.0.1:1080","enable_request_body_logging":true},
		"header_rules":[{"key":"x-team","value":"${GROUP_NAME}","action":"set"},{"key":"x-drop","action":"remove"}],"proxy_keys":"g1,g2"}`)
	f.create(t, stdBody("s2", "openai"))
	f.create(t, stdBody("s3", "gemini"))
	f.create(t, stdBody("gone", "openai"))
	f.create(t, aggBody("agg", "openai"))
	f.create(t, aggBody("agg2", "gemini"))
	f.apply(domain.SubGroupsChanged{GroupID: 5, SubGroups: []domain.SubGroup{{GroupID: 1, Weight: 3}, {GroupID: 2, Weight: 0}, {GroupID: 4, Weight: 1}}})
	f.link(6, 3)
	// Named proxy keys: one limited to s1 and s3, one rotated, one deleted.
	pk := func(name string, groups ...string) domain.ProxyKeyCreated {
		in := domain.ProxyKeyInput{Name: &name, RPM: new(int64(60)), DailyTokens: new(int64(1000))}
		if len(groups) > 0 {
			in.Groups, _ = json.Marshal(groups)
		}
		c, err := domain.DecideCreateProxyKey(f.State, in, domain.ProxyKeySecret{Hash: hashOf("secret-" + name), Masked: "sk-g****" + name})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	f.apply(pk("team", "s1", "s3"))
	f.apply(pk("ci"))
	f.apply(domain.ProxyKeyRotated{ID: 2, Hash: hashOf("rotated"), Masked: "sk-g****rot"})
	f.apply(pk("old"))
	f.apply(domain.ProxyKeyDeleted{ID: 3, Name: "old"})

	groups := []uint64{1, 2, 3, 4}
	for i, c := 0, 0; i < n; c++ {
		m := min(n-i, domain.MaxKeysPerEvent-1)
		batch := make([]domain.NewKey, 0, m+1)
		for j := range m {
			v := fmt.Sprintf("sk-%06d-%s", i+j, strings.Repeat("v", (i+j)%9))
			batch = append(batch, domain.NewKey{Value: v, Hash: hashOf(v)})
		}
		batch = append(batch, batch[0]) // a duplicate uses up an id
		f.apply(domain.KeysAdded{GroupID: groups[c%len(groups)], Keys: batch})
		if c%3 == 1 {
			f.addKeys(99, fmt.Sprint("lost-", c))
		}
		i += m
	}
	for _, gid := range groups {
		ids := keyIDs(f.Keys(gid))
		var removed []uint64
		for idx, id := range ids {
			switch {
			case idx%7 == 3:
				removed = append(removed, id)
			case idx%17 == 0:
				for range 2 {
					f.apply(domain.KeyFailed{GroupID: gid, KeyID: id, Kind: domain.FailureAuth, Status: 401, Message: fmt.Sprint("invalid key ", idx)})
				}
			case idx%13 == 0:
				f.apply(domain.KeyFailed{GroupID: gid, KeyID: id, Kind: domain.FailureRateLimit, Status: 429, Message: "slow down", RetryUntil: at(100000 + uint64(idx))})
			case idx%11 == 0:
				f.apply(domain.KeyNoteChanged{GroupID: gid, KeyID: id, Notes: fmt.Sprintf("note %d é", idx)})
			case idx%19 == 0:
				f.apply(domain.KeyFailed{GroupID: gid, KeyID: id, Kind: domain.FailureAuth, Status: 403, Message: "forbidden"})
			}
		}
		f.apply(domain.KeysRemoved{GroupID: gid, KeyIDs: removed})
	}
	f.apply(domain.KeysCleared{GroupID: 3, Scope: domain.ScopeInvalid})
	if ids := invalidIDs(f.State, 2); len(ids) > 1 {
		f.apply(domain.KeysRestored{GroupID: 2, KeyIDs: ids[:len(ids)/2]})
	}
	f.apply(domain.GroupDeleted{GroupID: 4, Name: "gone"})
	f.apply(domain.GroupValidated{GroupID: 1})
	f.apply(domain.GroupsReordered{Items: []domain.GroupOrder{{GroupID: 2, Sort: 5}}})
	cp, err := domain.DecideCopyGroup(f.State, 1)
	if err != nil {
		t.Fatal(err)
	}
	f.apply(cp)
	f.addKeys(7, "copied-1", "copied-2")
	return f
}

func invalidIDs(s *domain.State, gid uint64) []uint64 {
	var ids []uint64
	s.Keys(gid).Each(func(k *domain.Key) bool {
		if k.Status == domain.KeyInvalid {
			ids = append(ids, k.ID)
		}
		return true
	})
	return ids
}

func encode(t testing.TB, s *domain.State) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := s.Encode(&buf); err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return buf.Bytes()
}

func decode(t testing.TB, b []byte) *domain.State {
	t.Helper()
	s, err := domain.DecodeState(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("DecodeState: %v", err)
	}
	return s
}

// allKeys lists the keys of a group by value, in id order.
func allKeys(s *domain.State, gid uint64) []domain.Key {
	var out []domain.Key
	if ks := s.Keys(gid); ks != nil {
		ks.Each(func(k *domain.Key) bool { out = append(out, *k); return true })
	}
	return out
}

// compareStates checks that got is observably want: sequence, settings, groups, links,
// every key with all its fields, lookups by hash and id, counters and versions.
func compareStates(t testing.TB, want, got *domain.State) {
	t.Helper()
	if got.Seq != want.Seq || got.Settings != want.Settings || got.SettingsSeeded != want.SettingsSeeded {
		t.Fatalf("seq %d/%d, settings %+v/%+v, seeded %v/%v", got.Seq, want.Seq, got.Settings, want.Settings, got.SettingsSeeded, want.SettingsSeeded)
	}
	if w, g := jsonOf(t, want.ProxyKeys()), jsonOf(t, got.ProxyKeys()); w != g {
		t.Fatalf("proxy keys %s, want %s", g, w)
	}
	if w, g := want.Version(domain.Aggregate{Kind: domain.AggProxyKeys}), got.Version(domain.Aggregate{Kind: domain.AggProxyKeys}); w != g {
		t.Fatalf("proxy-key version %d, want %d", g, w)
	}
	wg, gg := want.Groups(), got.Groups()
	if len(wg) != len(gg) || got.NumGroups() != want.NumGroups() {
		t.Fatalf("%d groups, want %d", len(gg), len(wg))
	}
	var maxGroup, maxKey uint64
	for i := range wg {
		w, g := *wg[i], *gg[i]
		if len(w.SubGroups) == 0 {
			w.SubGroups = nil
		}
		if len(g.SubGroups) == 0 {
			g.SubGroups = nil
		}
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("group %d:\ngot  %s\nwant %s", w.ID, jsonOf(t, g), jsonOf(t, w))
		}
		maxGroup = max(maxGroup, w.ID)
		if byName, ok := got.GroupByName(w.Name); !ok || byName.ID != w.ID {
			t.Errorf("GroupByName(%q) = %v, %v", w.Name, byName, ok)
		}
		if p, q := sortedParents(got, w.ID), sortedParents(want, w.ID); !reflect.DeepEqual(p, q) {
			t.Errorf("ParentsOf(%d) = %v, want %v", w.ID, p, q)
		}
		wk, gk := allKeys(want, w.ID), allKeys(got, w.ID)
		if !reflect.DeepEqual(gk, wk) {
			t.Fatalf("group %d: %d keys, want %d (or fields differ)", w.ID, len(gk), len(wk))
		}
		if len(wk) > 0 {
			maxKey = max(maxKey, wk[len(wk)-1].ID)
		}
		a, b := want.Keys(w.ID), got.Keys(w.ID)
		if a.Len() != b.Len() || a.Active() != b.Active() || a.Invalid() != b.Invalid() {
			t.Errorf("group %d counts %d/%d/%d, want %d/%d/%d", w.ID, b.Len(), b.Active(), b.Invalid(), a.Len(), a.Active(), a.Invalid())
		}
		checkKeySet(t, got, w.ID)
	}
	for id := uint64(0); id <= maxKey+3; id++ {
		wk, wok := want.Key(id)
		gk, gok := got.Key(id)
		if wok != gok || wok && *wk != *gk {
			t.Fatalf("Key(%d) = %v, %v; want %v, %v", id, gk, gok, wk, wok)
		}
	}
	aggs := []domain.Aggregate{{Kind: domain.AggSettings}, {Kind: domain.AggGroups}}
	for id := uint64(0); id <= maxGroup+3; id++ {
		aggs = append(aggs, domain.Aggregate{Kind: domain.AggKeys, GroupID: id}, domain.Aggregate{Kind: domain.AggHealth, GroupID: id})
	}
	aggs = append(aggs, domain.Aggregate{Kind: domain.AggKeys, GroupID: 99})
	for _, a := range aggs {
		if g, w := got.Version(a), want.Version(a); g != w {
			t.Errorf("Version(%+v) = %d, want %d", a, g, w)
		}
	}
}

// compareFutures applies the same new facts to both states and checks that they hand out
// the same ids and stay equal.
func compareFutures(t testing.TB, want, got *domain.State) {
	t.Helper()
	a, b := &fold{State: want, seq: want.Seq}, &fold{State: got, seq: got.Seq}
	ga, erra := domain.DecideCreateGroup(a.State, gin(t, stdBody("brand-new", "openai")))
	gb, errb := domain.DecideCreateGroup(b.State, gin(t, stdBody("brand-new", "openai")))
	if erra != nil || errb != nil || ga.Group.ID != gb.Group.ID {
		t.Fatalf("next group: %d, %v; want %d, %v", gb.Group.ID, errb, ga.Group.ID, erra)
	}
	a.apply(ga)
	b.apply(gb)
	for _, gid := range []uint64{1, ga.Group.ID} {
		keys := newKeys("future-1", "future-2", "future-1")
		if ks := want.Keys(gid); ks != nil && ks.Len() > 0 {
			var first domain.Key
			ks.Each(func(k *domain.Key) bool { first = *k; return false })
			keys = append(keys, domain.NewKey{Value: first.Value, Hash: first.Hash}) // already there
		}
		a.apply(domain.KeysAdded{GroupID: gid, Keys: keys})
		b.apply(domain.KeysAdded{GroupID: gid, Keys: keys})
		ka, kb := a.key(t, gid, "future-2"), b.key(t, gid, "future-2")
		if ka.ID != kb.ID {
			t.Fatalf("next key id %d, want %d", kb.ID, ka.ID)
		}
	}
	compareStates(t, want, got)
	if !bytes.Equal(encode(t, got), encode(t, want)) {
		t.Error("encodings differ after the same facts")
	}
}

func TestStateCodecRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		build func(t testing.TB) *fold
	}{
		{"empty", func(testing.TB) *fold { return newFold() }},
		{"seeded, no groups", func(testing.TB) *fold {
			f := newFold()
			f.apply(domain.SettingsChanged{Settings: domain.DefaultSettings()})
			return f
		}},
		{"groups without keys", func(t testing.TB) *fold {
			f := newFold()
			f.create(t, stdBody("a", "openai"))
			f.create(t, aggBody("b", "openai"))
			f.link(2, 1)
			return f
		}},
		{"every key removed", func(t testing.TB) *fold {
			f := newFold()
			f.create(t, stdBody("a", "openai"))
			f.addKeys(1, "k1", "k2")
			f.apply(domain.KeysCleared{GroupID: 1, Scope: domain.ScopeAll})
			return f
		}},
		{"small", func(t testing.TB) *fold { return richFold(t, 50) }},
		{"10k keys", func(t testing.TB) *fold { return richFold(t, 18000) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := tt.build(t)
			enc := encode(t, f.State)
			if again := encode(t, f.State); !bytes.Equal(enc, again) {
				t.Fatal("two encodings of one state differ")
			}
			got := decode(t, enc)
			compareStates(t, f.State, got)
			if re := encode(t, got); !bytes.Equal(re, enc) {
				t.Fatal("the decoded state encodes differently")
			}
			compareFutures(t, f.State, got)
		})
	}
}

func TestStateCodecRichState(t *testing.T) {
	t.Parallel()
	f := richFold(t, 18000)
	// The fixture holds what the round trip is meant to cover.
	var keys, invalid, cooling, noted, failing int
	for _, g := range f.Groups() {
		for _, k := range allKeys(f.State, g.ID) {
			keys++
			if k.Status == domain.KeyInvalid {
				invalid++
			}
			if k.CooldownUntil != 0 {
				cooling++
			}
			if k.Notes != "" {
				noted++
			}
			if k.FailureCount > 0 && k.Status == domain.KeyActive {
				failing++
			}
		}
	}
	if keys < 10000 || invalid == 0 || cooling == 0 || noted == 0 || failing == 0 {
		t.Fatalf("fixture: %d keys, %d invalid, %d cooling, %d with notes, %d failing", keys, invalid, cooling, noted, failing)
	}
	if g, _ := f.Group(5); len(g.SubGroups) != 2 {
		t.Fatalf("fixture aggregate members: %v", g.SubGroups)
	}
	if g, _ := f.Group(1); g.LastValidatedAt.IsZero() || g.Config.IsEmpty() || len(g.HeaderRules) != 2 {
		t.Fatalf("fixture group: %+v", g)
	}
	got := decode(t, encode(t, f.State))
	// Versions of aggregates and the counters, explicitly.
	for _, a := range []domain.Aggregate{{Kind: domain.AggSettings}, {Kind: domain.AggGroups}, {Kind: domain.AggKeys, GroupID: 1}, {Kind: domain.AggKeys, GroupID: 4}} {
		if got.Version(a) == 0 || got.Version(a) != f.Version(a) {
			t.Errorf("Version(%+v) = %d, want %d", a, got.Version(a), f.Version(a))
		}
	}
	// The decoded state lives on by itself: changing it leaves the original alone.
	before := encode(t, f.State)
	g := &fold{State: got, seq: got.Seq}
	g.apply(domain.KeysCleared{GroupID: 1, Scope: domain.ScopeAll}, domain.GroupDeleted{GroupID: 2})
	if !bytes.Equal(encode(t, f.State), before) {
		t.Fatal("changing the decoded state changed the original")
	}
}

func TestSnapshotThenTail(t *testing.T) {
	t.Parallel()
	full := richFold(t, 3000)
	n := len(full.log)
	for _, cut := range []int{0, 1, 7, n / 3, n / 2, n - 10, n - 1, n} {
		t.Run(fmt.Sprint("cut ", cut), func(t *testing.T) {
			t.Parallel()
			head := newFold()
			head.apply(full.log[:cut]...)
			tail := &fold{State: decode(t, encode(t, head.State)), seq: uint64(cut)}
			tail.apply(full.log[cut:]...)
			compareStates(t, full.State, tail.State)
			if !bytes.Equal(encode(t, tail.State), encode(t, full.State)) {
				t.Error("encodings differ")
			}
		})
	}
}

func TestDecodeStateTruncated(t *testing.T) {
	t.Parallel()
	// Every decode makes a 1 MiB read buffer, so not every prefix of a big encoding is
	// tried: the header and body are sampled with a stride, and the last bytes are all
	// tried.
	tests := []struct {
		name                   string
		enc                    []byte
		headStride, bodyStride int
		tail                   int
	}{
		{"empty state", encode(t, newFold().State), 7, 1, 64},
		{"small state", encode(t, richFold(t, 60).State), 31, 3, 256},
		{"10k keys", encode(t, richFold(t, 10000).State), 1009, 9973, 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n, k := binary.Uvarint(tt.enc)
			headEnd := k + int(n)
			for cut := range len(tt.enc) {
				switch {
				case cut <= k+1, cut >= len(tt.enc)-tt.tail, cut == headEnd, cut == headEnd+1:
				case cut < headEnd && cut%tt.headStride != 0:
					continue
				case cut > headEnd && cut%tt.bodyStride != 0:
					continue
				}
				s, err := domain.DecodeState(bytes.NewReader(tt.enc[:cut]))
				if err == nil || s != nil {
					t.Fatalf("prefix of %d/%d bytes decoded: %v", cut, len(tt.enc), err)
				}
			}
		})
	}
}

// splitEncoding returns the header of an encoding as a JSON object and the rest.
func splitEncoding(t testing.TB, enc []byte) (map[string]any, []byte) {
	t.Helper()
	n, k := binary.Uvarint(enc)
	dec := json.NewDecoder(bytes.NewReader(enc[k : k+int(n)]))
	dec.UseNumber()
	var h map[string]any
	if err := dec.Decode(&h); err != nil {
		t.Fatal(err)
	}
	return h, enc[k+int(n):]
}

// joinEncoding puts a header (marshaled to JSON unless it is a string) before body.
func joinEncoding(t testing.TB, header any, body []byte) []byte {
	t.Helper()
	head, ok := header.(string)
	if !ok {
		b, err := json.Marshal(header)
		if err != nil {
			t.Fatal(err)
		}
		head = string(b)
	}
	out := binary.AppendUvarint(nil, uint64(len(head)))
	out = append(out, head...)
	return append(out, body...)
}

// rec is one key record of the encoding, written by hand to build corrupt ones.
type rec struct {
	id, vlen                   uint64
	hash                       domain.KeyHash
	status                     byte
	fc                         uint64
	created, updated, cooldown int64
	notes, lastError           string
	// When set, rawAfterStatus replaces everything after the status byte, and rawNotesLen
	// the notes length and everything after it.
	rawAfterStatus, rawNotesLen []byte
}

func (r rec) bytes() []byte {
	b := binary.AppendUvarint(nil, r.id)
	b = binary.AppendUvarint(b, r.vlen)
	b = append(b, r.hash[:]...)
	b = append(b, r.status)
	if r.rawAfterStatus != nil {
		return append(b, r.rawAfterStatus...)
	}
	b = binary.AppendUvarint(b, r.fc)
	b = binary.AppendVarint(b, r.created)
	b = binary.AppendVarint(b, r.updated)
	b = binary.AppendVarint(b, r.cooldown)
	if r.rawNotesLen != nil {
		return append(b, r.rawNotesLen...)
	}
	b = binary.AppendUvarint(b, uint64(len(r.notes)))
	b = append(b, r.notes...)
	b = binary.AppendUvarint(b, uint64(len(r.lastError)))
	return append(b, r.lastError...)
}

func okRec(id uint64, value string) rec {
	return rec{id: id, vlen: uint64(len(value)), hash: hashOf(value), status: 1, created: 5, updated: 6}
}

// oneGroupHeader is the header of a state with one group (id 1) whose key set is given.
func oneGroupHeader(t testing.TB, keys, valueBytes any) map[string]any {
	t.Helper()
	f := newFold()
	f.create(t, stdBody("a", "openai"))
	f.addKeys(1, "k1", "k2")
	h, _ := splitEncoding(t, encode(t, f.State))
	h["key_sets"] = []any{map[string]any{"group_id": 1, "keys": keys, "value_bytes": valueBytes}}
	return h
}

func records(values string, rs ...rec) []byte {
	b := []byte(values)
	for _, r := range rs {
		b = append(b, r.bytes()...)
	}
	return b
}

func TestDecodeStateHandMade(t *testing.T) {
	t.Parallel()
	// The hand-made records follow the real format: a valid one decodes.
	r1 := okRec(1, "k1")
	r1.fc, r1.cooldown, r1.notes, r1.lastError, r1.status = 3, 99, "n", "e", 2
	enc := joinEncoding(t, oneGroupHeader(t, 2, 4), records("k1k2", r1, okRec(2, "k2")))
	s := decode(t, enc)
	k, ok := s.Key(1)
	want := domain.Key{ID: 1, GroupID: 1, Value: "k1", Hash: hashOf("k1"), Status: domain.KeyInvalid, FailureCount: 3, CreatedAt: 5, UpdatedAt: 6, CooldownUntil: 99, Notes: "n", LastError: "e"}
	if !ok || *k != want {
		t.Fatalf("Key(1) = %+v, %v", k, ok)
	}
	if ks := s.Keys(1); ks.Len() != 2 || ks.Invalid() != 1 {
		t.Fatalf("counts %d/%d", ks.Len(), ks.Invalid())
	}
}

func TestDecodeStateCorrupt(t *testing.T) {
	t.Parallel()
	valid := encode(t, richFold(t, 20).State)
	withHeader := func(change func(h map[string]any)) func(t testing.TB) []byte {
		return func(t testing.TB) []byte {
			h, body := splitEncoding(t, valid)
			change(h)
			return joinEncoding(t, h, body)
		}
	}
	handMade := func(keys, valueBytes any, values string, rs ...rec) func(t testing.TB) []byte {
		return func(t testing.TB) []byte {
			return joinEncoding(t, oneGroupHeader(t, keys, valueBytes), records(values, rs...))
		}
	}
	raw := func(b []byte) func(testing.TB) []byte { return func(testing.TB) []byte { return b } }
	bad := func(mod func(r *rec)) rec {
		r := okRec(1, "k1")
		mod(&r)
		return r
	}
	tests := []struct {
		name  string
		build func(t testing.TB) []byte
	}{
		{"empty input", raw(nil)},
		{"header length overflows", raw([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})},
		{"header length above 1 GiB", raw(binary.AppendUvarint(nil, 1<<30+1))},
		{"header of 1 GiB missing", raw(binary.AppendUvarint(nil, 1<<30))},
		{"header longer than the input", raw(append(binary.AppendUvarint(nil, 100), "{}"...))},
		{"header not JSON", func(t testing.TB) []byte { return joinEncoding(t, "{not json", nil) }},
		{"header an array", func(t testing.TB) []byte { return joinEncoding(t, "[]", nil) }},
		{"header null", func(t testing.TB) []byte { return joinEncoding(t, "null", nil) }},
		{"format 0", withHeader(func(h map[string]any) { h["format"] = 0 })},
		{"format from the future", withHeader(func(h map[string]any) { h["format"] = domain.StateFormat + 1 })},
		{"null group", withHeader(func(h map[string]any) { h["groups"] = append(h["groups"].([]any), nil) })},
		{"group of the wrong type", withHeader(func(h map[string]any) { h["groups"] = []any{"x"} })},
		{"key set of an unknown group", withHeader(func(h map[string]any) {
			h["key_sets"].([]any)[0].(map[string]any)["group_id"] = 42
		})},
		{"key set of a group no longer listed", withHeader(func(h map[string]any) { h["groups"] = []any{} })},
		{"negative key count", withHeader(func(h map[string]any) { h["key_sets"].([]any)[0].(map[string]any)["keys"] = -1 })},
		{"negative value bytes", withHeader(func(h map[string]any) { h["key_sets"].([]any)[0].(map[string]any)["value_bytes"] = -1 })},
		{"huge value bytes", withHeader(func(h map[string]any) { h["key_sets"].([]any)[0].(map[string]any)["value_bytes"] = int64(1) << 62 })},
		{"value bytes beyond the input", withHeader(func(h map[string]any) { h["key_sets"].([]any)[0].(map[string]any)["value_bytes"] = 1 << 20 })},
		{"huge key count", withHeader(func(h map[string]any) { h["key_sets"].([]any)[0].(map[string]any)["keys"] = int64(1) << 60 })},
		{"one key more than written", handMade(3, 4, "k1k2", okRec(1, "k1"), okRec(2, "k2"))},
		{"value bytes left over", handMade(2, 5, "k1k2x", okRec(1, "k1"), okRec(2, "k2"))},
		{"value beyond the block", handMade(1, 2, "k1", bad(func(r *rec) { r.vlen = 3 }))},
		{"huge value length", handMade(1, 2, "k1", bad(func(r *rec) { r.vlen = 1 << 63 }))},
		{"largest value length", handMade(1, 2, "k1", bad(func(r *rec) { r.vlen = 1<<64 - 1 }))},
		{"status 0", handMade(1, 2, "k1", bad(func(r *rec) { r.status = 0 }))},
		{"status 3", handMade(1, 2, "k1", bad(func(r *rec) { r.status = 3 }))},
		{"id 0", handMade(1, 2, "k1", bad(func(r *rec) { r.id = 0 }))},
		{"ids not ascending", handMade(2, 4, "k1k2", okRec(2, "k1"), okRec(1, "k2"))},
		{"same id twice", handMade(2, 4, "k1k2", okRec(1, "k1"), okRec(1, "k2"))},
		{"same hash twice", handMade(2, 4, "k1k1", okRec(1, "k1"), okRec(2, "k1"))},
		{"notes longer than 1 MiB", handMade(1, 2, "k1", bad(func(r *rec) { r.rawNotesLen = binary.AppendUvarint(nil, 1<<20+1) }))},
		{"notes beyond the input", handMade(1, 2, "k1", bad(func(r *rec) { r.rawNotesLen = binary.AppendUvarint(nil, 50) }))},
		{"failure count overflows", handMade(1, 2, "k1", bad(func(r *rec) {
			r.rawAfterStatus = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}
		}))},
		{"no key data", handMade(1, 2, "k1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := tt.build(t)
			s, err := decodeNoPanic(t, b)
			if err == nil || s != nil {
				t.Fatalf("decoded: %v", err)
			}
		})
	}
}

// decodeNoPanic decodes b, failing the test (not the whole run) on a panic.
func decodeNoPanic(t testing.TB, b []byte) (s *domain.State, err error) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("DecodeState panicked: %v", p)
		}
	}()
	return domain.DecodeState(bytes.NewReader(b))
}

// TestDecodeStateBoundedMemory is not parallel: it measures the bytes allocated while it
// runs.
func TestDecodeStateBoundedMemory(t *testing.T) {
	valid := encode(t, richFold(t, 20).State)
	h, body := splitEncoding(t, valid)
	set := h["key_sets"].([]any)[0].(map[string]any)
	inputs := map[string][]byte{
		"header of 1 GiB announced": binary.AppendUvarint(nil, 1<<30),
	}
	set["value_bytes"] = int64(1) << 40
	inputs["value block of 1 TiB announced"] = joinEncoding(t, h, body)
	set["value_bytes"] = json.Number("10")
	set["keys"] = int64(1) << 40
	inputs["2^40 keys announced"] = joinEncoding(t, h, body)
	for name, b := range inputs {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if s, err := decodeNoPanic(t, b); err == nil || s != nil {
			t.Errorf("%s: decoded", name)
		}
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > 32<<20 {
			t.Errorf("%s: %d MiB allocated to decode %d bytes", name, n>>20, len(b))
		}
	}
}

func FuzzDecodeState(f *testing.F) {
	f.Add(encode(f, newFold().State))
	f.Add(encode(f, richFold(f, 30).State))
	small := newFold()
	small.create(f, aggBody("agg", "gemini"))
	small.create(f, stdBody("s", "gemini"))
	small.link(1, 2)
	small.addKeys(2, "k1", "k2", "k3")
	small.fail(f, 2, "k2")
	small.apply(domain.KeyNoteChanged{GroupID: 2, KeyID: 1, Notes: "n"})
	f.Add(encode(f, small.State))
	// DecodeState and Encode take the 1 MiB buffers they want from a reader or writer that
	// has them already: reusing these keeps executions cheap (they run one at a time).
	br := bufio.NewReaderSize(nil, 1<<20)
	var buf bytes.Buffer
	bw := bufio.NewWriterSize(&buf, 1<<20)
	f.Fuzz(func(t *testing.T, data []byte) {
		br.Reset(bytes.NewReader(data))
		s, err := domain.DecodeState(br)
		if err != nil {
			if s != nil {
				t.Fatal("a state with an error")
			}
			return
		}
		// A state that decodes is usable: it reads, takes new facts and encodes again.
		for _, g := range s.Groups() {
			s.GroupByName(g.Name)
			s.ParentsOf(g.ID)
			s.Effective(g)
			s.Version(domain.Aggregate{Kind: domain.AggKeys, GroupID: g.ID})
			if ks := s.Keys(g.ID); ks != nil {
				_ = ks.Len() + ks.Active() + ks.Invalid()
				ks.Each(func(k *domain.Key) bool {
					ks.ByHash(k.Hash)
					s.Key(k.ID)
					return true
				})
			}
		}
		buf.Reset()
		bw.Reset(&buf)
		if err := s.Encode(bw); err != nil {
			t.Fatalf("a decoded state does not encode: %v", err)
		}
		br.Reset(bytes.NewReader(buf.Bytes()))
		if _, err := domain.DecodeState(br); err != nil {
			t.Fatalf("a decoded state encodes to something that does not decode: %v", err)
		}
		if fact, err := domain.DecideCreateGroup(s, gin(t, stdBody("fuzz-new", "openai"))); err == nil {
			s.Apply(fact, domain.Meta{Seq: s.Seq + 1})
			s.Apply(domain.KeysAdded{GroupID: fact.Group.ID, Keys: newKeys("fuzz-key")}, domain.Meta{Seq: s.Seq + 1})
		}
		for _, g := range s.Groups() {
			s.Apply(domain.KeyFailed{GroupID: g.ID, KeyID: 1, Kind: domain.FailureAuth}, domain.Meta{Seq: s.Seq + 1})
			s.Apply(domain.KeysRestored{GroupID: g.ID, AllInvalid: true}, domain.Meta{Seq: s.Seq + 1})
			s.Apply(domain.GroupDeleted{GroupID: g.ID}, domain.Meta{Seq: s.Seq + 1})
		}
	})
}

func TestTrimKeepsTheState(t *testing.T) {
	t.Parallel()
	f := newFold()
	g := f.create(t, stdBody("trim", "openai"))
	var values []string
	for i := 0; i < 3000; i++ {
		values = append(values, fmt.Sprintf("sk-trim-%04d", i))
	}
	f.addKeys(g.ID, values...)
	var gone []uint64
	for id := uint64(1); id <= 3000; id += 3 {
		gone = append(gone, id)
	}
	f.apply(domain.KeysRemoved{GroupID: g.ID, KeyIDs: gone})
	var before bytes.Buffer
	if err := f.Encode(&before); err != nil {
		t.Fatal(err)
	}
	f.Trim()
	var after bytes.Buffer
	if err := f.Encode(&after); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before.Bytes(), after.Bytes()) {
		t.Fatal("Trim changed the state")
	}
	checkKeySet(t, f.State, g.ID)
	if k, ok := f.Keys(g.ID).ByHash(hashOf("sk-trim-2999")); !ok || k.Value != "sk-trim-2999" {
		t.Fatalf("lookup after Trim: %+v %v", k, ok)
	}
}
