package main

import (
	"strings"
	"testing"
	"time"
)

// The fault window counts attempts by the time they were sent; a 2xx to an
// attempt sent while every broker was down is a failure of the run.
func TestWindowStats(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	ph := &phaseReport{Fault: "all-brokers-stop", FaultStart: at(10), FaultEnd: at(40), DownStart: ptr(at(15)), DownEnd: ptr(at(40))}
	a := func(sent, done float64, code int) attempt { return attempt{Sent: at(sent), Done: at(done), Code: code} }
	reqs := []request{
		{Attempts: []attempt{a(5, 5.1, 200)}},                                    // before the window
		{Attempts: []attempt{a(11, 11.2, 200)}},                                  // in it, before all were down
		{Attempts: []attempt{a(16, 16.01, 503), a(17, 27, 0), a(41, 42.5, 200)}}, // 503, no answer, then 2xx after the end
		{Attempts: []attempt{a(20, 20.3, 200)}},                                  // a 2xx while all were down
		{Attempts: []attempt{a(39, 39.1, 400), a(40, 40.9, 201)}},                // other; the first 2xx after the end
	}
	w := windowStats(reqs, ph)
	want := windowReport{Sent: 5, OK: 2, Unavailable: 1, NoAnswer: 1, Other: 1, Share2xx: 40, SentWhileAllDown: 4, OKWhileAllDown: 1}
	got := w
	got.FirstOKSeconds, got.P50ms, got.P99ms = nil, 0, 0
	if got != want {
		t.Errorf("windowStats:\n got %+v\nwant %+v", got, want)
	}
	if w.FirstOKSeconds == nil || *w.FirstOKSeconds < 0.89 || *w.FirstOKSeconds > 0.91 {
		t.Errorf("first 2xx after the fault end: %v s, want 0.9", w.FirstOKSeconds)
	}
	if w.P50ms < 199 || w.P50ms > 201 || w.P99ms < 299 || w.P99ms > 301 {
		t.Errorf("latency p50 %v ms, p99 %v ms; want 200 and 300", w.P50ms, w.P99ms)
	}

	ph.Stats = w
	r := &report{Phases: []*phaseReport{ph}, Final: finalReport{Compared: true, LiveHash: "a", ReplayHash: "a"}}
	if f := r.failures(); len(f) != 1 || !strings.Contains(f[0], "every broker was down") {
		t.Errorf("failures: %q, want the 2xx while every broker was down", f)
	}
	ph.Stats.OKWhileAllDown = 0
	if !r.ok() {
		t.Errorf("a clean run fails: %q", r.failures())
	}
	r.Final.ReplayHash = "b"
	ph.Lost = []lostMessage{{MessageID: "m"}}
	if f := r.failures(); len(f) != 2 {
		t.Errorf("failures with a lost message and different hashes: %q", f)
	}
}

func TestBehind(t *testing.T) {
	ends := offsets{"a": {0: 10, 1: 5}, "b": {0: 0}}
	if n := behind(ends, offsets{"a": {0: 7}}); n != 8 {
		t.Errorf("behind: %d, want 8", n)
	}
	if n := behind(ends, offsets{"a": {0: 10, 1: 6}}); n != 0 {
		t.Errorf("behind when ahead: %d, want 0", n)
	}
}
