package events_test

import (
	"bytes"
	"io"
	"os"
	"testing"
	"time"

	"gpt-load/events"
)

func TestSnapshotsRoundTrip(t *testing.T) {
	t.Parallel()
	for name, password := range map[string]string{"plain": "", "encrypted": "snapshot-key-for-tests-000001"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := events.NewCipherMust(t, password)
			s := events.NewSnapshots(t.TempDir(), c)
			if _, err := s.Load(func(events.SnapshotInfo, io.Reader) error { return nil }); err != events.ErrNoSnapshot {
				t.Fatalf("empty dir: %v, want ErrNoSnapshot", err)
			}
			body := bytes.Repeat([]byte("sk-secret-value;"), 100_000)
			created := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
			err := s.Save(events.SnapshotInfo{Seq: 42, StreamCreated: created}, func(w io.Writer) error {
				_, err := w.Write(body)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := os.ReadFile(s.Path())
			if password != "" && bytes.Contains(raw, []byte("sk-secret-value")) {
				t.Fatal("encrypted snapshot shows key values")
			}
			var got []byte
			info, err := s.Load(func(info events.SnapshotInfo, r io.Reader) error {
				var err error
				got, err = io.ReadAll(r)
				return err
			})
			if err != nil || info.Seq != 42 || !info.StreamCreated.Equal(created) || !bytes.Equal(got, body) {
				t.Fatalf("Load = %+v, %v (body equal %v)", info, err, bytes.Equal(got, body))
			}

			// Any flipped byte in the body is detected.
			raw[len(raw)/2] ^= 0xff
			os.WriteFile(s.Path(), raw, 0o600)
			if _, err := s.Load(func(_ events.SnapshotInfo, r io.Reader) error { _, err := io.ReadAll(r); return err }); err == nil {
				t.Fatal("corrupt snapshot loaded without error")
			}
			// A truncated file too.
			os.WriteFile(s.Path(), raw[:len(raw)-9], 0o600)
			if _, err := s.Load(func(_ events.SnapshotInfo, r io.Reader) error { _, err := io.ReadAll(r); return err }); err == nil {
				t.Fatal("truncated snapshot loaded without error")
			}
		})
	}
}

func TestSnapshotEncryptionMismatch(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := events.NewSnapshots(dir, events.NewCipherMust(t, "key-one-for-snapshot-tests"))
	if err := s.Save(events.SnapshotInfo{Seq: 1}, func(w io.Writer) error { _, err := w.Write([]byte("x")); return err }); err != nil {
		t.Fatal(err)
	}
	for _, other := range []string{"", "key-two-for-snapshot-tests"} {
		s2 := events.NewSnapshots(dir, events.NewCipherMust(t, other))
		if _, err := s2.Load(func(_ events.SnapshotInfo, r io.Reader) error { _, err := io.ReadAll(r); return err }); err == nil {
			t.Fatalf("snapshot opened with key %q", other)
		}
	}
}
