// Package retry is omnisync's one retry policy: exponential backoff from
// 100 ms, doubling to a cap of 2 s, with full jitter (each wait is uniform
// in [0, backoff]), until the operation succeeds, fails permanently, or
// the context ends. Every retry is logged with the attempt, the wait and
// the error.
//
// The cap is low on purpose: a dependency that comes back (PostgreSQL
// after a restart, a broker after an outage) is used again within about
// 2 s, at the price of a retry every second or so per waiting operation
// while it is down.
package retry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"
)

const (
	// Initial is the backoff before the first retry.
	Initial = 100 * time.Millisecond
	// Max caps the backoff.
	Max = 2 * time.Second
)

// Permanent marks err as one retrying cannot fix: Do returns it at once.
// The result wraps err, so errors.As and errors.Is see through it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// After is implemented by errors that know when to try again (an HTTP
// Retry-After, say): Do waits at least RetryAfter before the next attempt.
type After interface {
	RetryAfter() time.Duration
}

// Backoff is the upper bound of the wait after the attempt-th failure
// (from 1): Initial doubled attempt-1 times, at most Max.
func Backoff(attempt int) time.Duration {
	b := Initial
	for i := 1; i < attempt && b < Max; i++ {
		b *= 2
	}
	return min(b, Max)
}

// Wait is the jittered wait after the attempt-th failure: uniform in
// [0, Backoff(attempt)].
func Wait(attempt int) time.Duration {
	return time.Duration(rand.Int64N(int64(Backoff(attempt)) + 1))
}

// Do calls fn until it returns nil or a Permanent error, or ctx ends,
// waiting Wait(attempt) (or an After error's RetryAfter, if longer)
// between attempts; what names the operation in the log (nil: no log).
// It returns nil, the permanent error, or ctx's error with fn's last one.
func Do(ctx context.Context, log *zap.Logger, what string, fn func() error) error {
	if log == nil {
		log = zap.NewNop()
	}
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || IsPermanent(err) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w (last error: %v)", what, ctx.Err(), err)
		}
		wait := Wait(attempt)
		var a After
		if errors.As(err, &a) {
			wait = max(wait, a.RetryAfter())
		}
		log.Warn("retrying", zap.String("what", what), zap.Int("attempt", attempt), zap.Duration("wait", wait), zap.Error(err))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w (last error: %v)", what, ctx.Err(), err)
		case <-t.C:
		}
	}
}
