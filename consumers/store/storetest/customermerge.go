package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/pkg/events"
)

// mergeStep folds one merge event into r and returns the record and the
// one event it emits (the hand-off or the release).
func mergeStep(t *testing.T, r merge.Record, e *events.CustomerEvent) (merge.Record, *events.CustomerEvent) {
	t.Helper()
	next, o := merge.Apply(r, e, policy)
	if !o.Changed || len(o.Emit) != 1 {
		t.Fatalf("building records: merge event %s: changed %v, %d emitted (%+v)", e.EventID, o.Changed, len(o.Emit), o)
	}
	return next, &o.Emit[0]
}

// mergeRequest is a MERGE request keyed by the absorbed customer.
func mergeRequest(survivor, absorbed, id string, at time.Duration) *events.CustomerEvent {
	e := event(events.OpMerge, absorbed, id, at, events.ChannelAgent)
	e.Merge = &events.Merge{SurvivorID: survivor, AbsorbedID: absorbed, DecidedBy: "agent-7"}
	return e
}

// unmergeRequest is an UNMERGE request keyed by the survivor.
func unmergeRequest(survivor, absorbed, mergeID, id string, at time.Duration) *events.CustomerEvent {
	e := event(events.OpUnmerge, survivor, id, at, events.ChannelAgent)
	e.Merge = &events.Merge{MergeID: mergeID, SurvivorID: survivor, AbsorbedID: absorbed, DecidedBy: "agent-7"}
	return e
}

// A chain of merges (c into b, b into a) and an unmerge: the redirects,
// the survivor's one timeline with the absorbed customers' messages, the
// list without absorbed customers, and everything back after the unmerge.
func testCustomerMerge(t *testing.T, s store.Store) {
	h := time.Hour
	a := fold(t, merge.Record{}, upsert("cus_ma", "ma1", h, events.ChannelCRM, name("Liu Yang"), ident("crm", "", "crm-ma")))
	b := fold(t, merge.Record{}, upsert("cus_mb", "mb1", h, events.ChannelWeChat, phone("+8613800138000")))
	c := fold(t, merge.Record{}, upsert("cus_mc", "mc1", h, events.ChannelApp, email("liu@example.com")))
	ma := message("cus_ma", "msg-a", 2*h, events.ChannelCRM, "a")
	mb := message("cus_mb", "msg-b", 3*h, events.ChannelWeChat, "b")
	mc := message("cus_mc", "msg-c", 4*h, events.ChannelApp, "c")
	a, b, c = foldMessages(t, a, ma), foldMessages(t, b, mb), foldMessages(t, c, mc)
	apply(t, s, batch(records(a, b, c), ma, mb, mc))
	before := map[string]merge.Record{"cus_ma": a, "cus_mb": b, "cus_mc": c}

	// c into b, then b into a: each request freezes the absorbed customer
	// and hands it off to its survivor.
	c2, handC := mergeStep(t, c, mergeRequest("cus_mb", "cus_mc", "merge-c", 5*h))
	b2 := fold(t, b, handC)
	b3, handB := mergeStep(t, b2, mergeRequest("cus_ma", "cus_mb", "merge-b", 6*h))
	a2 := fold(t, a, handB)
	apply(t, s, batch(records(c2, b2)))
	mergedBatch := batch(records(b3, a2))
	mergedBatch.Base = map[string]merge.Record{"cus_mb": b2, "cus_ma": a} // the in-place update path
	apply(t, s, mergedBatch)
	for _, r := range []merge.Record{a2, b3, c2} {
		checkCustomer(t, s, r)
	}
	for id, want := range map[string]string{"cus_ma": "", "cus_mb": "cus_ma", "cus_mc": "cus_mb", "cus_none": ""} {
		if got, err := s.Redirect(ctx, id); err != nil || got != want {
			t.Errorf("Redirect(%s) = %q, %v; want %q", id, got, err, want)
		}
	}
	if got, want := timelineIDs(t, s, "cus_ma"), []string{"msg-a", "msg-b", "msg-c"}; !slices.Equal(got, want) {
		t.Errorf("Timeline of the survivor = %v, want %v (every absorbed customer's messages, once)", got, want)
	}
	if got, want := timelineIDs(t, s, "cus_mb"), []string{"msg-b", "msg-c"}; !slices.Equal(got, want) {
		t.Errorf("Timeline of the middle of the chain = %v, want %v", got, want)
	}
	page, err := s.Timeline(ctx, "cus_ma", &store.Cursor{At: t0.Add(2 * h).UnixMilli(), ID: "msg-a"}, 1)
	if err != nil || len(page) != 1 || page[0].MessageID != "msg-b" {
		t.Errorf("Timeline page after msg-a = %v, %v; want msg-b", page, err)
	}
	channels, err := s.MessageChannels(ctx, []string{"cus_ma", "cus_mb"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := channels["cus_ma"], []events.Channel{events.ChannelApp, events.ChannelCRM, events.ChannelWeChat}; !slices.Equal(got, want) {
		t.Errorf("MessageChannels of the survivor = %v, want %v (its absorbed customers' too)", got, want)
	}
	if got, want := channels["cus_mb"], []events.Channel{events.ChannelApp, events.ChannelWeChat}; !slices.Equal(got, want) {
		t.Errorf("MessageChannels of the middle of the chain = %v, want %v", got, want)
	}
	if got := search(t, s, ""); !slices.Equal(got, []string{"cus_ma"}) {
		t.Errorf("SearchCustomers lists %v, want only the survivor cus_ma", got)
	}
	if got := search(t, s, "liu@example.com"); !slices.Equal(got, []string{"cus_ma"}) {
		t.Errorf("SearchCustomers finds an absorbed customer's e-mail on %v, want the survivor cus_ma", got)
	}

	// Unmerge b from a: a is its own again, b is released and still
	// absorbs c.
	a3, release := mergeStep(t, a2, unmergeRequest("cus_ma", "cus_mb", "merge-b", "unmerge-b", 7*h))
	b4 := fold(t, b3, release)
	apply(t, s, batch(records(a3, b4)))
	checkCustomer(t, s, a3)
	checkCustomer(t, s, b4)
	if got, err := s.Redirect(ctx, "cus_mb"); err != nil || got != "" {
		t.Errorf("Redirect(cus_mb) after the unmerge = %q, %v; want none", got, err)
	}
	if got, want := timelineIDs(t, s, "cus_ma"), []string{"msg-a"}; !slices.Equal(got, want) {
		t.Errorf("Timeline of cus_ma after the unmerge = %v, want %v", got, want)
	}
	if got, want := search(t, s, ""), []string{"cus_ma", "cus_mb"}; !slices.Equal(got, want) {
		t.Errorf("SearchCustomers after the unmerge = %v, want %v", got, want)
	}
	if _, ok := a3.Fields["phone"]; ok || len(a3.Absorbed) != 0 || !slices.Equal(a3.Identities, before["cus_ma"].Identities) {
		t.Errorf("cus_ma still holds cus_mb's data after the unmerge: %+v", a3)
	}

	// Replace (a repair) removes and rewrites a customer's absorptions too.
	if r, ok := s.(store.Replacer); ok {
		if err := r.Replace(ctx, []string{"cus_mb"}, records(b3), []events.MessageEvent{mb}); err != nil {
			t.Fatal(err)
		}
		if got, want := timelineIDs(t, s, "cus_mb"), []string{"msg-b", "msg-c"}; !slices.Equal(got, want) {
			t.Errorf("Timeline of cus_mb after a Replace = %v, want %v", got, want)
		}
	}
}

// testMergedConflicts: a customer with an open conflict merged into another.
// The survivor carries the conflict with its ID while the absorbed customer
// keeps its own copy for an unmerge; both are stored, and the review queue
// shows the conflict once, on the customer that is not merged away.
func testMergedConflicts(t *testing.T, s store.Store) {
	h := time.Hour
	survivor := fold(t, merge.Record{}, upsert("cus_ka", "ka1", h, events.ChannelApp, name("Zhou Min")))
	absorbed := fold(t, merge.Record{},
		upsert("cus_kb", "kb1", h, events.ChannelCRM, phone("+8613800138000")),
		upsert("cus_kb", "kb2", 2*h, events.ChannelWeChat, phone("+8613900139000")))
	conflict := merge.ConflictID("cus_kb", "phone", "kb2")
	if len(absorbed.Conflicts) != 1 || absorbed.Conflicts[0].ID != conflict {
		t.Fatalf("fixture conflicts %+v, want one with ID %s", absorbed.Conflicts, conflict)
	}
	apply(t, s, batch(records(survivor, absorbed)))
	frozen, handOff := mergeStep(t, absorbed, mergeRequest("cus_ka", "cus_kb", "merge-k", 3*h))
	merged := fold(t, survivor, handOff)
	if !slices.ContainsFunc(merged.Conflicts, func(c merge.Conflict) bool { return c.ID == conflict }) {
		t.Fatalf("the survivor does not carry the absorbed customer's conflict: %+v", merged.Conflicts)
	}
	queue := func(wantCustomer string) {
		t.Helper()
		if got := conflictIDs(t, s, events.ConflictOpen); !slices.Equal(got, []string{conflict}) {
			t.Errorf("open conflicts = %v, want %s once", got, conflict)
		}
		c, ok, err := s.Conflict(ctx, conflict)
		if err != nil || !ok || c.CustomerID != wantCustomer {
			t.Errorf("Conflict(%s) = customer %q, %v, %v; want %s", conflict, c.CustomerID, ok, err, wantCustomer)
		}
	}
	// The survivor's batch may commit before the absorbed customer's freeze
	// (two partitions): both hold the conflict meanwhile.
	apply(t, s, batch(records(merged)))
	checkCustomer(t, s, merged)
	apply(t, s, batch(records(frozen)))
	checkCustomer(t, s, frozen)
	queue("cus_ka")

	split, release := mergeStep(t, merged, unmergeRequest("cus_ka", "cus_kb", "merge-k", "unmerge-k", 4*h))
	released := fold(t, frozen, release)
	apply(t, s, batch(records(split, released)))
	checkCustomer(t, s, split)
	checkCustomer(t, s, released)
	queue("cus_kb")
}
