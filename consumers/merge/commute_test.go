package merge_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/pkg/events"
)

// interleave returns a random interleaving of evs and msgs that keeps the
// order of each: how a materializer polling the two topics in chunks may
// fold them.
func interleave(rng *rand.Rand, evs, msgs []item) []item {
	out := make([]item, 0, len(evs)+len(msgs))
	i, j := 0, 0
	for i < len(evs) || j < len(msgs) {
		// Runs of random length from one topic, then the other, like polls.
		n := 1 + rng.IntN(4)
		if j == len(msgs) || i < len(evs) && rng.IntN(2) == 0 {
			for ; n > 0 && i < len(evs); n-- {
				out = append(out, evs[i])
				i++
			}
		} else {
			for ; n > 0 && j < len(msgs); n-- {
				out = append(out, msgs[j])
				j++
			}
		}
	}
	return out
}

// foldItems folds items into fresh records, by customer.
func foldItems(items []item) map[string]merge.Record {
	recs := map[string]merge.Record{}
	for _, it := range items {
		c := it.customer()
		recs[c], _ = it.apply(recs[c], nil)
	}
	return recs
}

// splitTopics returns the customer events and the messages of log, each in
// log order.
func splitTopics(log []item) (evs, msgs []item) {
	for _, it := range log {
		if it.msg != nil {
			msgs = append(msgs, it)
		} else {
			evs = append(evs, it)
		}
	}
	return evs, msgs
}

// TestInterleavings folds random logs of customer events and messages (many
// deletes, many messages, re-sends) in many interleavings of the two topics,
// each topic's order kept, and requires the same record whatever the
// interleaving: the record is a function of the customer events' sequence
// and the messages.
func TestInterleavings(t *testing.T) {
	customers := []string{"cus_a", "cus_b"}
	raced := 0 // interleavings in which a DELETE and a newer or older message swapped
	for seed := range uint64(80) {
		log := genMix(seed, customers, 150, 8, 35)
		evs, msgs := splitTopics(log)
		want := foldItems(append(append([]item{}, evs...), msgs...)) // every event, then every message
		rng := rand.New(rand.NewPCG(seed, 7))
		for k := range 25 {
			order := interleave(rng, evs, msgs)
			if k == 0 {
				order = append(append([]item{}, msgs...), evs...) // every message first
			}
			raced += racedDeletes(order)
			got := foldItems(order)
			for _, c := range customers {
				if got[c].CanonicalHash() != want[c].CanonicalHash() {
					t.Fatalf("seed %d, interleaving %d, %s: the record depends on the interleaving:\nevents first %s\ninterleaved  %s\nlog of %s:\n%s",
						seed, k, c, js(want[c]), js(got[c]), c, logOf(order, c))
				}
			}
		}
	}
	if raced == 0 {
		t.Error("no interleaving moved a message across a DELETE")
	}
	t.Logf("%d message/DELETE pairs folded in the other order than events-first", raced)
}

// racedDeletes counts the pairs of a DELETE and a message of its customer
// that order folds message first: the pairs whose order decides what the
// delete erases.
func racedDeletes(order []item) int {
	n := 0
	seen := map[string]int{} // messages so far, by customer
	for _, it := range order {
		switch {
		case it.msg != nil:
			seen[it.msg.CustomerID]++
		case it.ev.Op == events.OpDelete:
			n += seen[it.ev.CustomerID]
		}
	}
	return n
}

// TestDeleteAndMessageRace is the race at the heart of it, spelled out: a
// DELETE and a newer and an older message, folded in every order, give one
// record; the newer message's contact and identity survive the delete, the
// older one's do not, and each message counts in the version.
func TestDeleteAndMessageRace(t *testing.T) {
	base := upsert("e1", 0, crm, set("name", "Li"), ident("crm", "42"))
	del := remove("d1", 2*time.Hour)
	older := message("m1", time.Hour, wechat, events.Identity{Kind: "wechat_openid", Value: "old", Verified: true})
	newer := message("m2", 3*time.Hour, app, events.Identity{Kind: "app_user", Value: "u1", Verified: true})
	orders := [][]item{
		{{ev: base}, {ev: del}, {msg: older}, {msg: newer}},
		{{ev: base}, {msg: older}, {msg: newer}, {ev: del}},
		{{msg: older}, {ev: base}, {msg: newer}, {ev: del}},
		{{msg: older}, {msg: newer}, {ev: base}, {ev: del}},
		{{ev: base}, {msg: older}, {ev: del}, {msg: newer}},
	}
	var want merge.Record
	for i, order := range orders {
		got := foldItems(order)[cust]
		if i == 0 {
			want = got
			continue
		}
		if got.CanonicalHash() != want.CanonicalHash() {
			t.Fatalf("order %d gives another record:\nfirst %s\nthis  %s", i, js(want), js(got))
		}
	}
	if want.LastContact == nil || want.LastContact.EventID != "m2" || want.LastContactChannel != app {
		t.Errorf("last contact %v on %s, want the newer message's", want.LastContact, want.LastContactChannel)
	}
	ids := want.AllIdentities()
	if len(ids) != 1 || ids[0] != (events.Identity{Kind: "app_user", Value: "u1", Verified: true}) {
		t.Errorf("identities %v, want only the newer message's", ids)
	}
	if len(want.Fields) != 0 || want.Tombstone == nil || want.Tombstone.EventID != "d1" {
		t.Errorf("the delete did not erase the profile: %s", js(want))
	}
	if want.Version != 4 {
		t.Errorf("version %d, want 4: the upsert, the delete and each message", want.Version)
	}
	if !want.UpdatedAt.Equal(t0.Add(3 * time.Hour)) {
		t.Errorf("UpdatedAt %v, want the newer message's time", want.UpdatedAt)
	}
}
