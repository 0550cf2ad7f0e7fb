package kafka

import (
	"testing"
	"time"
)

func TestRetryBackoffDoublesToOneSecondWithJitter(t *testing.T) {
	for tries, base := range map[int]time.Duration{
		1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond,
		4: 800 * time.Millisecond, 5: time.Second, 50: time.Second,
	} {
		lo, hi := base*4/5, base*6/5
		var minSeen, maxSeen time.Duration = hi, lo
		for range 2000 {
			d := retryBackoff(tries)
			if d < lo || d > hi {
				t.Fatalf("retryBackoff(%d) = %v, want within %v..%v", tries, d, lo, hi)
			}
			minSeen, maxSeen = min(minSeen, d), max(maxSeen, d)
		}
		if maxSeen-minSeen < base/5 {
			t.Errorf("retryBackoff(%d) varied only %v..%v over 2000 tries: no jitter", tries, minSeen, maxSeen)
		}
	}
}
