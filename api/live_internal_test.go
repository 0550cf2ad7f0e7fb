package api

import (
	"slices"
	"testing"
	"time"

	"github.com/omnisync/omnisync/pkg/events"
)

func newTestLive(buffer int) *Live {
	return &Live{ClientBuffer: buffer, Heartbeat: time.Hour, clients: map[*liveClient]struct{}{}, byCustomer: map[string]map[*liveClient]struct{}{},
		seen: map[string]seenState{}}
}

func state(customer string, version int64, phone string, conflict events.ConflictStatus, contact int64) *events.CustomerState {
	st := &events.CustomerState{CustomerID: customer, Version: version,
		Fields: map[string]events.Register{"phone": {ValueJSON: `"` + phone + `"`, EventID: "e-" + phone}}}
	if conflict != "" {
		st.Conflicts = []events.Conflict{{ID: "c1", Field: "phone", Status: conflict}}
	}
	if contact > 0 {
		t := time.UnixMilli(contact)
		st.LastContactAt = &t
	}
	return st
}

// A client that falls more than its buffer behind is dropped (told to
// resync) without delaying the others.
func TestLiveDropsASlowClient(t *testing.T) {
	l := newTestLive(2)
	slow, _, _ := l.subscribe("", "")
	fast, _, _ := l.subscribe("", "")
	other, _, _ := l.subscribe("cus_other", "")
	for i := range 5 {
		l.publish("0-"+string(rune('0'+i)), state("cus_a", int64(i+1), "1", "", 0), time.Now())
		<-fast.ch // the fast client keeps up
	}
	select {
	case <-slow.dropped:
	default:
		t.Fatal("the slow client was not dropped")
	}
	select {
	case <-fast.dropped:
		t.Fatal("the fast client was dropped")
	case <-other.dropped:
		t.Fatal("a client of another customer was dropped")
	default:
	}
	if n := l.Clients(); n != 2 {
		t.Errorf("%d clients, want 2", n)
	}
}

func TestLiveChangesAndResume(t *testing.T) {
	l := newTestLive(16)
	steps := []struct {
		st   *events.CustomerState
		want []string
	}{
		{state("cus_a", 1, "1", "", 0), []string{"record"}},
		{state("cus_a", 2, "1", events.ConflictOpen, 0), []string{"conflict"}},
		{state("cus_a", 3, "2", events.ConflictTookCandidate, 0), []string{"field", "resolution"}},
		{state("cus_a", 4, "2", events.ConflictTookCandidate, 99), []string{"message"}},
		{state("cus_a", 4, "2", events.ConflictTookCandidate, 99), nil}, // a re-publication: no event
	}
	c, _, _ := l.subscribe("cus_a", "")
	for i, s := range steps {
		l.publish("0-"+string(rune('a'+i)), s.st, time.Now())
		if s.want == nil {
			if len(c.ch) != 0 {
				t.Errorf("step %d: a re-publication was sent", i)
			}
			continue
		}
		ev := <-c.ch
		if !slices.Equal(ev.Changes, s.want) {
			t.Errorf("step %d: changes %v, want %v", i, ev.Changes, s.want)
		}
	}
	_, missed, resync := l.subscribe("cus_a", "0-b")
	if resync || len(missed) != 2 || missed[0].ID != "0-c" || missed[1].ID != "0-d" {
		t.Errorf("resume after 0-b: resync %v, missed %d", resync, len(missed))
	}
	if _, _, resync := l.subscribe("", "7-7"); !resync {
		t.Error("resume from an unknown ID: no resync")
	}
}
