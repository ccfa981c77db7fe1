package events

import (
	"context"

	"gpt-load/domain"
)

// ImportGroup brings a group from another store with its id, members and timestamps
// (domain.DecideImportGroup). A group whose name is taken here is left alone unless
// overwrite is set; the report says which.
func (c *Commands) ImportGroup(ctx context.Context, actor string, in domain.GroupInput, imp domain.GroupImport, overwrite bool) (domain.ImportedGroupReport, error) {
	var rep domain.ImportedGroupReport
	_, err := c.exec(ctx, actor, func(s *domain.State) (domain.Fact, error) {
		f, r, err := domain.DecideImportGroup(s, in, imp, overwrite)
		rep = r
		if err != nil || f == nil {
			return nil, err
		}
		return *f, nil
	})
	return rep, err
}

// ImportKeys brings one batch of keys into a standard group with their ids and history
// (domain.DecideImportKeys). Values are in clear: the codec seals them on the wire. The
// caller keeps a batch within domain.MaxKeysPerEvent keys and the log's message size.
func (c *Commands) ImportKeys(ctx context.Context, actor string, groupID uint64, keys []domain.ImportedKey) (domain.ImportedKeysReport, error) {
	var rep domain.ImportedKeysReport
	_, err := c.exec(ctx, actor, func(s *domain.State) (domain.Fact, error) {
		f, r, err := domain.DecideImportKeys(s, groupID, keys)
		rep = r
		if err != nil || len(f.Keys) == 0 {
			return nil, err
		}
		return *f, nil
	})
	return rep, err
}

// KeyHash is the hash this store identifies a key value by (SHA-256, or HMAC-SHA-256 under
// ENCRYPTION_KEY).
func (c *Commands) KeyHash(value string) domain.KeyHash { return c.store.codec.cipher.Hash(value) }
