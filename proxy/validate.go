package proxy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"gpt-load/domain"
	"gpt-load/projections"
	"gpt-load/proxy/channel"
)

// ValidationResult is the outcome of one key-validation request (API.md 7.10).
type ValidationResult struct {
	Valid   bool
	Status  int    // upstream status; 0 for a transport error
	Message string // "[status N] <message>" or the transport error, key masked; "" when valid
	// RetryUntil is when a rate-limited key may be used again (zero otherwise).
	RetryUntil time.Time
	kind       domain.FailureKind
}

// Kind is what the failure means for the key (FailureNone when valid).
func (r ValidationResult) Kind() domain.FailureKind { return r.kind }

// StateReader gives a consistent read of the projected state; *projections.Runner
// implements it.
type StateReader interface {
	Read(f func(s *domain.State))
}

// GroupMarker records a finished validation round; *events.Commands implements it.
type GroupMarker interface {
	MarkGroupValidated(ctx context.Context, actor string, id uint64) error
}

// ValidatorDeps are what background revalidation needs besides the proxy.
type ValidatorDeps struct {
	State  StateReader // required by RunRevalidation
	Marker GroupMarker // required by RunRevalidation
	Log    zerolog.Logger
	// Tick is how often RunRevalidation looks for groups due (default 1 minute).
	Tick time.Duration
}

// Validator checks upstream keys with each channel's validation request, through the
// group's upstreams, transport and header rules, like proxied traffic.
type Validator struct {
	h    *Handler
	deps ValidatorDeps
}

// Validator returns the key validator of this proxy.
func (h *Handler) Validator(deps ValidatorDeps) *Validator {
	if deps.Tick <= 0 {
		deps.Tick = time.Minute
	}
	return &Validator{h: h, deps: deps}
}

// Validate sends the validation request of g's channel for keyValue to g's next weighted
// upstream, with g's header rules (CLIENT_IP = 127.0.0.1), within
// key_validation_timeout_seconds. Valid means a 2xx answer.
func (v *Validator) Validate(ctx context.Context, g *projections.GroupView, keyValue string) ValidationResult {
	gs := v.h.groups.state(g)
	if g.Type == domain.GroupAggregate {
		return ValidationResult{Message: "aggregate groups hold no keys", kind: domain.FailureClient}
	}
	ui := gs.uwrr.next()
	if ui < 0 {
		return ValidationResult{Message: "the group has no upstream with a weight above 0", kind: domain.FailureUpstream}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(g.Effective.KeyValidationTimeoutSeconds)*time.Second)
	defer cancel()
	req, err := gs.ch.Validation(ctx, gs.upstreams[ui].raw, g.Group, keyValue)
	if err != nil {
		return ValidationResult{Message: mask(err.Error(), keyValue), kind: domain.FailureClient}
	}
	now := v.h.cfg.Now()
	applyHeaderRules(req, g.HeaderRules, headerVars{clientIP: "127.0.0.1", group: g.Name, key: keyValue, now: now})
	resp, err := gs.client.Do(req)
	if err != nil {
		return ValidationResult{Message: mask(transportMessage(err), keyValue), kind: domain.FailureUpstream}
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return ValidationResult{Valid: true, Status: resp.StatusCode}
	}
	raw, _ := readBounded(resp.Body, maxErrorBody)
	msg := channel.ErrorMessage(decodedForMessage(raw, resp.Header))
	res := ValidationResult{
		Status:  resp.StatusCode,
		Message: mask(fmt.Sprintf("[status %d] %s", resp.StatusCode, msg), keyValue),
		kind:    domain.ClassifyFailure(resp.StatusCode, msg),
	}
	if res.kind == domain.FailureNone {
		// A 3xx: not a valid answer, nothing about the key.
		res.kind = domain.FailureUpstream
	}
	if res.kind == domain.FailureRateLimit {
		until, ok := retryAfter(resp.Header, raw, now)
		if !ok {
			until = now.Add(v.h.cfg.RateLimitCooldown)
		}
		if limit := now.Add(v.h.cfg.MaxCooldown); until.After(limit) {
			until = limit
		}
		res.RetryUntil = until
	}
	return res
}

// ValidationFacts are the key-health facts a validation result records: KeyValidated for
// a valid key (active again, failures and cooldown cleared); for a failure, KeyFailed of
// the kind ClassifyFailure gives: an authentication failure counts toward the blacklist, a
// rate limit rests the key, an upstream or client failure leaves it as it is (the fact
// keeps the reason in the log).
func ValidationFacts(groupID, keyID uint64, res ValidationResult) []domain.Fact {
	if res.Valid {
		return []domain.Fact{domain.KeyValidated{GroupID: groupID, KeyID: keyID, Valid: true, Status: res.Status}}
	}
	return []domain.Fact{domain.KeyFailed{
		GroupID: groupID, KeyID: keyID, Kind: res.kind, Status: res.Status,
		Message: res.Message, RetryUntil: res.RetryUntil,
	}}
}

// Record hands the facts of a validation result to the proxy's key-health buffer, which
// publishes them until the log has them, without waiting. The admin API, which must read
// its writes, appends ValidationFacts with events.Commands.RecordHealth instead.
func (v *Validator) Record(groupID, keyID uint64, res ValidationResult) {
	for _, f := range ValidationFacts(groupID, keyID, res) {
		v.h.health.record("system:validation", f)
	}
}

// revalidationJob is one group due for background validation.
type revalidationJob struct {
	groupID uint64
	keys    []keyToCheck
}

type keyToCheck struct {
	id    uint64
	value string
}

// RunRevalidation re-checks, for every standard group whose last validation is older than
// its key_validation_interval_minutes (or never happened), the keys that are out of
// rotation for their health: invalid (blacklisted) keys and keys resting after a rate
// limit; disabled keys are skipped. Up to key_validation_concurrency keys of a group are
// checked at once, each within key_validation_timeout_seconds, with the group's header
// rules. The round is then recorded with MarkGroupValidated, also when there was nothing to
// check. It runs at once and then every Tick until ctx ends; a node runs it only where it
// holds the background duties.
func (v *Validator) RunRevalidation(ctx context.Context) error {
	if v.deps.State == nil || v.deps.Marker == nil {
		return errors.New("proxy: revalidation needs State and Marker")
	}
	t := time.NewTicker(v.deps.Tick)
	defer t.Stop()
	for {
		v.revalidateDue(ctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (v *Validator) revalidateDue(ctx context.Context) {
	now := v.h.cfg.Now()
	var jobs []revalidationJob
	v.deps.State.Read(func(s *domain.State) {
		for _, g := range s.Groups() {
			if g.Type != domain.GroupStandard {
				continue
			}
			interval := time.Duration(s.Effective(g).KeyValidationIntervalMinutes) * time.Minute
			if !g.LastValidatedAt.IsZero() && now.Sub(g.LastValidatedAt) < interval {
				continue
			}
			job := revalidationJob{groupID: g.ID}
			if ks := s.Keys(g.ID); ks != nil {
				ks.Each(func(k *domain.Key) bool {
					if !k.Disabled && (k.Status == domain.KeyInvalid || k.CooldownUntil > now.UnixNano()) {
						job.keys = append(job.keys, keyToCheck{id: k.ID, value: k.Value})
					}
					return true
				})
			}
			jobs = append(jobs, job)
		}
	})
	for _, job := range jobs {
		if ctx.Err() != nil {
			return
		}
		v.revalidateGroup(ctx, job)
	}
}

func (v *Validator) revalidateGroup(ctx context.Context, job revalidationJob) {
	log := v.deps.Log.With().Uint64("group_id", job.groupID).Logger()
	gv, ok := v.h.views.View().Group(job.groupID)
	if !ok {
		return
	}
	workers := max(1, gv.Effective.KeyValidationConcurrency)
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	var mu sync.Mutex
	valid, invalid := 0, 0
	for _, k := range job.keys {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			res := v.Validate(ctx, gv, k.value)
			if ctx.Err() != nil {
				return
			}
			v.Record(job.groupID, k.id, res)
			mu.Lock()
			if res.Valid {
				valid++
			} else {
				invalid++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	if err := v.deps.Marker.MarkGroupValidated(ctx, "system:validation", job.groupID); err != nil && ctx.Err() == nil {
		log.Error().Err(err).Msg("validation round not recorded")
		return
	}
	if len(job.keys) > 0 {
		log.Info().Int("checked", len(job.keys)).Int("valid", valid).Int("invalid", invalid).Msg("keys revalidated")
	}
}
