package api_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/omnisync/omnisync/api"
	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/pkg/events"
)

// fan is a WeChat fan whose ID is greater than Li Na's: merged, Li Na survives.
const fan = "cus_x1q8w0m4l2k7j6h5g4f3d"

// feedFolding folds ev, then every event the folds emit, each in a batch of
// its own as the materializer does (emitted events are folded when read
// back from the log).
func (f *fixture) feedFolding(t *testing.T, ev *events.CustomerEvent) {
	t.Helper()
	ctx := context.Background()
	policy := merge.DefaultPolicy()
	for queue := []events.CustomerEvent{*ev}; len(queue) > 0; queue = queue[1:] {
		e := queue[0]
		stored, err := f.store.Load(ctx, []string{e.CustomerID})
		if err != nil {
			t.Fatal(err)
		}
		r, o := merge.Apply(stored[e.CustomerID], &e, policy)
		if o.Ignored != "" {
			t.Fatalf("event %s %s for %s ignored: %s", e.Op, e.EventID, e.CustomerID, o.Ignored)
		}
		if err := f.store.Apply(ctx, &store.Batch{Group: "api-test", PolicyHash: policy.Hash(), Records: []merge.Record{r}}); err != nil {
			t.Fatal(err)
		}
		queue = append(queue, o.Emit...)
	}
}

// mergedFixture is the fixture with the fan (one message) merged into Li Na.
func mergedFixture(t *testing.T) (*fixture, *events.CustomerEvent) {
	f := newFixture(t)
	unionid := events.Identity{Kind: "wechat_unionid", Value: "oXyZ0unionid42", Verified: true}
	f.feed(t, upsert(fan, events.ChannelMiniProgram, at(2*time.Hour), events.Profile{}, unionid),
		message(fan, events.ChannelMiniProgram, at(2*time.Hour+time.Minute), "小程序里的消息"))
	req := &events.CustomerEvent{
		EventID: "3MSZ5JgxsTBNXdLu3UBcGmYQzC1", CustomerID: fan, Channel: events.ChannelAgent, Source: "api@console-1",
		Op: events.OpMerge, OccurredAt: at(4 * time.Hour), IngestedAt: at(4 * time.Hour),
		Merge: &events.Merge{SurvivorID: liNa, AbsorbedID: fan, Evidence: []events.Identity{unionid}, DecidedBy: "emma.clarke"},
	}
	f.feedFolding(t, req)
	return f, req
}

func TestCustomerRedirectAndAlsoKnownAs(t *testing.T) {
	f, req := mergedFixture(t)
	h := newServer(t, f, &publisher{})
	c := decode[api.Customer](t, call(t, h, "GET", "/api/v1/customers/"+fan, ""), 200)
	if c.ID != liNa || c.RedirectedFrom == nil || *c.RedirectedFrom != fan || !slices.Equal(c.RedirectPath, []string{fan}) {
		t.Errorf("GET of the absorbed customer answered %s, redirected from %v via %v; want %s redirected from %s",
			c.ID, c.RedirectedFrom, c.RedirectPath, liNa, fan)
	}
	if len(c.AlsoKnownAs) != 1 {
		t.Fatalf("also_known_as = %+v, want the fan", c.AlsoKnownAs)
	}
	aka := c.AlsoKnownAs[0]
	if aka.ID != fan || aka.MergeID != req.EventID || aka.DecidedBy != "emma.clarke" || !aka.MergedAt.Equal(at(4*time.Hour)) ||
		len(aka.Evidence) != 1 || aka.Evidence[0].Kind != "wechat_unionid" || aka.Via != nil {
		t.Errorf("also_known_as[0] = %+v", aka)
	}
	if !slices.ContainsFunc(c.Identities, func(i api.Identity) bool { return i.Kind == "wechat_unionid" }) {
		t.Errorf("the survivor lacks the absorbed customer's unionid: %+v", c.Identities)
	}
	direct := decode[api.Customer](t, call(t, h, "GET", "/api/v1/customers/"+liNa, ""), 200)
	if direct.RedirectedFrom != nil || len(direct.RedirectPath) != 0 || len(direct.AlsoKnownAs) != 1 {
		t.Errorf("GET of the survivor: redirected_from %v, path %v, also known as %d", direct.RedirectedFrom, direct.RedirectPath, len(direct.AlsoKnownAs))
	}
	// One timeline: Li Na's messages and the fan's, each once, by either ID.
	for _, id := range []string{liNa, fan} {
		p := decode[api.Page[api.Message]](t, call(t, h, "GET", "/api/v1/customers/"+id+"/timeline?limit=500", ""), 200)
		if len(p.Items) != len(f.msgs[liNa])+1 {
			t.Errorf("timeline via %s has %d messages, want %d", id, len(p.Items), len(f.msgs[liNa])+1)
		}
	}
	list := decode[api.Page[api.CustomerSummary]](t, call(t, h, "GET", "/api/v1/customers?limit=500", ""), 200)
	if slices.ContainsFunc(list.Items, func(s api.CustomerSummary) bool { return s.ID == fan }) {
		t.Error("the absorbed customer is still in the customer list")
	}
}

func TestCreateMerge(t *testing.T) {
	f := newFixture(t)
	pub := &publisher{}
	h := newServer(t, f, pub)
	// Given the other way round: the smaller ID survives.
	got := decode[api.MergeAccepted](t, call(t, h, "POST", "/api/v1/merges",
		`{"survivor_id":"`+wangFang+`","absorbed_id":"`+liNa+`","evidence":[{"kind":"phone","scope":"","value":"+8613800138000","verified":true}]}`), 202)
	if got.SurvivorID != liNa || got.AbsorbedID != wangFang || got.MergeID != got.EventID {
		t.Errorf("answer %+v, want survivor %s absorbed %s", got, liNa, wangFang)
	}
	evs := pub.published()
	if len(evs) != 1 {
		t.Fatalf("%d events published", len(evs))
	}
	ev := evs[0]
	if ev.Op != events.OpMerge || ev.CustomerID != wangFang || ev.Channel != events.ChannelAgent || ev.EventID != got.EventID ||
		ev.Merge == nil || ev.Merge.SurvivorID != liNa || ev.Merge.AbsorbedID != wangFang || ev.Merge.DecidedBy != "bootstrap-admin" ||
		ev.Merge.MergeID != "" || ev.Merge.PolicyHash != "" || len(ev.Merge.Evidence) != 1 || !ev.OccurredAt.Equal(now) {
		t.Errorf("published %+v (merge %+v)", ev, ev.Merge)
	}
	// The request folds as the design says: it freezes the absorbed customer.
	r, o := merge.Apply(merge.Record{}, ev, merge.DefaultPolicy())
	if !o.Changed || r.MergedInto == nil || r.MergedInto.CustomerID != liNa || len(o.Emit) != 1 {
		t.Errorf("the published request folds to %+v, %+v", r.MergedInto, o)
	}

	merged, _ := mergedFixture(t)
	for _, tc := range []struct {
		name, body   string
		code         int
		kind, reason string
	}{
		{"someone else as decided_by", `{"survivor_id":"` + liNa + `","absorbed_id":"` + wangFang + `","decided_by":"emma.clarke"}`, 400, "invalid_request", "the decider is the caller, bootstrap-admin"},
		{"no survivor", `{"absorbed_id":"` + wangFang + `"}`, 400, "invalid_request", "survivor_id"},
		{"unknown field", `{"survivor_id":"` + liNa + `","absorbed_id":"` + wangFang + `","why":"same"}`, 400, "invalid_request", "why"},
		{"evidence without a value", `{"survivor_id":"` + liNa + `","absorbed_id":"` + wangFang + `","evidence":[{"kind":"phone"}]}`, 400, "invalid_request", "evidence[0]"},
		{"unknown customer", `{"survivor_id":"cus_nobody","absorbed_id":"` + wangFang + `"}`, 404, "not_found", "cus_nobody"},
		{"the same customer", `{"survivor_id":"` + liNa + `","absorbed_id":"` + liNa + `"}`, 409, "already_merged", liNa},
		{"already merged, through the redirect", `{"survivor_id":"` + fan + `","absorbed_id":"` + liNa + `"}`, 409, "already_merged", liNa},
		{"an erased customer", `{"survivor_id":"` + zhangWei + `","absorbed_id":"` + liNa + `"}`, 409, "deleted", zhangWei},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub := &publisher{}
			wantError(t, call(t, newServer(t, merged, pub), "POST", "/api/v1/merges", tc.body), tc.code, tc.kind, tc.reason)
			if n := len(pub.published()); n != 0 {
				t.Errorf("%d events published", n)
			}
		})
	}
	// Merging with the absorbed customer's ID merges its survivor.
	pub = &publisher{}
	got = decode[api.MergeAccepted](t, call(t, newServer(t, merged, pub), "POST", "/api/v1/merges",
		`{"survivor_id":"`+fan+`","absorbed_id":"`+wangFang+`"}`), 202)
	if got.SurvivorID != liNa || got.AbsorbedID != wangFang {
		t.Errorf("merge with an absorbed ID: %+v, want survivor %s (the chain's end)", got, liNa)
	}
	pub.err = context.DeadlineExceeded
	wantError(t, call(t, newServer(t, merged, pub), "POST", "/api/v1/merges",
		`{"survivor_id":"`+liNa+`","absorbed_id":"`+wangFang+`"}`), 503, "unavailable", "merge")
}

func TestUnmerge(t *testing.T) {
	f, req := mergedFixture(t)
	pub := &publisher{}
	h := newServer(t, f, pub)
	got := decode[api.MergeAccepted](t, call(t, h, "POST", "/api/v1/customers/"+liNa+"/unmerge",
		`{"merge_id":"`+req.EventID+`"}`), 202)
	if got.SurvivorID != liNa || got.AbsorbedID != fan || got.MergeID != req.EventID {
		t.Errorf("answer %+v", got)
	}
	evs := pub.published()
	if len(evs) != 1 {
		t.Fatalf("%d events published", len(evs))
	}
	ev := evs[0]
	if ev.Op != events.OpUnmerge || ev.CustomerID != liNa || ev.EventID != got.EventID || ev.Merge == nil ||
		ev.Merge.MergeID != req.EventID || ev.Merge.SurvivorID != liNa || ev.Merge.AbsorbedID != fan || ev.Merge.PolicyHash != "" {
		t.Errorf("published %+v (merge %+v)", ev, ev.Merge)
	}
	// The API never writes the store: the survivor still holds the merge.
	if c := decode[api.Customer](t, call(t, h, "GET", "/api/v1/customers/"+liNa, ""), 200); len(c.AlsoKnownAs) != 1 {
		t.Errorf("the store changed: also_known_as %+v", c.AlsoKnownAs)
	}
	for _, tc := range []struct {
		name, target, body string
		code               int
		kind, reason       string
	}{
		{"unknown merge", "/api/v1/customers/" + liNa + "/unmerge", `{"merge_id":"nope"}`, 409, "not_merged", "nope"},
		{"on the absorbed customer", "/api/v1/customers/" + fan + "/unmerge", `{"merge_id":"` + req.EventID + `"}`, 409, "survivor_merged", liNa},
		{"unknown customer", "/api/v1/customers/cus_nobody/unmerge", `{"merge_id":"` + req.EventID + `"}`, 404, "not_found", "cus_nobody"},
		{"no merge_id", "/api/v1/customers/" + liNa + "/unmerge", `{}`, 400, "invalid_request", "merge_id"},
		{"someone else as decided_by", "/api/v1/customers/" + liNa + "/unmerge", `{"merge_id":"` + req.EventID + `","decided_by":"x"}`, 400, "invalid_request", "the decider is the caller"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub := &publisher{}
			wantError(t, call(t, newServer(t, f, pub), "POST", tc.target, tc.body), tc.code, tc.kind, tc.reason)
			if n := len(pub.published()); n != 0 {
				t.Errorf("%d events published", n)
			}
		})
	}
}
