package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/pkg/events"
)

// scanned is one customer as Scan hands it over.
type scanned struct {
	record   merge.Record
	messages []string // message IDs
}

func scanAll(t *testing.T, s store.Scanner) []scanned {
	t.Helper()
	var out []scanned
	err := s.Scan(ctx, func(r merge.Record, ms []events.MessageEvent) error {
		ids := []string{}
		for _, m := range ms {
			if m.CustomerID != r.CustomerID {
				return fmt.Errorf("message %s of %s handed over with customer %s", m.MessageID, m.CustomerID, r.CustomerID)
			}
			ids = append(ids, m.MessageID)
		}
		out = append(out, scanned{r, ids})
		return nil
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return out
}

// testScanAndReplace checks Scan (every customer, tombstones included, in
// ID order with its messages sorted by ID, across pages) and Replace
// (everything of the named customers replaced, nothing else touched).
func testScanAndReplace(t *testing.T, s store.Store) {
	sc, ok := s.(store.Scanner)
	rp, ok2 := s.(store.Replacer)
	if !ok || !ok2 {
		t.Fatalf("%T implements store.Scanner %v, store.Replacer %v; want both", s, ok, ok2)
	}
	if got := scanAll(t, sc); len(got) != 0 {
		t.Fatalf("Scan of an empty store handed over %d customers", len(got))
	}

	// More customers than one page of either store (500), in an order
	// that is not their IDs'; one of them deleted, some with messages.
	const n = 1203
	want := map[string]merge.Record{}
	wantMsgs := map[string][]string{}
	var recs []merge.Record
	var msgs []events.MessageEvent
	for i := range n {
		id := fmt.Sprintf("cus_scan_%04d", (i*7919)%n)
		r := fold(t, merge.Record{}, upsert(id, id+"-up", time.Hour, events.ChannelApp, name("Scan"), ident("app_user", "", "u-"+id)))
		if i%100 == 0 {
			ms := []events.MessageEvent{message(id, id+"/m2", 2*time.Hour, events.ChannelWeb, "b"), message(id, id+"/m1", 3*time.Hour, events.ChannelWeb, "a")}
			r = foldMessages(t, r, ms...)
			msgs = append(msgs, ms...)
			wantMsgs[id] = []string{id + "/m1", id + "/m2"}
		}
		recs = append(recs, r)
		want[id] = r
	}
	gone := fold(t, want["cus_scan_0005"], remove("cus_scan_0005", "cus_scan_0005-del", 4*time.Hour))
	want["cus_scan_0005"], wantMsgs["cus_scan_0005"] = gone, nil
	apply(t, s, batch(recs, msgs...))
	apply(t, s, batch(records(gone)))

	got := scanAll(t, sc)
	if len(got) != n {
		t.Fatalf("Scan handed over %d customers, want %d", len(got), n)
	}
	for i, c := range got {
		id := c.record.CustomerID
		if i > 0 && got[i-1].record.CustomerID >= id {
			t.Fatalf("Scan order: %s after %s", id, got[i-1].record.CustomerID)
		}
		if w, ok := want[id]; !ok || w.CanonicalHash() != c.record.CanonicalHash() {
			t.Errorf("Scan: record of %s differs from the applied one (known %v)", id, ok)
		}
		if !slices.Equal(c.messages, wantMsgs[id]) {
			t.Errorf("Scan: messages of %s = %v, want %v", id, c.messages, wantMsgs[id])
		}
	}
	if !got[5].record.Deleted() {
		t.Errorf("Scan: cus_scan_0005 handed over without its tombstone: %+v", got[5].record)
	}

	stop := errors.New("stop")
	calls := 0
	if err := sc.Scan(ctx, func(merge.Record, []events.MessageEvent) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Scan with fn failing: %v after %d calls, want fn's error after 1", err, calls)
	}

	// Replace: cus_scan_0101 gets another record and one other message
	// (its two messages go), cus_scan_0202 is removed, cus_scan_9999 (not
	// stored) is added; the offsets stay.
	if len(wantMsgs["cus_scan_0101"]) != 2 || len(wantMsgs["cus_scan_0202"]) != 2 {
		t.Fatal("fixture: cus_scan_0101 and cus_scan_0202 must have messages")
	}
	offsets, err := s.Offsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	other := fold(t, merge.Record{}, upsert("cus_scan_0101", "x-up", 5*time.Hour, events.ChannelCRM, name("Other")))
	om := message("cus_scan_0101", "cus_scan_0101/m9", 6*time.Hour, events.ChannelApp, "replaced")
	other = foldMessages(t, other, om)
	added := fold(t, merge.Record{}, upsert("cus_scan_9999", "y-up", 5*time.Hour, events.ChannelCRM, name("Added")))
	if err := rp.Replace(ctx, []string{"cus_scan_0101", "cus_scan_0202", "cus_scan_9999"},
		records(other, added), []events.MessageEvent{om}); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	checkCustomer(t, s, other)
	checkCustomer(t, s, added)
	if got := timelineIDs(t, s, "cus_scan_0101"); !slices.Equal(got, []string{om.MessageID}) {
		t.Errorf("timeline after Replace = %v, want [%s]", got, om.MessageID)
	}
	if _, ok, err := s.Customer(ctx, "cus_scan_0202"); ok || err != nil {
		t.Errorf("Customer(cus_scan_0202) after Replace without its record: found %v, %v; want removed", ok, err)
	}
	if got := timelineIDs(t, s, "cus_scan_0202"); len(got) != 0 {
		t.Errorf("timeline of a removed customer = %v, want empty", got)
	}
	if got := search(t, s, "u-cus_scan_0101"); len(got) != 0 {
		t.Errorf("search by a replaced-away identity = %v, want none", got)
	}
	for id, ms := range wantMsgs { // the untouched customers with messages
		if id == "cus_scan_0101" || id == "cus_scan_0202" || len(ms) == 0 {
			continue
		}
		checkCustomer(t, s, want[id])
		if got := timelineIDs(t, s, id); !slices.Equal(slices.Sorted(slices.Values(got)), ms) {
			t.Errorf("timeline of untouched %s = %v, want %v", id, got, ms)
		}
	}
	after, err := s.Offsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(offsets, after); diff != "" {
		t.Errorf("Replace changed the offsets (-before +after):\n%s", diff)
	}
	if got := scanAll(t, sc); len(got) != n {
		t.Errorf("Scan after Replace handed over %d customers, want %d (one removed, one added)", len(got), n)
	}
}
