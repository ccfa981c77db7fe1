package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"gpt-load/events"
)

// errKeyMigrationPending stops a node on a log that gpt-load migrate-keys is replacing.
var errKeyMigrationPending = errors.New("an encryption key migration (gpt-load migrate-keys) did not finish: run the same migrate-keys command again before starting any node; nothing was started")

// checkDataKey refuses to start on data that ENCRYPTION_KEY cannot open, with one message
// that says what to do.
func checkDataKey(ctx context.Context, js jetstream.JetStream, store *events.Store) error {
	pending, err := events.MigrationPending(ctx, js)
	if err != nil {
		return err
	}
	if pending {
		return errKeyMigrationPending
	}
	if err := store.CheckKey(ctx); err != nil {
		if !errors.Is(err, events.ErrKeyMismatch) {
			return err
		}
		return fmt.Errorf("ENCRYPTION_KEY does not match the data: %w.\n%s", err, keyAdvice(store.Cipher()))
	}
	return nil
}

// keyAdvice says what to do when ENCRYPTION_KEY does not open the data.
func keyAdvice(c *events.Cipher) string {
	if !c.Enabled() {
		return "Set ENCRYPTION_KEY to the key the data was written with, or stop every node and decrypt the data with `gpt-load migrate-keys --from <that key>`; nothing was started"
	}
	return "ENCRYPTION_KEY has key id " + c.KeyID() + ". Set ENCRYPTION_KEY to the key the data was written with, or stop every node and re-encrypt with `gpt-load migrate-keys --from <old key> --to <new key>`; nothing was started"
}
