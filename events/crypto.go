package events

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"

	"gpt-load/domain"
)

// The key derivation of gpt-load (API.md 8.1), so that its databases and ours agree on
// hashes and ciphertexts.
const (
	kdfSalt       = "gpt-load-encryption-v1"
	kdfIterations = 100_000
)

// ErrDecrypt reports a value that does not open with the configured ENCRYPTION_KEY.
var ErrDecrypt = errors.New("cannot decrypt: ENCRYPTION_KEY differs from the one the data was written with")

// ErrKeyMismatch is what every error about data and ENCRYPTION_KEY not belonging
// together matches: a node must not start on such data.
var ErrKeyMismatch = errors.New("key mismatch")

// KeyMismatchError reports data sealed with another key than the configured one, naming
// both by their key ids. It matches ErrDecrypt and ErrKeyMismatch.
type KeyMismatchError struct {
	Sealed     string // key id of the data; empty for data written before key ids
	Configured string // key id of ENCRYPTION_KEY; empty when none is set
}

func (e *KeyMismatchError) Error() string {
	sealed := "sealed with the encryption key of id " + e.Sealed
	if e.Sealed == "" {
		sealed = "sealed with an encryption key"
	}
	if e.Configured == "" {
		return sealed + ", and ENCRYPTION_KEY is not set"
	}
	return sealed + ", but ENCRYPTION_KEY has id " + e.Configured
}

// Is makes a key mismatch an ErrDecrypt and an ErrKeyMismatch.
func (e *KeyMismatchError) Is(target error) bool {
	return target == ErrDecrypt || target == ErrKeyMismatch
}

// keyIDLabel is the fixed message whose HMAC under the derived AES key is the key id: a
// fingerprint that tells keys apart and reveals nothing of them.
const keyIDLabel = "gpt-load key id v1"

// sealedPrefix opens every value sealed by this version: "gl1:" + key id + ":" + hex of
// nonce ‖ ciphertext ‖ tag. gpt-load's own format (the bare hex) is still read.
const sealedPrefix = "gl1:"

// Cipher encrypts upstream key values and computes their identifying hash. The zero value
// of a disabled Cipher (NewCipher("")) stores values in clear and hashes with SHA-256.
type Cipher struct {
	aead    cipher.AEAD
	macKey  []byte
	macPool sync.Pool
	keyID   string
}

// NewCipher derives the AES-256 key from password; an empty password disables encryption.
func NewCipher(password string) (*Cipher, error) {
	c := &Cipher{}
	if password == "" {
		return c, nil
	}
	key, err := pbkdf2.Key(sha256.New, password, []byte(kdfSalt), kdfIterations, 32)
	if err != nil {
		return nil, fmt.Errorf("derive encryption key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	if c.aead, err = cipher.NewGCM(block); err != nil {
		return nil, err
	}
	c.macKey = key
	c.macPool.New = func() any { return hmac.New(sha256.New, key) }
	m := hmac.New(sha256.New, key)
	m.Write([]byte(keyIDLabel))
	c.keyID = hex.EncodeToString(m.Sum(nil)[:4])
	return c, nil
}

// Enabled reports whether values are encrypted.
func (c *Cipher) Enabled() bool { return c.aead != nil }

// KeyID is the fingerprint of the key (8 hex digits) that every sealed value, message and
// snapshot carries; empty when encryption is off.
func (c *Cipher) KeyID() string { return c.keyID }

// CheckKeyID returns a KeyMismatchError when data sealed with the key of id sealed cannot
// be opened by this cipher.
func (c *Cipher) CheckKeyID(sealed string) error {
	if sealed != c.keyID {
		return &KeyMismatchError{Sealed: sealed, Configured: c.keyID}
	}
	return nil
}

// SealedKeyID tells whether stored is a value sealed in our format, and with which key.
func SealedKeyID(stored string) (string, bool) {
	rest, ok := strings.CutPrefix(stored, sealedPrefix)
	if !ok {
		return "", false
	}
	id, body, ok := strings.Cut(rest, ":")
	if !ok || len(id) != 8 || !isHex(id) || !isHex(body) || len(body) < 2*(12+16) {
		return "", false
	}
	return id, true
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Hash identifies a key value: HMAC-SHA-256 under the derived key when encryption is on,
// SHA-256 otherwise.
func (c *Cipher) Hash(value string) domain.KeyHash {
	var h domain.KeyHash
	if c.aead == nil {
		return sha256.Sum256([]byte(value))
	}
	m := c.macPool.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(value))
	m.Sum(h[:0])
	c.macPool.Put(m)
	return h
}

// Encrypt returns "gl1:" + key id + ":" + hex(nonce ‖ ciphertext ‖ tag), or the value
// itself when disabled.
func (c *Cipher) Encrypt(value string) (string, error) {
	if c.aead == nil {
		return value, nil
	}
	buf := make([]byte, c.aead.NonceSize(), c.aead.NonceSize()+len(value)+c.aead.Overhead())
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	sealed := c.aead.Seal(buf, buf, []byte(value), nil)
	out := make([]byte, 0, len(sealedPrefix)+len(c.keyID)+1+hex.EncodedLen(len(sealed)))
	out = append(out, sealedPrefix...)
	out = append(out, c.keyID...)
	out = append(out, ':')
	return string(hex.AppendEncode(out, sealed)), nil
}

// Decrypt opens what Encrypt produced, and gpt-load's bare hex format. A value sealed
// with another key is a KeyMismatchError naming both key ids. With encryption off a
// value in our sealed format is refused rather than taken for a clear one.
func (c *Cipher) Decrypt(stored string) (string, error) {
	id, ours := SealedKeyID(stored)
	if ours {
		if err := c.CheckKeyID(id); err != nil {
			return "", err
		}
		stored = stored[len(sealedPrefix)+len(id)+1:]
	}
	if c.aead == nil {
		return stored, nil
	}
	raw, err := hex.DecodeString(stored)
	if err != nil || len(raw) < c.aead.NonceSize()+c.aead.Overhead() {
		return "", ErrDecrypt
	}
	ns := c.aead.NonceSize()
	plain, err := c.aead.Open(raw[ns:ns], raw[:ns], raw[ns:], nil)
	if err != nil {
		return "", ErrDecrypt
	}
	return string(plain), nil
}

// sealChunk is the plaintext size of one sealed chunk of a stream.
const sealChunk = 1 << 20

// SealWriter encrypts a byte stream in independently sealed chunks. Each chunk's nonce is
// a random prefix and the chunk number; the last chunk is marked in its additional data,
// so truncation and reordering are detected. Without encryption it passes bytes through.
func (c *Cipher) SealWriter(w io.Writer) (io.WriteCloser, error) {
	if c.aead == nil {
		return nopWriteCloser{w}, nil
	}
	sw := &sealWriter{c: c, w: w, buf: make([]byte, 0, sealChunk)}
	if _, err := rand.Read(sw.prefix[:]); err != nil {
		return nil, err
	}
	if _, err := w.Write(sw.prefix[:]); err != nil {
		return nil, err
	}
	return sw, nil
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

type sealWriter struct {
	c      *Cipher
	w      io.Writer
	prefix [4]byte
	n      uint64
	buf    []byte
	out    []byte
}

func chunkNonce(prefix [4]byte, n uint64) []byte {
	nonce := make([]byte, 12)
	copy(nonce, prefix[:])
	binary.BigEndian.PutUint64(nonce[4:], n)
	return nonce
}

func (s *sealWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		n := min(len(p), sealChunk-len(s.buf))
		s.buf = append(s.buf, p[:n]...)
		p = p[n:]
		if len(s.buf) == sealChunk {
			if err := s.flush(false); err != nil {
				return 0, err
			}
		}
	}
	return total, nil
}

func (s *sealWriter) flush(last bool) error {
	ad := []byte{0}
	if last {
		ad[0] = 1
	}
	s.out = s.c.aead.Seal(s.out[:0], chunkNonce(s.prefix, s.n), s.buf, ad)
	s.n++
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(s.out)))
	if _, err := s.w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := s.w.Write(s.out)
	s.buf = s.buf[:0]
	return err
}

func (s *sealWriter) Close() error { return s.flush(true) }

// OpenReader reads what SealWriter wrote.
func (c *Cipher) OpenReader(r io.Reader) (io.Reader, error) {
	if c.aead == nil {
		return r, nil
	}
	or := &openReader{c: c, r: r}
	if _, err := io.ReadFull(r, or.prefix[:]); err != nil {
		return nil, fmt.Errorf("sealed stream: %w", err)
	}
	return or, nil
}

type openReader struct {
	c      *Cipher
	r      io.Reader
	prefix [4]byte
	n      uint64
	plain  []byte // unread part of out
	in     []byte
	out    []byte
	done   bool
}

func (o *openReader) Read(p []byte) (int, error) {
	for len(o.plain) == 0 {
		if o.done {
			return 0, io.EOF
		}
		var hdr [4]byte
		if _, err := io.ReadFull(o.r, hdr[:]); err != nil {
			return 0, fmt.Errorf("sealed stream truncated: %w", io.ErrUnexpectedEOF)
		}
		size := binary.BigEndian.Uint32(hdr[:])
		if size > sealChunk+uint32(o.c.aead.Overhead()) {
			return 0, ErrDecrypt
		}
		if cap(o.in) < int(size) {
			o.in = make([]byte, size)
		}
		o.in = o.in[:size]
		if _, err := io.ReadFull(o.r, o.in); err != nil {
			return 0, fmt.Errorf("sealed stream truncated: %w", io.ErrUnexpectedEOF)
		}
		nonce := chunkNonce(o.prefix, o.n)
		var err error
		if o.out, err = o.c.aead.Open(o.out[:0], nonce, o.in, []byte{0}); err != nil {
			if o.out, err = o.c.aead.Open(o.out[:0], nonce, o.in, []byte{1}); err != nil {
				return 0, ErrDecrypt
			}
			o.done = true
		}
		o.plain = o.out
		o.n++
	}
	n := copy(p, o.plain)
	o.plain = o.plain[n:]
	return n, nil
}
