package events

import "testing"

// NewCipherMust is NewCipher for tests.
func NewCipherMust(t testing.TB, password string) *Cipher {
	t.Helper()
	c, err := NewCipher(password)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
