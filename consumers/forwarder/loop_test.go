package forwarder_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/omnisync/omnisync/consumers/forwarder"
	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/events"
)

// Two-way sync with a CRM: the forwarder sends the CRM omnisync's merged
// record after another channel changed it, and the CRM, as its change hook
// does, sends the record it stored back as a change of its own; that echo,
// folded by merge into a new version whose last change came from the CRM,
// is not forwarded again (nor is the CRM's own first change), so there is
// no loop: the CRM receives exactly one record.
func TestTwoWaySyncNoLoop(t *testing.T) {
	r := newRig(t, testenv.RealKafka(t), 1)
	policy := merge.DefaultPolicy()
	const crmSource = "producer/crm/main@crm-producer"
	var (
		mu  sync.Mutex
		rec = merge.Record{CustomerID: testenv.UniqueName(t, "c")}
		n   int
	)
	// fold applies an event as the materializer does and publishes the new
	// state when the record changed.
	fold := func(ch events.Channel, source string, at time.Time, p *events.Profile) {
		mu.Lock()
		defer mu.Unlock()
		n++
		ev := &events.CustomerEvent{EventID: rec.CustomerID + "-e" + string(rune('0'+n)), CustomerID: rec.CustomerID, Channel: ch, Source: source,
			Op: events.OpUpsert, OccurredAt: at, IngestedAt: at, Profile: p, Clears: []string{}}
		next, _ := merge.Apply(rec, ev, policy)
		if next.Version == rec.Version {
			return
		}
		rec = next
		st := rec.State()
		r.produce(t, &st)
	}
	str := func(s string) *string { return &s }

	var received []forwarder.Body
	var echoes sync.WaitGroup
	crm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var b forwarder.Body
		if err := json.NewDecoder(req.Body).Decode(&b); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		received = append(received, b)
		mu.Unlock()
		// The CRM stores the record, and its change hook sends it back.
		var name, phone string
		_ = json.Unmarshal(b.Fields["name"].Value, &name)
		_ = json.Unmarshal(b.Fields["phone"].Value, &phone)
		echoes.Add(1)
		go func() {
			defer echoes.Done()
			fold(events.ChannelCRM, crmSource, time.Now().UTC().Truncate(time.Millisecond), &events.Profile{Name: &name, Phone: &phone})
		}()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer crm.Close()
	reg := prometheus.NewRegistry()
	metrics := forwarder.NewMetrics(reg, r.group)
	r.run(t, crm.URL, metrics, func(c *forwarder.Config) { c.SkipSources = []string{"crm/main"} })

	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
	fold(events.ChannelCRM, crmSource, t0, &events.Profile{Name: str("Li Na")})                                       // the CRM's own change: v1
	fold(events.ChannelWeb, "producer/web@web-1", t0.Add(time.Minute), &events.Profile{Phone: str("+8613800138000")}) // a web change: v2
	deadline := time.Now().Add(time.Minute)
	for {
		r.waitCommittedToEnd(t)
		echoes.Wait()
		mu.Lock()
		version := rec.Version
		mu.Unlock()
		if version >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.waitCommittedToEnd(t) // the echo's version, v3, was read
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if rec.Version != 3 {
		t.Fatalf("record at version %d, want 3: the CRM's change, the web change, the CRM's echo", rec.Version)
	}
	if len(received) != 1 || received[0].Version != 2 || string(received[0].Fields["phone"].Value) != `"+8613800138000"` {
		t.Fatalf("the CRM received %d records %+v, want only version 2 (the web change)", len(received), received)
	}
	if got := metric(t, reg, "omnisync_forwarder_skipped_total", ""); got != 2 {
		t.Fatalf("%v records skipped, want 2 (the CRM's change and its echo)", got)
	}
}

// Echo looks at the newest field writes only.
func TestEcho(t *testing.T) {
	at := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	reg := func(source string, minutes int) events.Register {
		return events.Register{ValueJSON: `"x"`, OccurredAt: at.Add(time.Duration(minutes) * time.Minute), Source: source}
	}
	for _, c := range []struct {
		name   string
		fields map[string]events.Register
		want   bool
	}{
		{"newest from the CRM", map[string]events.Register{"name": reg("producer/crm/main@h", 2), "phone": reg("producer/web@h", 1)}, true},
		{"newest from the web", map[string]events.Register{"name": reg("producer/crm/main@h", 1), "phone": reg("producer/web@h", 2)}, false},
		{"tie with another system", map[string]events.Register{"name": reg("producer/crm/main@h", 2), "phone": reg("producer/crm/erp@h", 2)}, false},
		{"another system", map[string]events.Register{"name": reg("producer/crm/erp@h", 2)}, false},
		{"no fields (a delete)", map[string]events.Register{}, false},
	} {
		if got := forwarder.Echo(&events.CustomerState{Fields: c.fields}, []string{"crm/main"}); got != c.want {
			t.Errorf("%s: Echo = %v, want %v", c.name, got, c.want)
		}
	}
	if forwarder.Echo(&events.CustomerState{Fields: map[string]events.Register{"name": reg("producer/crm/main@h", 2)}}, nil) {
		t.Error("Echo without systems to skip: true")
	}
}
