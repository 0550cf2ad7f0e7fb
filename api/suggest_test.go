package api_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/omnisync/omnisync/api"
	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/pkg/events"
)

// appUser is a customer of the app only, greater than Li Na's ID.
const appUser = "cus_zzapp000000000000000"

// suggestLiNaWilson adds a merge suggestion to the fixture: an app login
// showed the app user's ID with the number Li Na's record was linked by.
func suggestLiNaWilson(t *testing.T, f *fixture) *events.CustomerEvent {
	t.Helper()
	f.feed(t, upsert(appUser, events.ChannelApp, at(3*time.Hour), events.Profile{Name: ptr("Li Na (app)")}, events.Identity{Kind: "app_user", Value: "u-777", Verified: true}))
	ev := &events.CustomerEvent{
		EventID: "3MSUGGESTxxxxxxxxxxxxxxxxxx", CustomerID: liNa, Channel: events.ChannelApp, Source: source(events.ChannelApp),
		Op: events.OpSuggestMerge, OccurredAt: at(3*time.Hour + 30*time.Minute), IngestedAt: at(3*time.Hour + 30*time.Minute),
		Merge: &events.Merge{SurvivorID: liNa, AbsorbedID: appUser, Evidence: []events.Identity{
			{Kind: "phone", Value: "+8613800138000", Verified: true}, {Kind: "app_user", Value: "u-777", Verified: true}}},
	}
	f.feed(t, ev)
	return ev
}

func TestMergeSuggestionConfirmed(t *testing.T) {
	f := newFixture(t)
	sug := suggestLiNaWilson(t, f)
	pub := &publisher{}
	h := newServer(t, f, pub)
	id := merge.ConflictID(liNa, merge.SuggestionField, sug.EventID)

	// In the review queue with its evidence.
	c := decode[api.Conflict](t, call(t, h, "GET", "/api/v1/conflicts/"+id, ""), http.StatusOK)
	if c.Field != "merge" || c.CandidateChannel != "APP" || string(c.Current) != `"`+liNa+`"` ||
		string(c.Candidate) != `{"customer_id":"`+appUser+`","evidence":[{"kind":"phone","value":"+8613800138000","verified":true},{"kind":"app_user","value":"u-777","verified":true}]}` {
		t.Fatalf("suggestion in the queue: %+v %s", c, c.Candidate)
	}
	wantError(t, call(t, h, "POST", "/api/v1/conflicts/"+id+"/resolve", `{"choice":"set_value","value":"x"}`),
		http.StatusBadRequest, "invalid_request", "confirmed (take_candidate) or rejected (keep_current)")

	acc := decode[api.ResolveAccepted](t, call(t, h, "POST", "/api/v1/conflicts/"+id+"/resolve", `{"choice":"take_candidate"}`), http.StatusAccepted)
	evs := pub.published()
	if len(evs) != 2 || acc.MergeEventID == "" || evs[0].EventID != acc.MergeEventID || evs[1].EventID != acc.EventID {
		t.Fatalf("published %d events, accepted %+v: want the MERGE, then the RESOLVE", len(evs), acc)
	}
	m := evs[0]
	if m.Op != events.OpMerge || m.CustomerID != appUser || m.Merge.SurvivorID != liNa || m.Merge.AbsorbedID != appUser ||
		m.Merge.DecidedBy != "bootstrap-admin" || len(m.Merge.Evidence) != 2 || m.Channel != events.ChannelAgent {
		t.Errorf("merge request %+v %+v", m, m.Merge)
	}
	// A retried confirmation requests the same merge.
	if again := (&publisher{}); true {
		decode[api.ResolveAccepted](t, call(t, newServer(t, f, again), "POST", "/api/v1/conflicts/"+id+"/resolve", `{"choice":"take_candidate"}`), http.StatusAccepted)
		if again.published()[0].EventID != m.EventID {
			t.Error("a retried confirmation made another MERGE request")
		}
	}

	// Fold the request, its hand-off and the resolution as the materializer does.
	rec, _, err := f.store.Customer(context.Background(), appUser)
	if err != nil {
		t.Fatal(err)
	}
	_, out := merge.Apply(rec, m, merge.DefaultPolicy())
	if len(out.Emit) != 1 {
		t.Fatalf("the request emitted %d events", len(out.Emit))
	}
	f.feed(t, m)
	f.feed(t, &out.Emit[0], evs[1])

	cust := decode[api.Customer](t, call(t, h, "GET", "/api/v1/customers/"+liNa, ""), http.StatusOK)
	if len(cust.AlsoKnownAs) != 1 || cust.AlsoKnownAs[0].ID != appUser || cust.AlsoKnownAs[0].DecidedBy != "bootstrap-admin" ||
		cust.AlsoKnownAs[0].MergeID != m.EventID || len(cust.AlsoKnownAs[0].Evidence) != 2 {
		t.Errorf("also known as: %+v", cust.AlsoKnownAs)
	}
	for _, x := range cust.Conflicts {
		if x.ID == id && x.Status != "TOOK_CANDIDATE" {
			t.Errorf("confirmed suggestion is %s", x.Status)
		}
	}
	// Confirming again: the customers are one.
	wantError(t, call(t, h, "POST", "/api/v1/conflicts/"+id+"/resolve", `{"choice":"take_candidate"}`),
		http.StatusConflict, "already_resolved", "TOOK_CANDIDATE")
}

func TestMergeSuggestionRejected(t *testing.T) {
	f := newFixture(t)
	sug := suggestLiNaWilson(t, f)
	pub := &publisher{}
	id := merge.ConflictID(liNa, merge.SuggestionField, sug.EventID)
	acc := decode[api.ResolveAccepted](t, call(t, newServer(t, f, pub), "POST", "/api/v1/conflicts/"+id+"/resolve", `{"choice":"keep_current"}`), http.StatusAccepted)
	evs := pub.published()
	if len(evs) != 1 || evs[0].Op != events.OpResolve || acc.MergeEventID != "" || evs[0].Resolution.Choice != events.ChoiceKeepCurrent {
		t.Fatalf("reject published %+v, answered %+v: want the RESOLVE only", evs, acc)
	}
}

func TestPhoneShownFromVerifiedIdentity(t *testing.T) {
	f := newFixture(t)
	caller := "cus_zzcaller0000000000000"
	f.feed(t, message(caller, events.ChannelPhone, at(4*time.Hour), "喂？"))
	ev := upsert(caller, events.ChannelPhone, at(4*time.Hour), events.Profile{}, events.Identity{Kind: "phone", Value: "+8613912345678", Verified: true})
	f.feed(t, ev)
	h := newServer(t, f, &publisher{})
	page := decode[api.Page[api.CustomerSummary]](t, call(t, h, "GET", "/api/v1/customers?q=%2B8613912345678", ""), http.StatusOK)
	if len(page.Items) != 1 || page.Items[0].Phone == nil || *page.Items[0].Phone != "+8613912345678" {
		t.Fatalf("a caller's list entry: %+v", page.Items)
	}
	// A field set by a channel wins over the identity.
	page = decode[api.Page[api.CustomerSummary]](t, call(t, h, "GET", "/api/v1/customers?q=Wilson", ""), http.StatusOK)
	if len(page.Items) != 1 || page.Items[0].Phone == nil || *page.Items[0].Phone != "+8613700137000" {
		t.Errorf("Wilson's phone: %+v", page.Items)
	}
}

// A pair merged another way (here by a MERGE request folded before the
// agent looks): confirming the suggestion only closes it.
func TestMergeSuggestionOfMergedPair(t *testing.T) {
	f := newFixture(t)
	sug := suggestLiNaWilson(t, f)
	req := &events.CustomerEvent{EventID: "3MERGEDxxxxxxxxxxxxxxxxxxxx", CustomerID: appUser, Channel: events.ChannelAgent, Source: "api@other",
		Op: events.OpMerge, OccurredAt: at(4 * time.Hour), IngestedAt: at(4 * time.Hour),
		Merge: &events.Merge{SurvivorID: liNa, AbsorbedID: appUser, DecidedBy: "agent-9"}}
	rec, _, err := f.store.Customer(context.Background(), appUser)
	if err != nil {
		t.Fatal(err)
	}
	_, out := merge.Apply(rec, req, merge.DefaultPolicy())
	f.feed(t, req)
	f.feed(t, &out.Emit[0])

	pub := &publisher{}
	id := merge.ConflictID(liNa, merge.SuggestionField, sug.EventID)
	acc := decode[api.ResolveAccepted](t, call(t, newServer(t, f, pub), "POST", "/api/v1/conflicts/"+id+"/resolve", `{"choice":"take_candidate"}`), http.StatusAccepted)
	if evs := pub.published(); len(evs) != 1 || evs[0].Op != events.OpResolve || acc.MergeEventID != "" {
		t.Errorf("confirming a suggestion of merged customers published %+v (%+v): want the RESOLVE only", evs, acc)
	}
}
