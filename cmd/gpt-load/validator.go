package main

import (
	"context"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/projections"
	"gpt-load/proxy"
)

// keyValidator gives the admin API the proxy's validation requests: it validates keys of
// a group and records each outcome as key-health facts, waiting until the projection
// shows them, so the answer and the next listing agree.
type keyValidator struct {
	v      *proxy.Validator
	proj   *projections.Runner
	cmd    *events.Commands
	cipher *events.Cipher
}

type keyToValidate struct {
	id    uint64
	value string
}

func (k keyValidator) group(groupID uint64) (*projections.GroupView, error) {
	g, ok := k.proj.View().Group(groupID)
	if !ok {
		return nil, domain.Errorf(domain.ENOTFOUND, "group %d not found", groupID)
	}
	return g, nil
}

// ValidateKeys validates the listed keys with at most concurrency requests at a time.
func (k keyValidator) ValidateKeys(ctx context.Context, groupID uint64, keyIDs []uint64, concurrency int, progress func(done int)) (valid, invalid int, err error) {
	g, err := k.group(groupID)
	if err != nil {
		return 0, 0, err
	}
	keys := make([]keyToValidate, 0, len(keyIDs))
	k.proj.Read(func(s *domain.State) {
		ks := s.Keys(groupID)
		if ks == nil {
			return
		}
		for _, id := range keyIDs {
			if key, ok := ks.ByID(id); ok {
				keys = append(keys, keyToValidate{id: id, value: key.Value})
			}
		}
	})
	var nValid, nInvalid, done atomic.Int64
	eg, ctx := errgroup.WithContext(ctx)
	eg.SetLimit(max(concurrency, 1))
	for _, key := range keys {
		eg.Go(func() error {
			res := k.v.Validate(ctx, g, key.value)
			if err := k.cmd.RecordHealth(ctx, events.ActorAdmin, proxy.ValidationFacts(groupID, key.id, res)...); err != nil {
				return err
			}
			if res.Valid {
				nValid.Add(1)
			} else {
				nInvalid.Add(1)
			}
			if progress != nil {
				progress(int(done.Add(1)))
			}
			return nil
		})
	}
	err = eg.Wait()
	return int(nValid.Load()), int(nInvalid.Load()), err
}

// TestKey validates one key value of the group and records the outcome.
func (k keyValidator) TestKey(ctx context.Context, groupID uint64, keyValue string) (bool, string, error) {
	g, err := k.group(groupID)
	if err != nil {
		return false, "", err
	}
	var id uint64
	h := k.cipher.Hash(keyValue)
	k.proj.Read(func(s *domain.State) {
		if ks := s.Keys(groupID); ks != nil {
			if key, ok := ks.ByHash(h); ok {
				id = key.ID
			}
		}
	})
	if id == 0 {
		return false, "Key does not exist in this group or has been removed.", nil
	}
	res := k.v.Validate(ctx, g, keyValue)
	if err := k.cmd.RecordHealth(ctx, events.ActorAdmin, proxy.ValidationFacts(groupID, id, res)...); err != nil {
		return false, "", err
	}
	return res.Valid, res.Message, nil
}
