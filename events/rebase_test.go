package events_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/events/eventstest"
)

// Every sealed value names its key; a value, event or snapshot sealed with another key is
// refused with both key ids named, never opened into garbage.
func TestKeyIDs(t *testing.T) {
	t.Parallel()
	k1 := events.NewCipherMust(t, "key-ids-first-encryption-key")
	k2 := events.NewCipherMust(t, "key-ids-second-encryption-key")
	none := events.NewCipherMust(t, "")
	if len(k1.KeyID()) != 8 || k1.KeyID() == k2.KeyID() || none.KeyID() != "" {
		t.Fatalf("key ids %q %q %q", k1.KeyID(), k2.KeyID(), none.KeyID())
	}
	if k1.KeyID() != events.NewCipherMust(t, "key-ids-first-encryption-key").KeyID() {
		t.Fatal("the key id is not stable")
	}
	sealed, _ := k1.Encrypt("sk-key-ids-value")
	if !strings.HasPrefix(sealed, "gl1:"+k1.KeyID()+":") {
		t.Fatalf("sealed value %q does not name its key", sealed)
	}
	if id, ok := events.SealedKeyID(sealed); !ok || id != k1.KeyID() {
		t.Fatalf("SealedKeyID = %q %v", id, ok)
	}
	for _, clear := range []string{"sk-key-ids-value", "gl1:zz:00", "gl1:" + k1.KeyID() + ":beef"} {
		if _, ok := events.SealedKeyID(clear); ok {
			t.Errorf("%q taken for a sealed value", clear)
		}
	}
	_, err := k2.Decrypt(sealed)
	var mm *events.KeyMismatchError
	if !errors.As(err, &mm) || !errors.Is(err, events.ErrDecrypt) || !strings.Contains(err.Error(), k1.KeyID()) || !strings.Contains(err.Error(), k2.KeyID()) {
		t.Fatalf("decrypt with another key: %v, want both key ids named", err)
	}
	if _, err := none.Decrypt(sealed); !errors.As(err, &mm) || !strings.Contains(err.Error(), "not set") {
		t.Fatalf("decrypt without a key: %v", err)
	}
	// gpt-load's format, bare hex, still opens (imports).
	raw, _ := hex.DecodeString(sealed[len("gl1:")+9:])
	if v, err := k1.Decrypt(hex.EncodeToString(raw)); err != nil || v != "sk-key-ids-value" {
		t.Fatalf("bare hex: %q %v", v, err)
	}

	// Events: the header names the key.
	srv := eventstest.RunServer(t, "")
	js := srv.JetStream(t)
	st := openStore(t, js, events.StoreConfig{Cipher: k1})
	ctx := context.Background()
	if _, err := st.Append(ctx, events.ActorAdmin, 0, domain.KeysAdded{GroupID: 1, Keys: []domain.NewKey{{Value: "sk-key-ids-value", Hash: k1.Hash("sk-key-ids-value")}}}); err != nil {
		t.Fatal(err)
	}
	stream, _ := js.Stream(ctx, events.EventsStream)
	m, err := stream.GetMsg(ctx, 1)
	if err != nil || m.Header.Get("Gl-Key-Id") != k1.KeyID() {
		t.Fatalf("event header Gl-Key-Id = %q (%v)", m.Header.Get("Gl-Key-Id"), err)
	}
	st2 := openStore(t, js, events.StoreConfig{Cipher: k2})
	if err := st2.CheckKey(ctx); !errors.Is(err, events.ErrKeyMismatch) || !strings.Contains(err.Error(), k1.KeyID()) || !strings.Contains(err.Error(), k2.KeyID()) {
		t.Fatalf("CheckKey with another key: %v", err)
	}
	if err := st.CheckKey(ctx); err != nil {
		t.Fatalf("CheckKey with the right key: %v", err)
	}

	// Snapshots: the header names the key.
	dir := t.TempDir()
	if err := events.NewSnapshots(dir, k1).Save(events.SnapshotInfo{Seq: 1}, func(w io.Writer) error { _, err := w.Write([]byte("x")); return err }); err != nil {
		t.Fatal(err)
	}
	_, err = events.NewSnapshots(dir, k2).Load(func(events.SnapshotInfo, io.Reader) error { return nil })
	if !errors.As(err, &mm) || mm.Sealed != k1.KeyID() || mm.Configured != k2.KeyID() {
		t.Fatalf("snapshot with another key: %v", err)
	}
}

// A rebase replaces the reader's whole state once its commit is read, and not before: the
// chunks of a rebase cut short are invisible. It spans several messages when the state is
// larger than one.
func TestRebase(t *testing.T) {
	t.Parallel()
	srv := eventstest.RunServer(t, "")
	js := srv.JetStream(t)
	ctx := context.Background()
	k1 := events.NewCipherMust(t, "rebase-first-encryption-key")
	k2 := events.NewCipherMust(t, "rebase-second-encryption-key")
	st := openStore(t, js, events.StoreConfig{Cipher: k1})
	if _, err := st.Append(ctx, events.ActorAdmin, 0, domain.GroupCreated{Group: group(1, "rb")}); err != nil {
		t.Fatal(err)
	}
	// About 2 MB of keys: the rebase needs more than one message.
	keys := make([]domain.NewKey, 0, 40_000)
	for i := range cap(keys) {
		v := fmt.Sprintf("sk-rebase-%08d-%s", i, strings.Repeat("x", 24))
		keys = append(keys, domain.NewKey{Value: v, Hash: k1.Hash(v)})
	}
	for i := 0; i < len(keys); i += 2000 {
		ver, _ := st.LastSeq(ctx, domain.Aggregate{Kind: domain.AggKeys, GroupID: 1})
		if _, err := st.Append(ctx, events.ActorAdmin, ver, domain.KeysAdded{GroupID: 1, Keys: keys[i : i+2000]}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Publish(events.ActorSystem, domain.KeyFailed{GroupID: 1, KeyID: 8, Kind: domain.FailureAuth, Status: 401}); err != nil {
		t.Fatal(err)
	}
	if err := st.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	state, pos, err := st.Fold(ctx, domain.DefaultSettings())
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	state.Rekey(k2.Hash)
	state.Seq = 0
	state.Encode(&want)

	to := openStore(t, js, events.StoreConfig{Cipher: k2})
	info, err := to.StageRebase(ctx, state, pos, k1.KeyID())
	if err != nil {
		t.Fatal(err)
	}
	if info.Chunks < 2 || info.Keys != len(keys) || info.KeyID != k2.KeyID() || info.FromKeyID != k1.KeyID() {
		t.Fatalf("staged %+v", info)
	}
	if got, ok, err := events.StagedRebase(ctx, js); err != nil || !ok || got.ID != info.ID {
		t.Fatalf("StagedRebase = %+v %v %v", got, ok, err)
	}
	if pending, _ := events.MigrationPending(ctx, js); !pending {
		t.Fatal("no migration pending while one is staged")
	}
	done, err := events.RetireLog(ctx, js, info)
	if err != nil || done {
		t.Fatalf("RetireLog = %v, %v", done, err)
	}
	if _, err := js.Stream(ctx, events.EventsStream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("the old log is still there: %v", err)
	}
	to = openStore(t, js, events.StoreConfig{Cipher: k2})
	// A rebase cut short before the real one: its chunk alone must change nothing.
	cut := nats.NewMsg("gl.rebase.chunk")
	cut.Header.Set("Gl-Type", "rebase.chunk")
	cut.Header.Set("Gl-Rebase", "cut-short")
	cut.Header.Set("Gl-Chunk", "0")
	cut.Header.Set("Gl-Enc", "aes-gcm")
	cut.Header.Set("Gl-Key-Id", k2.KeyID())
	cut.Data = []byte("garbage")
	if _, err := js.PublishMsg(ctx, cut); err != nil {
		t.Fatal(err)
	}
	if err := to.CheckKey(ctx); err == nil || !strings.Contains(err.Error(), "without its commit") {
		t.Fatalf("CheckKey on a log ending in a rebase cut short: %v", err)
	}
	if err := to.CopyStagedRebase(ctx, info); err != nil {
		t.Fatal(err)
	}
	if done, err := events.RetireLog(ctx, js, info); err != nil || !done {
		t.Fatalf("RetireLog on the new log = %v, %v", done, err)
	}
	if err := to.CheckKey(ctx); err != nil {
		t.Fatalf("CheckKey on the new log: %v", err)
	}
	evs := follow(t, to, 0)
	if len(evs) != 1 || evs[0].Rebase == nil || evs[0].Fact != nil {
		t.Fatalf("followed %d events, want the one rebase", len(evs))
	}
	got, _, err := to.Fold(ctx, domain.DefaultSettings())
	if err != nil {
		t.Fatal(err)
	}
	got.Seq = 0
	var have bytes.Buffer
	got.Encode(&have)
	if !bytes.Equal(have.Bytes(), want.Bytes()) {
		t.Fatal("the state read back from the rebase differs from the one staged")
	}
	if k, ok := got.Keys(1).ByHash(k2.Hash(keys[7].Value)); !ok || k.FailureCount != 1 {
		t.Fatalf("key 8 under the new hash: %+v %v", k, ok)
	}
	// The old key cannot read the new log.
	old := openStore(t, js, events.StoreConfig{Cipher: k1})
	if _, _, err := old.Fold(ctx, domain.DefaultSettings()); err == nil || !strings.Contains(err.Error(), k2.KeyID()) {
		t.Fatalf("fold with the retired key: %v", err)
	}
	if err := events.DropStage(ctx, js); err != nil {
		t.Fatal(err)
	}
	if pending, _ := events.MigrationPending(ctx, js); pending {
		t.Fatal("a migration still pending after the stage was dropped")
	}
}
