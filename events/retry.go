package events

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
)

// AttemptTimeout bounds one JetStream API request made by Retry. A request that reaches a
// cluster without a meta leader (servers just started, or a leader election under way) is
// not answered at all: only a short deadline per attempt lets the next one be sent.
const AttemptTimeout = 3 * time.Second

// Retry calls f, each time under a deadline of AttemptTimeout, until it succeeds or ctx ends,
// waiting a little longer after each failure (up to 5 s). Every failure is logged with
// what is being done, so an operator sees a node waiting for its cluster rather than a
// silent hang. It is for idempotent set-up requests: creating or updating a stream, a
// consumer or a key-value bucket, which whichever node comes first does and the others
// find done.
func Retry(ctx context.Context, log zerolog.Logger, what string, f func(ctx context.Context) error) error {
	delay := 100 * time.Millisecond
	start := time.Now()
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, AttemptTimeout)
		err := f(actx)
		cancel()
		var stop *permanentError
		if errors.As(err, &stop) {
			return fmt.Errorf("%s: %w", what, stop.err)
		}
		if err == nil {
			if attempt > 1 {
				log.Info().Int("attempts", attempt).Dur("waited", time.Since(start)).Msg(what + ": done")
			}
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: gave up after %d attempts in %v: %w", what, attempt,
				time.Since(start).Round(time.Millisecond), errors.Join(err, ctx.Err()))
		}
		log.Warn().Err(err).Int("attempt", attempt).Dur("retry_in", delay).
			Msg(what + ": NATS cluster not ready (no JetStream leader yet, or unreachable); trying again")
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: gave up after %d attempts in %v: %w", what, attempt,
				time.Since(start).Round(time.Millisecond), errors.Join(err, ctx.Err()))
		case <-t.C:
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// permanentError is an error waiting will not cure: Retry returns it at once.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }
