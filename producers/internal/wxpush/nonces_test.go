package wxpush

import (
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/omnisync/omnisync/pkg/httpauth"
)

var t0 = time.Unix(1763800060, 0)

func ts(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

func TestNoncesRetryAndReplay(t *testing.T) {
	ns := NewNonces(5*time.Minute, 100)
	if err := ns.Check(t0, ts(t0), "n1", []byte("push A")); err != nil {
		t.Fatal(err)
	}
	// WeChat's re-sends: same URL, same body, seconds later.
	for _, d := range []time.Duration{5 * time.Second, 10 * time.Second, 15 * time.Second} {
		if err := ns.Check(t0.Add(d), ts(t0), "n1", []byte("push A")); err != nil {
			t.Fatalf("re-send after %s: %v", d, err)
		}
	}
	// The same URL with another body: a replay.
	err := ns.Check(t0.Add(time.Minute), ts(t0), "n1", []byte("push B"))
	if !errors.Is(err, httpauth.ErrUnauthorized) {
		t.Fatalf("replay with another body: %v, want an ErrUnauthorized", err)
	}
	// Another nonce, or the same nonce with another timestamp, is another URL.
	if err := ns.Check(t0, ts(t0), "n2", []byte("push B")); err != nil {
		t.Fatal(err)
	}
	if err := ns.Check(t0, ts(t0.Add(time.Second)), "n1", []byte("push B")); err != nil {
		t.Fatal(err)
	}
	if n := ns.Len(); n != 3 {
		t.Errorf("Len = %d, want 3", n)
	}
}

func TestNoncesForgetOnlyAfterTheWindow(t *testing.T) {
	ns := NewNonces(5*time.Minute, 100)
	ahead := t0.Add(5 * time.Minute) // a timestamp as far ahead as the window allows
	if err := ns.Check(t0, ts(t0), "n", []byte("A")); err != nil {
		t.Fatal(err)
	}
	if err := ns.Check(t0, ts(ahead), "n", []byte("A")); err != nil {
		t.Fatal(err)
	}
	// At the window's edge both are still remembered.
	if err := ns.Check(t0.Add(5*time.Minute), ts(t0), "n", []byte("B")); err == nil {
		t.Fatal("replay at the edge of the window taken")
	}
	// A second later the first URL is past the window (the signature check
	// refuses it now), the one stamped ahead is not.
	if err := ns.Check(t0.Add(5*time.Minute+time.Second), ts(ahead), "n", []byte("B")); err == nil {
		t.Fatal("replay of a URL stamped ahead forgotten too early")
	}
	if n := ns.Len(); n != 1 {
		t.Errorf("Len = %d after the first URL left the window, want 1", n)
	}
	if err := ns.Check(t0.Add(10*time.Minute+time.Second), ts(t0.Add(10*time.Minute+time.Second)), "m", []byte("C")); err != nil {
		t.Fatal(err)
	}
	if n := ns.Len(); n != 1 {
		t.Errorf("Len = %d, want 1: everything older left the window", n)
	}
}

func TestNoncesFullRefusesRatherThanForgets(t *testing.T) {
	ns := NewNonces(5*time.Minute, 3)
	for i := range 3 {
		if err := ns.Check(t0, ts(t0), strconv.Itoa(i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := ns.Check(t0, ts(t0), "new", []byte("x")); !errors.Is(err, httpauth.ErrUnauthorized) {
		t.Fatalf("a fourth push with room for three: %v", err)
	}
	// Nothing was forgotten to make room: the first is still guarded, and
	// its re-send still taken.
	if err := ns.Check(t0, ts(t0), "0", []byte("y")); err == nil {
		t.Fatal("replay of the oldest push taken once full")
	}
	if err := ns.Check(t0, ts(t0), "0", []byte("x")); err != nil {
		t.Fatalf("re-send when full: %v", err)
	}
	// Once they leave the window there is room again.
	later := t0.Add(5*time.Minute + time.Second)
	if err := ns.Check(later, ts(later), "new", []byte("x")); err != nil {
		t.Fatal(err)
	}
}

func TestNoncesConcurrent(t *testing.T) {
	ns := NewNonces(time.Minute, 1000)
	var wg sync.WaitGroup
	var mu sync.Mutex
	taken := 0
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				// Every goroutine posts its own body under the same 50 nonces:
				// exactly one body per nonce may win.
				if ns.Check(t0, ts(t0), strconv.Itoa(i), []byte{byte(g)}) == nil {
					mu.Lock()
					taken++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if taken != 50 || ns.Len() != 50 {
		t.Fatalf("%d pushes taken, %d remembered; want 50 each", taken, ns.Len())
	}
}
