package events_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/events/eventstest"
)

// Payloads of schema 1 of the import events, as the log holds them. They are never
// rewritten: a change of these types that cannot read them is a new schema version.
const (
	recordedGroupImported = `{"group":{"id":6,"name":"openai-pool","display_name":"OpenAI Pool (aggregate)","description":"Fixture","group_type":"aggregate","channel_type":"openai","upstreams":[],"sort":0,"test_model":"-","validation_endpoint":"","model_redirect_rules":{},"model_redirect_strict":false,"config":{"max_retries":1},"header_rules":[],"proxy_keys":"sk-fixture-proxy-pool-1","sub_groups":[{"group_id":1,"weight":70},{"group_id":2,"weight":30}],"last_validated_at":"0001-01-01T00:00:00Z","created_at":"2026-11-25T21:20:49.305156836Z","updated_at":"2026-11-25T21:21:10Z"},"source":"gpt-load 1.x"}`
	recordedKeysImported  = `{"group_id":1,"keys":[{"id":18,"value":"sk-fixture-openai-0018","hash":"0f2ba1c6f0c5d3c1b6bb0b5d1b0e8d0c4c8a4b6b1f2e3d4c5b6a79808182838a","status":"invalid","notes":"revoked upstream (fixture)","failure_count":2,"created_at":1795641650000000000,"updated_at":1795641660500000000},{"id":0,"value":"sk-new","hash":"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f","status":"active"}],"source":"gpt-load 1.x"}`
)

// TestImportEventsRecordedPayloads reads recorded schema-1 payloads of group.imported and
// keys.imported back into the facts they were written from.
func TestImportEventsRecordedPayloads(t *testing.T) {
	t.Parallel()
	js := eventstest.RunServer(t, "").JetStream(t)
	st := openStore(t, js, events.StoreConfig{})
	ctx := context.Background()
	for _, m := range []struct{ subj, typ, body string }{
		{"gl.groups.group_imported", "group.imported", recordedGroupImported},
		{"gl.keys.1.keys_imported", "keys.imported", recordedKeysImported},
	} {
		msg := nats.NewMsg(m.subj)
		msg.Data = []byte(m.body)
		msg.Header.Set(nats.MsgIdHdr, "rec-"+m.typ)
		msg.Header.Set("Gl-Type", m.typ)
		msg.Header.Set("Gl-Schema", "1")
		msg.Header.Set("Gl-Time", "2026-12-01T22:00:00Z")
		msg.Header.Set("Gl-Node", "n0")
		msg.Header.Set("Gl-Actor", "admin")
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	evs := follow(t, st, 0)
	if len(evs) != 2 {
		t.Fatalf("%d events, want 2", len(evs))
	}
	g := evs[0].Fact.(domain.GroupImported)
	created := time.Date(2026, 11, 25, 21, 20, 49, 305156836, time.UTC)
	if g.Source != "gpt-load 1.x" || g.Group.ID != 6 || g.Group.Type != domain.GroupAggregate || g.Group.ProxyKeys != "sk-fixture-proxy-pool-1" ||
		len(g.Group.SubGroups) != 2 || g.Group.SubGroups[1] != (domain.SubGroup{GroupID: 2, Weight: 30}) ||
		g.Group.Config.MaxRetries == nil || *g.Group.Config.MaxRetries != 1 || !g.Group.CreatedAt.Equal(created) {
		t.Errorf("group.imported read as %+v", g)
	}
	k := evs[1].Fact.(domain.KeysImported)
	if k.GroupID != 1 || len(k.Keys) != 2 {
		t.Fatalf("keys.imported read as %+v", k)
	}
	k0 := k.Keys[0]
	if k0.ID != 18 || k0.Value != "sk-fixture-openai-0018" || k0.Status != "invalid" || k0.Notes != "revoked upstream (fixture)" ||
		k0.FailureCount != 2 || k0.UpdatedAt != time.Date(2026, 11, 25, 21, 21, 0, 5e8, time.UTC).UnixNano() ||
		k0.Hash.String() != "0f2ba1c6f0c5d3c1b6bb0b5d1b0e8d0c4c8a4b6b1f2e3d4c5b6a79808182838a" {
		t.Errorf("first key read as %+v", k0)
	}
	if k1 := k.Keys[1]; k1.ID != 0 || k1.CreatedAt != 0 || k1.Notes != "" || k1.FailureCount != 0 {
		t.Errorf("second key read as %+v", k1)
	}
	// Written again, the facts give the same payloads.
	for i, want := range []string{recordedGroupImported, recordedKeysImported} {
		got, _ := json.Marshal(evs[i].Fact)
		if !bytes.Equal(got, []byte(want)) {
			t.Errorf("re-encoded payload %d:\n%s\nwant\n%s", i, got, want)
		}
	}
}

// TestImportEventsSealed: with ENCRYPTION_KEY, the key values and the group's secrets of
// import events rest sealed in the log and read back whole.
func TestImportEventsSealed(t *testing.T) {
	t.Parallel()
	js := eventstest.RunServer(t, "").JetStream(t)
	c := events.NewCipherMust(t, "a-long-and-proper-encryption-key")
	st := openStore(t, js, events.StoreConfig{Cipher: c})
	ctx := context.Background()
	g := group(3, "imported")
	g.ProxyKeys = "sk-imported-proxy"
	facts := []domain.Fact{
		domain.GroupImported{Group: g, Source: domain.ImportSource},
		domain.KeysImported{GroupID: 3, Keys: []domain.ImportedKey{{ID: 9, Value: "sk-imported-upstream", Hash: c.Hash("sk-imported-upstream"), Status: "active"}}},
	}
	for _, f := range facts {
		last, err := st.LastSeq(ctx, domain.AggregateOf(f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Append(ctx, events.ActorAdmin, last, f); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := js.Stream(ctx, events.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 2; seq++ {
		msg, err := raw.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"sk-imported-proxy", "sk-imported-upstream"} {
			if bytes.Contains(msg.Data, []byte(s)) {
				t.Errorf("event %d holds %q in clear", seq, s)
			}
		}
	}
	evs := follow(t, st, 0)
	if got := evs[1].Fact.(domain.KeysImported).Keys[0].Value; got != "sk-imported-upstream" {
		t.Errorf("key reads back as %q", got)
	}
	if got := evs[0].Fact.(domain.GroupImported).Group.ProxyKeys; got != "sk-imported-proxy" {
		t.Errorf("proxy keys read back as %q", got)
	}
}
