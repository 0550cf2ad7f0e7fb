package main

import (
	"strings"
	"testing"
	"time"
)

// The fault window counts attempts by the time they were sent; a 2xx
// answered while every broker was down is a failure of the run, one
// answered after their return is not.
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
		{Attempts: []attempt{a(38, 40.5, 200)}},                                  // sent while down, 2xx after the return
		{Attempts: []attempt{a(39, 39.1, 400), a(40, 40.9, 201)}},                // other; the first 2xx after the end
	}
	w := windowStats(reqs, ph)
	want := windowReport{Sent: 6, OK: 3, Unavailable: 1, NoAnswer: 1, Other: 1, Share2xx: 50, SentWhileAllDown: 5, OKWhileAllDown: 1, OKAfterReturn: 1}
	got := w
	got.FirstOKSeconds, got.P50ms, got.P99ms = nil, 0, 0
	if got != want {
		t.Errorf("windowStats:\n got %+v\nwant %+v", got, want)
	}
	if w.FirstOKSeconds == nil || *w.FirstOKSeconds < 0.89 || *w.FirstOKSeconds > 0.91 {
		t.Errorf("first 2xx after the fault end: %v s, want 0.9", w.FirstOKSeconds)
	}
	if w.P50ms < 299 || w.P50ms > 301 || w.P99ms < 2499 || w.P99ms > 2501 {
		t.Errorf("latency p50 %v ms, p99 %v ms; want 300 and 2500", w.P50ms, w.P99ms)
	}

	ph.Stats = w
	ph.OwnedSeconds = ptr(2.0)
	r := &report{Phases: []*phaseReport{ph}, Final: finalReport{Compared: true, LiveHash: "a", ReplayHash: "a"}}
	if f := r.failures(); len(f) != 1 || !strings.Contains(f[0], "answered 2xx while every broker was down") {
		t.Errorf("failures: %q, want the 2xx answered while every broker was down", f)
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

// Each recovery promise is checked against what the run measured; a missed
// or unmeasured one fails the run.
func TestTargets(t *testing.T) {
	r := &report{
		Phases: []*phaseReport{
			{Fault: "broker-kill", Stats: windowReport{Sent: 2000, OK: 1999, Share2xx: 99.95}},
			{Fault: "member-restart", MemberStops: []*memberStop{
				{Member: "consume-1", Signal: "SIGTERM", TakenOverSeconds: ptr(1.2), OwnedSeconds: ptr(3.0)},
				{Member: "consume-2", Signal: "SIGTERM", TakenOverSeconds: nil, OwnedSeconds: ptr(6.5)},
			}},
			{Fault: "postgres-stop", DrainSeconds: ptr(4.0)},
			{Fault: "all-brokers-stop", OwnedSeconds: ptr(5.0)},
		},
		Final: finalReport{Compared: true, LiveHash: "a", ReplayHash: "a"},
	}
	var missed []string
	for _, p := range r.targets() {
		if !p.met {
			missed = append(missed, p.name+": "+p.measured)
		}
	}
	want := []string{
		"survivor owns every partition ≤ 5 s after SIGTERM of consume-2: not measured",
		"every partition owned ≤ 5 s after consume-2 restarted: 6.5 s",
	}
	if strings.Join(missed, "\n") != strings.Join(want, "\n") {
		t.Errorf("missed targets:\n%s\nwant:\n%s", strings.Join(missed, "\n"), strings.Join(want, "\n"))
	}
	if f := r.failures(); len(f) != 2 {
		t.Errorf("failures: %q, want the two missed targets", f)
	}
	r.Phases[0].Stats.Share2xx = 99.8
	if f := r.failures(); len(f) != 3 {
		t.Errorf("failures with 99.8 %% through a broker kill: %q", f)
	}
	if md := r.markdown(); !strings.Contains(md, "| every partition owned ≤ 5 s after consume-2 restarted | 6.5 s | **no** |") {
		t.Errorf("the report's targets table lacks the missed target:\n%s", md)
	}
}
