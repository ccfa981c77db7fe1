package events_test

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	"gpt-load/events"
)

func TestCipherHashAndRoundTrip(t *testing.T) {
	t.Parallel()
	plain := events.NewCipherMust(t, "")
	sum := sha256.Sum256([]byte("sk-abc"))
	if got := plain.Hash("sk-abc").String(); got != hex.EncodeToString(sum[:]) {
		t.Fatalf("hash without encryption = %s, want SHA-256", got)
	}
	if v, _ := plain.Encrypt("sk-abc"); v != "sk-abc" {
		t.Fatalf("disabled cipher changed the value: %q", v)
	}

	c := events.NewCipherMust(t, "fixture-encryption-key-7Qm2Lx9Vp4")
	if c.Hash("sk-abc") == plain.Hash("sk-abc") {
		t.Fatal("keyed hash equals the plain SHA-256")
	}
	if c.Hash("sk-abc") != events.NewCipherMust(t, "fixture-encryption-key-7Qm2Lx9Vp4").Hash("sk-abc") {
		t.Fatal("keyed hash is not stable across instances")
	}
	a, _ := c.Encrypt("sk-abc")
	b, _ := c.Encrypt("sk-abc")
	if a == b || strings.Contains(a, "sk-abc") {
		t.Fatalf("ciphertexts must differ per write and hide the value: %q %q", a, b)
	}
	if got, err := c.Decrypt(a); err != nil || got != "sk-abc" {
		t.Fatalf("Decrypt = %q, %v", got, err)
	}
	other := events.NewCipherMust(t, "another-key")
	if _, err := other.Decrypt(a); !errors.Is(err, events.ErrDecrypt) {
		t.Fatalf("decrypt with another key: %v, want ErrDecrypt", err)
	}
	if _, err := c.Decrypt("zz-not-hex"); !errors.Is(err, events.ErrDecrypt) {
		t.Fatalf("decrypt garbage: %v, want ErrDecrypt", err)
	}
}

// TestCipherReadsGPTLoadData checks our key derivation, ciphertext format and keyed hash
// against a database written by gpt-load 1.x with a known ENCRYPTION_KEY (the fixture's
// copy under projections/gptload/testdata).
func TestCipherReadsGPTLoadData(t *testing.T) {
	t.Parallel()
	path := filepath.Join("..", "projections", "gptload", "testdata", "gpt-load-1x", "encrypted.db")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("gpt-load fixture: %v", err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&immutable=1")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT key_value, key_hash FROM api_keys")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	c := events.NewCipherMust(t, "fixture-encryption-key-7Qm2Lx9Vp4")
	n := 0
	for rows.Next() {
		var stored, hash string
		if err := rows.Scan(&stored, &hash); err != nil {
			t.Fatal(err)
		}
		plain, err := c.Decrypt(stored)
		if err != nil {
			t.Fatalf("gpt-load ciphertext %q: %v", stored[:16], err)
		}
		if !strings.HasPrefix(plain, "sk-fixture-") {
			t.Fatalf("decrypted %q, want a fixture key", plain)
		}
		if got := c.Hash(plain).String(); got != hash {
			t.Fatalf("hash of %s = %s, gpt-load stored %s", plain, got, hash)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("fixture has no keys")
	}
}

func TestSealedStream(t *testing.T) {
	t.Parallel()
	c := events.NewCipherMust(t, "snapshot-sealing-key-0123456789")
	for _, size := range []int{0, 1, 1 << 20, 3<<20 + 17} {
		payload := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
		var buf bytes.Buffer
		w, err := c.SealWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(payload)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if size > 64 && bytes.Contains(buf.Bytes(), payload[:64]) {
			t.Fatalf("size %d: sealed stream shows plaintext", size)
		}
		r, err := c.OpenReader(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("size %d: round trip failed: %v", size, err)
		}
		if size >= 1<<20 {
			// Cutting off the last chunk must not look like a clean end.
			cut := buf.Bytes()[:buf.Len()-100]
			r, _ := c.OpenReader(bytes.NewReader(cut))
			if _, err := io.ReadAll(r); err == nil {
				t.Fatalf("size %d: truncated stream read without error", size)
			}
		}
	}
}
