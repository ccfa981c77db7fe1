package domain_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"testing"
	"time"

	"gpt-load/domain"
)

func secretOf(s string) domain.ProxyKeySecret {
	return domain.ProxyKeySecret{Hash: hashOf(s), Masked: domain.MaskKey(s)}
}

func pkInput(t *testing.T, body string) domain.ProxyKeyInput {
	t.Helper()
	var in domain.ProxyKeyInput
	if err := json.Unmarshal([]byte(body), &in); err != nil {
		t.Fatal(err)
	}
	return in
}

func TestDecideProxyKeys(t *testing.T) {
	t.Parallel()
	f := newFold()
	a := f.create(t, stdBody("a", "openai"))
	b := f.create(t, stdBody("b", "openai"))

	// Bad input names each field; nothing is decided.
	for body, fields := range map[string][]string{
		`{}`:                    {"name"},
		`{"name":"  "}`:         {"name"},
		`{"name":"k","rpm":-1}`: {"rpm"},
		`{"name":"k","tpm":-1,"daily_tokens":-1,"monthly_tokens":1125899906842625}`: {"tpm", "daily_tokens", "monthly_tokens"},
		`{"name":"k","groups":["a","zz"]}`:                                          {"groups"},
		`{"name":"k","groups":"a"}`:                                                 {"groups"},
		`{"name":"k","expires_at":"2026-13-01"}`:                                    {"expires_at"},
		`{"name":"k","expires_at":5}`:                                               {"expires_at"},
	} {
		_, err := domain.DecideCreateProxyKey(f.State, pkInput(t, body), secretOf("s"))
		wantCode(t, err, domain.EINVALID)
		wantFields(t, err, fields...)
	}

	// Ids come from the log's counter; groups are kept by id, sorted, without repeats.
	c, err := domain.DecideCreateProxyKey(f.State, pkInput(t, `{"name":"team","groups":["b","a","b"],"expires_at":"2027-01-01T00:00:00+08:00","rpm":10}`), secretOf("s1"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Key.ID != 1 || !c.Key.Enabled || len(c.Key.GroupIDs) != 2 || c.Key.GroupIDs[0] != a.ID || c.Key.GroupIDs[1] != b.ID ||
		!c.Key.ExpiresAt.Equal(time.Date(2026, 12, 31, 16, 0, 0, 0, time.UTC)) || c.Key.Hash != hashOf("s1") {
		t.Fatalf("created %+v", c.Key)
	}
	f.apply(c)
	if _, err := domain.DecideCreateProxyKey(f.State, pkInput(t, `{"name":"team"}`), secretOf("s2")); domain.ErrorCode(err) != domain.EDUPLICATE {
		t.Fatalf("a taken name: %v", err)
	}
	c2, _ := domain.DecideCreateProxyKey(f.State, pkInput(t, `{"name":"other"}`), secretOf("s2"))
	if c2.Key.ID != 2 {
		t.Fatalf("second id %d", c2.Key.ID)
	}

	// A renamed group keeps its keys' access: they hold its id.
	f.apply(domain.GroupUpdated{Group: func() domain.Group { g := *a; g.Name = "a2"; return g }(), Changed: []string{"name"}})
	k, _ := f.ProxyKey(1)
	if !k.MayUse(a.ID) || !k.MayUse(b.ID) || k.MayUse(99) {
		t.Fatalf("groups after a rename: %v", k.GroupIDs)
	}

	// A partial update lists what changed and keeps the secret.
	u, err := domain.DecideUpdateProxyKey(f.State, 1, pkInput(t, `{"enabled":false,"groups":null,"rpm":10,"notes":"x"}`))
	if err != nil || len(u.Changed) != 3 || u.Changed[0] != "groups" || u.Changed[1] != "enabled" || u.Changed[2] != "notes" {
		t.Fatalf("update: %+v %v", u, err)
	}
	f.apply(u)
	k, _ = f.ProxyKey(1)
	if k.Enabled || len(k.GroupIDs) != 0 || !k.MayUse(12345) || k.Hash != hashOf("s1") || k.CreatedAt.Equal(k.UpdatedAt) {
		t.Fatalf("updated %+v", k)
	}
	if _, err := domain.DecideUpdateProxyKey(f.State, 9, pkInput(t, `{}`)); domain.ErrorCode(err) != domain.ENOTFOUND {
		t.Fatalf("update of a missing key: %v", err)
	}

	// Rotation changes only the secret; deletion frees the name.
	r, _ := domain.DecideRotateProxyKey(f.State, 1, secretOf("s3"))
	f.apply(r)
	k, _ = f.ProxyKey(1)
	if k.Hash != hashOf("s3") || k.Name != "team" || k.RotatedAt.IsZero() {
		t.Fatalf("rotated %+v", k)
	}
	d, err := domain.DecideDeleteProxyKey(f.State, 1)
	if err != nil {
		t.Fatal(err)
	}
	f.apply(d)
	if _, ok := f.ProxyKey(1); ok {
		t.Fatal("deleted key still there")
	}
	if _, err := domain.DecideCreateProxyKey(f.State, pkInput(t, `{"name":"team"}`), secretOf("s4")); err != nil {
		t.Fatalf("the name of a deleted key: %v", err)
	}
	if v := f.Version(domain.Aggregate{Kind: domain.AggProxyKeys}); v != f.seq {
		t.Errorf("proxy-key version %d, want %d", v, f.seq)
	}
}

// TestDecodeStateWithoutProxyKeys: a snapshot written before named proxy keys existed has
// no such fields in its header; it decodes, and ids start at 1.
func TestDecodeStateWithoutProxyKeys(t *testing.T) {
	t.Parallel()
	head := []byte(`{"format":2,"seq":3,"settings":{},"settings_seeded":true,"groups":[],"ranges":null,"next_group_id":1,"next_key_id":1,"settings_ver":1,"groups_ver":0,"keys_ver":{},"key_sets":[]}`)
	enc := binary.AppendUvarint(nil, uint64(len(head)))
	enc = append(enc, head...)
	s, err := domain.DecodeState(bytes.NewReader(enc))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.ProxyKeys()) != 0 {
		t.Fatal("proxy keys from nowhere")
	}
	c, err := domain.DecideCreateProxyKey(s, pkInput(t, `{"name":"first"}`), secretOf("x"))
	if err != nil || c.Key.ID != 1 {
		t.Fatalf("first key after an old snapshot: %+v %v", c.Key, err)
	}
}
