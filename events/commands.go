package events

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"gpt-load/domain"
)

// Projection is what commands need of the projected state: a consistent read to decide on,
// and a way to wait until their own event is visible.
type Projection interface {
	Read(f func(s *domain.State))
	WaitFor(ctx context.Context, seq uint64) error
}

// Actors recorded in events.
const (
	ActorAdmin  = "admin"
	ActorSystem = "system"
	ActorProxy  = "proxy"
)

// maxAttempts bounds the decide-append loop when other writers keep winning. Writers that
// lose back off for a random, growing while, so a burst of concurrent commands on one
// aggregate drains instead of colliding round after round.
const maxAttempts = 30

// Commands decides commands against the projected state and appends their facts. Every
// method returns once the local projection shows the result (read your writes).
type Commands struct {
	store *Store
	proj  Projection
}

// NewCommands wires the command services.
func NewCommands(store *Store, proj Projection) *Commands {
	if store == nil || proj == nil {
		panic("events: nil store or projection")
	}
	return &Commands{store: store, proj: proj}
}

// exec is the command loop: decide on the current state, append guarded by the version
// the decision saw, and on a conflict wait for the projection to see what won, then decide
// again. decide returns a nil fact when there is nothing to record.
func (c *Commands) exec(ctx context.Context, actor string, decide func(s *domain.State) (domain.Fact, error)) (uint64, error) {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		var (
			f   domain.Fact
			ver uint64
			err error
		)
		c.proj.Read(func(s *domain.State) {
			if f, err = decide(s); err == nil && f != nil {
				ver = s.Version(domain.AggregateOf(f))
			}
		})
		if err != nil || f == nil {
			return 0, err
		}
		seq, err := c.store.Append(ctx, actor, ver, f)
		if errors.Is(err, ErrConflict) {
			last, lerr := c.store.LastSeq(ctx, domain.AggregateOf(f))
			if lerr != nil {
				return 0, lerr
			}
			if err := c.proj.WaitFor(ctx, last); err != nil {
				return 0, err
			}
			if err := backoff(ctx, attempt); err != nil {
				return 0, err
			}
			continue
		}
		if err != nil {
			return 0, err
		}
		return seq, c.proj.WaitFor(ctx, seq)
	}
	return 0, domain.Errorf(domain.ECONFLICT, "the state kept changing while deciding; please retry")
}

// read returns a value computed from the current state.
func read[T any](p Projection, f func(s *domain.State) T) T {
	var v T
	p.Read(func(s *domain.State) { v = f(s) })
	return v
}

func (c *Commands) group(id uint64) (domain.Group, error) {
	g := read(c.proj, func(s *domain.State) *domain.Group { g, _ := s.Group(id); return g })
	if g == nil {
		return domain.Group{}, domain.Errorf(domain.ENOTFOUND, "group %d not found", id)
	}
	return *g, nil
}

// SeedSettings records the settings in force when the log has none yet. Two nodes seeding
// at once are fine: the guard lets one win, the other finds the log seeded.
func (c *Commands) SeedSettings(ctx context.Context) error {
	_, err := c.exec(ctx, ActorSystem, func(s *domain.State) (domain.Fact, error) {
		if f, ok := domain.DecideSeedSettings(s); ok {
			return f, nil
		}
		return nil, nil
	})
	return err
}

// UpdateSettings validates and applies a settings change, all or nothing.
func (c *Commands) UpdateSettings(ctx context.Context, actor string, changes map[string]json.RawMessage) error {
	_, err := c.exec(ctx, actor, func(s *domain.State) (domain.Fact, error) {
		f, ok, err := domain.DecideSettings(s, changes)
		if err != nil || !ok {
			return nil, err
		}
		return f, nil
	})
	return err
}

// CreateGroup creates a group and returns it as stored.
func (c *Commands) CreateGroup(ctx context.Context, actor string, in domain.GroupInput) (domain.Group, error) {
	var id uint64
	_, err := c.exec(ctx, actor, func(s *domain.State) (domain.Fact, error) {
		f, err := domain.DecideCreateGroup(s, in)
		id = f.Group.ID
		return f, err
	})
	if err != nil {
		return domain.Group{}, err
	}
	return c.group(id)
}

// UpdateGroup applies a partial update and returns the group as stored.
func (c *Commands) UpdateGroup(ctx context.Context, actor string, id uint64, in domain.GroupInput) (domain.Group, error) {
	_, err := c.exec(ctx, actor, func(s *domain.State) (domain.Fact, error) {
		f, err := domain.DecideUpdateGroup(s, id, in)
		if err != nil || len(f.Changed) == 0 {
			return nil, err
		}
		return f, nil
	})
	if err != nil {
		return domain.Group{}, err
	}
	return c.group(id)
}

// DeleteGroup deletes a group, its keys and its aggregate links.
func (c *Commands) DeleteGroup(ctx context.Context, actor string, id uint64) error {
	_, err := c.exec(ctx, actor, func(s *domain.State) (domain.Fact, error) {
		return domain.DecideDeleteGroup(s, id)
	})
	return err
}

// CopyKeys selects which keys CopyGroup copies.
type CopyKeys string

const (
	CopyNone      CopyKeys = "none"
	CopyValidOnly CopyKeys = "valid_only"
	CopyAll       CopyKeys = "all"
)

// CopyGroup copies a group under a free name, then its keys as asked.
func (c *Commands) CopyGroup(ctx context.Context, actor string, id uint64, keys CopyKeys) (domain.Group, error) {
	switch keys {
	case "":
		keys = CopyAll
	case CopyNone, CopyValidOnly, CopyAll:
	default:
		return domain.Group{}, domain.Invalid(domain.FieldError{Field: "copy_keys", Message: "must be none, valid_only or all"})
	}
	var newID uint64
	var values []string
	_, err := c.exec(ctx, actor, func(s *domain.State) (domain.Fact, error) {
		f, err := domain.DecideCopyGroup(s, id)
		if err != nil {
			return nil, err
		}
		newID, values = f.Group.ID, values[:0]
		if ks := s.Keys(id); ks != nil && keys != CopyNone {
			ks.Each(func(k *domain.Key) bool {
				if keys == CopyAll || k.Status == domain.KeyActive {
					values = append(values, k.Value)
				}
				return true
			})
		}
		return f, nil
	})
	if err != nil {
		return domain.Group{}, err
	}
	if _, err := c.AddKeys(ctx, actor, newID, values, nil); err != nil {
		return domain.Group{}, fmt.Errorf("copy keys: %w", err)
	}
	return c.group(newID)
}

// ReorderGroups sets the display order.
func (c *Commands) ReorderGroups(ctx context.Context, actor string, items []domain.GroupOrder) error {
	_, err := c.exec(ctx, actor, func(s *domain.State) (domain.Fact, error) {
		return domain.DecideReorder(s, items)
	})
	return err
}

// AddSubGroups links members to an aggregate.
func (c *Commands) AddSubGroups(ctx context.Context, actor string, id uint64, subs []domain.SubGroup) error {
	_, err := c.exec(ctx, actor, func(s *domain.State) (domain.Fact, error) {
		return domain.DecideAddSubGroups(s, id, subs)
	})
	return err
}

// SetSubGroupWeight changes the weight of one link.
func (c *Commands) SetSubGroupWeight(ctx context.Context, actor string, id, member uint64, weight int) error {
	_, err := c.exec(ctx, actor, func(s *domain.State) (domain.Fact, error) {
		return domain.DecideSubGroupWeight(s, id, member, weight)
	})
	return err
}

// RemoveSubGroup unlinks a member.
func (c *Commands) RemoveSubGroup(ctx context.Context, actor string, id, member uint64) error {
	_, err := c.exec(ctx, actor, func(s *domain.State) (domain.Fact, error) {
		return domain.DecideRemoveSubGroup(s, id, member)
	})
	return err
}

// MarkGroupValidated records a background validation round.
func (c *Commands) MarkGroupValidated(ctx context.Context, actor string, id uint64) error {
	_, err := c.exec(ctx, actor, func(s *domain.State) (domain.Fact, error) {
		if _, ok := s.Group(id); !ok {
			return nil, domain.Errorf(domain.ENOTFOUND, "group %d not found", id)
		}
		return domain.GroupValidated{GroupID: id}, nil
	})
	return err
}

// Progress is told how many input entries a bulk command has processed so far.
type Progress func(processed int)

func (c *Commands) hashes(values []string) []domain.KeyHash {
	out := make([]domain.KeyHash, len(values))
	for i, v := range values {
		out[i] = c.store.codec.cipher.Hash(v)
	}
	return out
}

// AddKeys adds key values to a group in facts that fit the log (domain.NextKeyChunk),
// skipping values already in the group or earlier in the input.
func (c *Commands) AddKeys(ctx context.Context, actor string, groupID uint64, values []string, progress Progress) (domain.AddReport, error) {
	var total domain.AddReport
	seen := make(map[domain.KeyHash]struct{}, min(len(values), 1<<16))
	for start, n := 0, 0; start < len(values); start += n {
		n = domain.NextKeyChunk(values[start:])
		chunk := values[start : start+n]
		keys := make([]domain.NewKey, 0, len(chunk))
		for _, v := range chunk {
			h := c.store.codec.cipher.Hash(v)
			if _, dup := seen[h]; dup {
				continue
			}
			seen[h] = struct{}{}
			keys = append(keys, domain.NewKey{Value: v, Hash: h})
		}
		var rep domain.AddReport
		_, err := c.exec(ctx, actor, func(s *domain.State) (domain.Fact, error) {
			f, r, err := domain.DecideAddKeys(s, groupID, keys)
			rep = r
			if err != nil || len(f.Keys) == 0 {
				return nil, err
			}
			return f, nil
		})
		if err != nil {
			return total, err
		}
		total.Added += rep.Added
		total.Ignored += len(chunk) - rep.Added
		if progress != nil {
			progress(start + len(chunk))
		}
	}
	// A group deleted while its keys were being added takes them with it.
	if _, err := c.group(groupID); err != nil && len(values) > 0 {
		return total, err
	}
	return total, nil
}

// bulkByHash runs a per-chunk decision over key values matched by hash and counts what
// changed.
func (c *Commands) bulkByHash(ctx context.Context, actor string, values []string, chunkSize int, progress Progress,
	decide func(s *domain.State, hashes []domain.KeyHash) (domain.Fact, int, error)) (int, error) {
	changed := 0
	for start := 0; start < len(values); start += chunkSize {
		hashes := c.hashes(values[start:min(start+chunkSize, len(values))])
		n := 0
		_, err := c.exec(ctx, actor, func(s *domain.State) (domain.Fact, error) {
			f, k, err := decide(s, hashes)
			n = k
			return f, err
		})
		if err != nil {
			return changed, err
		}
		changed += n
		if progress != nil {
			progress(start + len(hashes))
		}
	}
	return changed, nil
}

// RemoveKeys deletes the group's keys with the given values; it returns how many it
// deleted.
func (c *Commands) RemoveKeys(ctx context.Context, actor string, groupID uint64, values []string, progress Progress) (int, error) {
	return c.bulkByHash(ctx, actor, values, domain.MaxKeysPerEvent, progress, func(s *domain.State, hs []domain.KeyHash) (domain.Fact, int, error) {
		f, ok, err := domain.DecideRemoveKeys(s, groupID, hs)
		if err != nil || !ok {
			return nil, 0, err
		}
		return f, len(f.KeyIDs), nil
	})
}

// RestoreKeys puts the group's invalid keys with the given values back in rotation.
func (c *Commands) RestoreKeys(ctx context.Context, actor string, groupID uint64, values []string) (int, error) {
	return c.bulkByHash(ctx, actor, values, domain.MaxKeysPerEvent, nil, func(s *domain.State, hs []domain.KeyHash) (domain.Fact, int, error) {
		f, ok, err := domain.DecideRestoreKeys(s, groupID, hs)
		if err != nil || !ok {
			return nil, 0, err
		}
		return f, len(f.KeyIDs), nil
	})
}

// RestoreAllInvalid restores every invalid key of a group; it returns how many.
func (c *Commands) RestoreAllInvalid(ctx context.Context, actor string, groupID uint64) (int, error) {
	n := 0
	_, err := c.exec(ctx, actor, func(s *domain.State) (domain.Fact, error) {
		f, k, err := domain.DecideRestoreAllInvalid(s, groupID)
		if n = k; err != nil || k == 0 {
			return nil, err
		}
		return f, nil
	})
	return n, err
}

// ClearKeys deletes every key of a group in scope; it returns how many.
func (c *Commands) ClearKeys(ctx context.Context, actor string, groupID uint64, scope domain.KeyScope) (int, error) {
	n := 0
	_, err := c.exec(ctx, actor, func(s *domain.State) (domain.Fact, error) {
		f, k, err := domain.DecideClearKeys(s, groupID, scope)
		if n = k; err != nil || k == 0 {
			return nil, err
		}
		return f, nil
	})
	return n, err
}

// SetKeysDisabled disables keys of a group by id (or re-enables them when disabled is
// false); it returns how many changed. A disabled key is never selected nor revalidated.
func (c *Commands) SetKeysDisabled(ctx context.Context, actor string, groupID uint64, ids []uint64, disabled bool) (int, error) {
	n := 0
	_, err := c.exec(ctx, actor, func(s *domain.State) (domain.Fact, error) {
		f, k, err := domain.DecideDisableKeys(s, groupID, ids, !disabled)
		n = k
		return f, err
	})
	return n, err
}

// SetKeyNotes sets the notes of a key.
func (c *Commands) SetKeyNotes(ctx context.Context, actor string, keyID uint64, notes string) error {
	_, err := c.exec(ctx, actor, func(s *domain.State) (domain.Fact, error) {
		return domain.DecideKeyNotes(s, keyID, notes)
	})
	return err
}

// RecordHealth appends key-health facts (failures, successes, validation results). They are
// never guarded: every node folds them in log order, so all agree on each key's state.
// It returns once the local projection shows them.
func (c *Commands) RecordHealth(ctx context.Context, actor string, facts ...domain.Fact) error {
	for _, f := range facts {
		if domain.AggregateOf(f).Kind != domain.AggHealth {
			return fmt.Errorf("events: %T is not a health fact", f)
		}
	}
	seq, err := c.store.Append(ctx, actor, 0, facts...)
	if err != nil {
		return err
	}
	return c.proj.WaitFor(ctx, seq)
}

// RecordKeysExported records an export of a group's keys in clear, for the audit trail.
// The caller exports only after it returned without error: no export goes unrecorded.
func (c *Commands) RecordKeysExported(ctx context.Context, actor string, f domain.KeysExported) error {
	seq, err := c.store.Append(ctx, actor, 0, f)
	if err != nil {
		return err
	}
	return c.proj.WaitFor(ctx, seq)
}

func backoff(ctx context.Context, attempt int) error {
	limit := time.Millisecond << min(attempt, 7) // 1 ms .. 128 ms
	t := time.NewTimer(mrand.N(limit))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// proxyKeyPrefix starts every generated proxy-key secret, so that one is recognised when
// it leaks into a log or a repository.
const proxyKeyPrefix = "sk-gl-"

// newProxyKeySecret draws a proxy-key secret of 256 random bits.
func newProxyKeySecret() (string, domain.ProxyKeySecret, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", domain.ProxyKeySecret{}, fmt.Errorf("proxy key secret: %w", err)
	}
	secret := proxyKeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return secret, domain.ProxyKeySecret{Hash: sha256.Sum256([]byte(secret)), Masked: domain.MaskKey(secret)}, nil
}

func (c *Commands) proxyKey(id uint64) (domain.ProxyKey, error) {
	k := read(c.proj, func(s *domain.State) *domain.ProxyKey { k, _ := s.ProxyKey(id); return k })
	if k == nil {
		return domain.ProxyKey{}, domain.Errorf(domain.ENOTFOUND, "proxy key %d not found", id)
	}
	return *k, nil
}

// CreateProxyKey creates a named proxy key and returns it with its secret, which is not
// kept anywhere: this is the one time it is seen.
func (c *Commands) CreateProxyKey(ctx context.Context, actor string, in domain.ProxyKeyInput) (domain.ProxyKey, string, error) {
	secret, sec, err := newProxyKeySecret()
	if err != nil {
		return domain.ProxyKey{}, "", err
	}
	var id uint64
	if _, err = c.exec(ctx, actor, func(s *domain.State) (domain.Fact, error) {
		f, err := domain.DecideCreateProxyKey(s, in, sec)
		id = f.Key.ID
		return f, err
	}); err != nil {
		return domain.ProxyKey{}, "", err
	}
	k, err := c.proxyKey(id)
	return k, secret, err
}

// UpdateProxyKey applies a partial update and returns the key as stored.
func (c *Commands) UpdateProxyKey(ctx context.Context, actor string, id uint64, in domain.ProxyKeyInput) (domain.ProxyKey, error) {
	if _, err := c.exec(ctx, actor, func(s *domain.State) (domain.Fact, error) {
		f, err := domain.DecideUpdateProxyKey(s, id, in)
		if err != nil || len(f.Changed) == 0 {
			return nil, err
		}
		return f, nil
	}); err != nil {
		return domain.ProxyKey{}, err
	}
	return c.proxyKey(id)
}

// RotateProxyKey gives a key a new secret and returns it: the old secret stops working.
func (c *Commands) RotateProxyKey(ctx context.Context, actor string, id uint64) (domain.ProxyKey, string, error) {
	secret, sec, err := newProxyKeySecret()
	if err != nil {
		return domain.ProxyKey{}, "", err
	}
	if _, err := c.exec(ctx, actor, func(s *domain.State) (domain.Fact, error) {
		return domain.DecideRotateProxyKey(s, id, sec)
	}); err != nil {
		return domain.ProxyKey{}, "", err
	}
	k, err := c.proxyKey(id)
	return k, secret, err
}

// DeleteProxyKey deletes a named proxy key.
func (c *Commands) DeleteProxyKey(ctx context.Context, actor string, id uint64) error {
	_, err := c.exec(ctx, actor, func(s *domain.State) (domain.Fact, error) {
		return domain.DecideDeleteProxyKey(s, id)
	})
	return err
}
