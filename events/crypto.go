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

// Cipher encrypts upstream key values and computes their identifying hash. The zero value
// of a disabled Cipher (NewCipher("")) stores values in clear and hashes with SHA-256.
type Cipher struct {
	aead    cipher.AEAD
	macKey  []byte
	macPool sync.Pool
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
	return c, nil
}

// Enabled reports whether values are encrypted.
func (c *Cipher) Enabled() bool { return c.aead != nil }

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

// Encrypt returns hex(nonce ‖ ciphertext ‖ tag), or the value itself when disabled.
func (c *Cipher) Encrypt(value string) (string, error) {
	if c.aead == nil {
		return value, nil
	}
	buf := make([]byte, c.aead.NonceSize(), c.aead.NonceSize()+len(value)+c.aead.Overhead())
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	return hex.EncodeToString(c.aead.Seal(buf, buf, []byte(value), nil)), nil
}

// Decrypt opens what Encrypt produced.
func (c *Cipher) Decrypt(stored string) (string, error) {
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
