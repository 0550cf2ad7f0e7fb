package retry

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestBackoffDoublesToTheCap(t *testing.T) {
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
		1600 * time.Millisecond, 2 * time.Second, 2 * time.Second}
	for i, w := range want {
		if got := Backoff(i + 1); got != w {
			t.Errorf("Backoff(%d) = %s, want %s", i+1, got, w)
		}
	}
	for _, attempt := range []int{0, 50, 1000, 1 << 30} {
		if got := Backoff(attempt); got < Initial || got > Max {
			t.Errorf("Backoff(%d) = %s, outside [%s, %s]", attempt, got, Initial, Max)
		}
	}
}

func TestWaitIsFullJitterWithinTheBackoff(t *testing.T) {
	for _, attempt := range []int{1, 3, 6, 100} {
		limit := Backoff(attempt)
		var lo, hi time.Duration = limit, 0
		for range 2000 {
			w := Wait(attempt)
			if w < 0 || w > limit {
				t.Fatalf("Wait(%d) = %s, outside [0, %s]", attempt, w, limit)
			}
			lo, hi = min(lo, w), max(hi, w)
		}
		// Full jitter spreads over the whole range, not a band near the top.
		if lo > limit/10 || hi < limit*9/10 {
			t.Errorf("Wait(%d) over 2000 draws spans [%s, %s] of [0, %s]: not full jitter", attempt, lo, hi, limit)
		}
	}
}

func TestDoRetriesUntilSuccessAndLogs(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	calls := 0
	err := Do(context.Background(), zap.New(core), "flaky", func() error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Do = %v after %d calls, want nil after 3", err, calls)
	}
	if n := logs.FilterMessage("retrying").Len(); n != 2 {
		t.Fatalf("%d retries logged, want 2", n)
	}
	f := logs.All()[1].ContextMap()
	if f["what"] != "flaky" || f["attempt"] != int64(2) || f["error"] != "not yet" || f["wait"] == nil {
		t.Errorf("log fields %v: want what, attempt 2, wait and the error", f)
	}
}

func TestDoStopsAtAPermanentError(t *testing.T) {
	cause := errors.New("never")
	calls := 0
	err := Do(context.Background(), nil, "doomed", func() error { calls++; return Permanent(cause) })
	if calls != 1 || !IsPermanent(err) || !errors.Is(err, cause) {
		t.Fatalf("Do = %v after %d calls, want the permanent error after 1", err, calls)
	}
	if IsPermanent(cause) || IsPermanent(nil) || Permanent(nil) != nil {
		t.Error("only errors marked with Permanent are permanent")
	}
}

func TestDoEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := Do(ctx, nil, "down", func() error { return errors.New("refused") })
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || IsPermanent(err) {
		t.Fatalf("Do = %v, want the context's error", err)
	}
	if took > 300*time.Millisecond+Max/2 {
		t.Errorf("Do returned %s after the context ended", took-300*time.Millisecond)
	}
}

type tooSoon struct{ after time.Duration }

func (e tooSoon) Error() string             { return "429" }
func (e tooSoon) RetryAfter() time.Duration { return e.after }

func TestDoHonoursRetryAfter(t *testing.T) {
	calls := 0
	start := time.Now()
	err := Do(context.Background(), nil, "rate limited", func() error {
		calls++
		if calls == 1 {
			return tooSoon{300 * time.Millisecond}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("retried after %s, before the Retry-After of 300ms", took)
	}
}
