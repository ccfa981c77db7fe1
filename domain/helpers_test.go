package domain_test

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"gpt-load/domain"
)

// t0 is the fixed clock of the fold tests: the event with sequence n happened n seconds
// after it.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// at is the time of the event with sequence seq.
func at(seq uint64) time.Time { return t0.Add(time.Duration(seq) * time.Second) }

// fold is a state together with the position of its log: apply gives every fact the next
// sequence number and the time of that sequence.
type fold struct {
	*domain.State
	seq uint64
	log []domain.Fact // every fact applied, in order: fact i has sequence i+1
}

func newFold() *fold { return &fold{State: domain.NewState(domain.DefaultSettings())} }

// apply folds the facts in order and returns what the last one touched: settings, groups,
// the keys of a group (further hints a Changes may carry are left out).
func (f *fold) apply(facts ...domain.Fact) domain.Changes {
	var ch domain.Changes
	for _, x := range facts {
		f.seq++
		f.log = append(f.log, x)
		ch = f.State.Apply(x, domain.Meta{Seq: f.seq, Time: at(f.seq), Node: "n1", Actor: "admin"})
	}
	return domain.Changes{Settings: ch.Settings, Groups: ch.Groups, Keys: ch.Keys}
}

// gin reads a group create/update body as the admin API does.
func gin(t testing.TB, body string) domain.GroupInput {
	t.Helper()
	var in domain.GroupInput
	if err := json.Unmarshal([]byte(body), &in); err != nil {
		t.Fatalf("bad test body %s: %v", body, err)
	}
	return in
}

// stdBody is the body of a valid standard group of the given channel.
func stdBody(name, channel string) string {
	return `{"name":"` + name + `","channel_type":"` + channel + `","test_model":"m","upstreams":[{"url":"https://up.example.com","weight":1}]}`
}

// aggBody is the body of a valid aggregate group of the given channel.
func aggBody(name, channel string) string {
	return `{"name":"` + name + `","group_type":"aggregate","channel_type":"` + channel + `"}`
}

// create decides a group from body and applies it; it returns the group as the state holds it.
func (f *fold) create(t testing.TB, body string) *domain.Group {
	t.Helper()
	fact, err := domain.DecideCreateGroup(f.State, gin(t, body))
	if err != nil {
		t.Fatalf("create %s: %v", body, err)
	}
	f.apply(fact)
	g, ok := f.Group(fact.Group.ID)
	if !ok {
		t.Fatalf("group %d missing after create", fact.Group.ID)
	}
	return g
}

// link applies a SubGroupsChanged that makes members (weight 1 each) the whole member list
// of aggregate agg.
func (f *fold) link(agg uint64, members ...uint64) {
	subs := make([]domain.SubGroup, len(members))
	for i, m := range members {
		subs[i] = domain.SubGroup{GroupID: m, Weight: 1}
	}
	f.apply(domain.SubGroupsChanged{GroupID: agg, SubGroups: subs})
}

// hashOf is the plain SHA-256 key hash.
func hashOf(v string) domain.KeyHash { return sha256.Sum256([]byte(v)) }

// newKeys turns key values into NewKeys with their hashes.
func newKeys(values ...string) []domain.NewKey {
	out := make([]domain.NewKey, len(values))
	for i, v := range values {
		out[i] = domain.NewKey{Value: v, Hash: hashOf(v)}
	}
	return out
}

// addKeys applies one KeysAdded of the values to group gid.
func (f *fold) addKeys(gid uint64, values ...string) {
	f.apply(domain.KeysAdded{GroupID: gid, Keys: newKeys(values...)})
}

// key finds the key of group gid with value v, failing the test when it is missing.
func (f *fold) key(t testing.TB, gid uint64, v string) domain.Key {
	t.Helper()
	ks := f.Keys(gid)
	if ks == nil {
		t.Fatalf("group %d has no key set", gid)
	}
	k, ok := ks.ByHash(hashOf(v))
	if !ok {
		t.Fatalf("key %q not in group %d", v, gid)
	}
	return *k
}

// fail applies an authentication failure of key v of group gid.
func (f *fold) fail(t testing.TB, gid uint64, v string) {
	t.Helper()
	f.apply(domain.KeyFailed{GroupID: gid, KeyID: f.key(t, gid, v).ID, Kind: domain.FailureAuth, Status: 401, Message: "bad key " + v})
}

// keyIDs lists the ids of a key set in order.
func keyIDs(ks *domain.KeySet) []uint64 {
	var ids []uint64
	ks.Each(func(k *domain.Key) bool { ids = append(ids, k.ID); return true })
	return ids
}

// checkKeySet checks that the counters of group gid's key set agree with its keys, that Each
// and EachDesc see the same keys in opposite orders (ids ascending), and that every key is
// found by hash, by id in the set and by id in the state.
func checkKeySet(t testing.TB, s *domain.State, gid uint64) {
	t.Helper()
	ks := s.Keys(gid)
	if ks == nil {
		t.Fatalf("group %d has no key set", gid)
	}
	var asc, desc []uint64
	live, active, invalid := 0, 0, 0
	ks.Each(func(k *domain.Key) bool {
		asc = append(asc, k.ID)
		live++
		switch k.Status {
		case domain.KeyActive:
			active++
		case domain.KeyInvalid:
			invalid++
		default:
			t.Errorf("key %d has status %v", k.ID, k.Status)
		}
		if k.GroupID != gid {
			t.Errorf("key %d of set %d has group %d", k.ID, gid, k.GroupID)
		}
		if got, ok := ks.ByHash(k.Hash); !ok || got.ID != k.ID {
			t.Errorf("ByHash(key %d) = %v, %v", k.ID, got, ok)
		}
		if got, ok := ks.ByID(k.ID); !ok || got.Hash != k.Hash {
			t.Errorf("ByID(%d) = %v, %v", k.ID, got, ok)
		}
		if got, ok := s.Key(k.ID); !ok || got.Hash != k.Hash || got.GroupID != gid {
			t.Errorf("State.Key(%d) = %v, %v", k.ID, got, ok)
		}
		return true
	})
	ks.EachDesc(func(k *domain.Key) bool { desc = append(desc, k.ID); return true })
	if !slices.IsSorted(asc) {
		t.Errorf("Each not in id order: %v", asc)
	}
	slices.Reverse(desc)
	if !slices.Equal(asc, desc) {
		t.Errorf("EachDesc reversed = %v, Each = %v", desc, asc)
	}
	if ks.Len() != live || ks.Active() != active || ks.Invalid() != invalid {
		t.Errorf("Len/Active/Invalid = %d/%d/%d, keys say %d/%d/%d", ks.Len(), ks.Active(), ks.Invalid(), live, active, invalid)
	}
}

// wantCode checks the domain code of err.
func wantCode(t *testing.T, err error, code domain.Code) {
	t.Helper()
	if got := domain.ErrorCode(err); got != code {
		t.Fatalf("error code = %q, want %q (err: %v)", got, code, err)
	}
	if code != "" {
		var de *domain.Error
		if !errors.As(err, &de) {
			t.Fatalf("error %v (%T) is not a *domain.Error", err, err)
		}
	}
}

// fieldNames lists the distinct fields named by err, sorted.
func fieldNames(err error) []string {
	var out []string
	for _, f := range domain.ErrorFields(err) {
		if !slices.Contains(out, f.Field) {
			out = append(out, f.Field)
		}
	}
	slices.Sort(out)
	return out
}

// wantFields checks that err is EINVALID and names exactly the given fields.
func wantFields(t *testing.T, err error, fields ...string) {
	t.Helper()
	wantCode(t, err, domain.EINVALID)
	want := slices.Clone(fields)
	slices.Sort(want)
	if got := fieldNames(err); !slices.Equal(got, want) {
		t.Fatalf("fields = %v, want %v (err: %v)", domain.ErrorFields(err), want, err)
	}
}

// jsonOf marshals v for comparisons that see what the API would show.
func jsonOf(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %T: %v", v, err)
	}
	return string(b)
}
