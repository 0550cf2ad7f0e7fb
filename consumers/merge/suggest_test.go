package merge_test

import (
	"testing"
	"time"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/pkg/events"
)

// suggestEv returns a SUGGEST_MERGE of other into cust (cust < other).
func suggestEv(id string, at time.Duration, other string) *events.CustomerEvent {
	e := event(events.OpSuggestMerge, id, at, events.ChannelApp)
	e.Merge = &events.Merge{SurvivorID: cust, AbsorbedID: other,
		Evidence: []events.Identity{{Kind: "phone", Value: "+8613800000001", Verified: true}, {Kind: "app_user", Scope: "shop", Value: "u-1", Verified: true}}}
	return e
}

func TestSuggestionOpensAReviewItem(t *testing.T) {
	p := merge.DefaultPolicy()
	r, out := merge.Apply(merge.Record{}, suggestEv("s1", 0, "cus_9"), p)
	if !out.Changed || out.ConflictsOpened != 1 || !r.NeedsReview || len(r.Conflicts) != 1 {
		t.Fatalf("suggestion not opened: %+v, %+v", out, r.Conflicts)
	}
	c := r.Conflicts[0]
	s, ok := merge.SuggestionOf(c)
	if !ok || c.Field != merge.SuggestionField || s.CustomerID != "cus_9" || len(s.Evidence) != 2 ||
		s.Evidence[1] != (merge.Evidence{Kind: "app_user", Scope: "shop", Value: "u-1", Verified: true}) ||
		c.CandidateChannel != events.ChannelApp || !c.DetectedAt.Equal(t0) || c.Current != `"cus_1"` {
		t.Fatalf("suggestion %+v, candidate %+v", c, s)
	}
	if len(r.Fields) != 0 || len(r.Identities) != 0 {
		t.Errorf("a suggestion wrote fields or identities: %+v %+v", r.Fields, r.Identities)
	}

	// The same pair suggested again by another event: one review item.
	again, out := merge.Apply(r, suggestEv("s2", time.Hour, "cus_9"), p)
	if out.Changed || len(again.Conflicts) != 1 {
		t.Errorf("second suggestion of the same pair changed the record: %+v", again.Conflicts)
	}

	// Rejected (keep current): closed, and never suggested again.
	rejected, out := merge.Apply(r, resolve("r1", 2*time.Hour, merge.SuggestionField, "s1", events.ChoiceKeepCurrent, nil), p)
	if !out.Changed || rejected.NeedsReview || rejected.Conflicts[0].Status != events.ConflictKeptCurrent || len(rejected.Fields) != 0 {
		t.Fatalf("reject: %+v %+v", out, rejected.Conflicts)
	}
	if after, out := merge.Apply(rejected, suggestEv("s3", 3*time.Hour, "cus_9"), p); out.Changed || len(after.Conflicts) != 1 {
		t.Errorf("a rejected suggestion came back: %+v", after.Conflicts)
	}

	// Confirmed (take candidate): closed, no field written.
	confirmed, out := merge.Apply(r, resolve("r2", 2*time.Hour, merge.SuggestionField, "s1", events.ChoiceTakeCandidate, nil), p)
	if !out.Changed || confirmed.NeedsReview || confirmed.Conflicts[0].Status != events.ConflictTookCandidate || len(confirmed.Fields) != 0 {
		t.Fatalf("confirm: %+v %+v", out, confirmed.Conflicts)
	}

	// set_value makes no sense for a suggestion.
	if _, out := merge.Apply(r, resolve("r3", 2*time.Hour, merge.SuggestionField, "s1", events.ChoiceSetValue, ptr("x")), p); out.Ignored != merge.ReasonInvalidValue {
		t.Errorf("set_value on a suggestion: %+v", out)
	}
}

func TestSuggestionRefusesWrongDirection(t *testing.T) {
	e := suggestEv("s1", 0, "cus_0") // cus_0 < cus_1: cus_1 would not survive
	if _, out := merge.Apply(merge.Record{}, e, merge.DefaultPolicy()); out.Ignored != merge.ReasonBadMerge {
		t.Errorf("suggestion keyed by the greater ID: %+v", out)
	}
	e = suggestEv("s2", 0, "cus_9")
	e.CustomerID = "cus_9"
	if _, out := merge.Apply(merge.Record{}, e, merge.DefaultPolicy()); out.Ignored != merge.ReasonBadMerge {
		t.Errorf("suggestion keyed by the absorbed customer: %+v", out)
	}
}

func TestSuggestionSurvivesJSONRoundTrip(t *testing.T) {
	r, _ := merge.Apply(merge.Record{}, suggestEv("s1", 0, "cus_9"), merge.DefaultPolicy())
	b, err := r.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var back merge.Record
	if err := back.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	if back.CanonicalHash() != r.CanonicalHash() {
		t.Error("a record with a suggestion does not round-trip")
	}
}
