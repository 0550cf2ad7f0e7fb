package merge_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/pkg/avro"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/schemas"
)

// The customers of the merge tests: absorbed is merged into survivor.
const (
	survivor = "cus_s"
	absorbed = "cus_x" // merges go from the greater ID to the smaller
)

// mergeReq returns the MERGE request of absorbed into survivor.
func mergeReq(id string, at time.Duration) *events.CustomerEvent {
	e := event(events.OpMerge, id, at, agent, forCustomer(absorbed), from("console"))
	e.Merge = &events.Merge{
		SurvivorID: survivor, AbsorbedID: absorbed, DecidedBy: "agent-7",
		Evidence: []events.Identity{{Kind: "phone", Value: "+8613800000001", Verified: true}},
	}
	return e
}

// unmergeReq returns the UNMERGE request of merge mergeID.
func unmergeReq(id, mergeID string, at time.Duration) *events.CustomerEvent {
	e := event(events.OpUnmerge, id, at, agent, forCustomer(survivor), from("console"))
	e.Merge = &events.Merge{MergeID: mergeID, SurvivorID: survivor, AbsorbedID: absorbed, DecidedBy: "agent-7"}
	return e
}

// world folds events into the records of several customers and delivers
// what the folds emit, as the materializer and Kafka will.
type world struct {
	t       testing.TB
	p       *merge.Policy
	recs    map[string]merge.Record
	emitted []events.CustomerEvent // every event emitted, in order
}

func newWorld(t testing.TB) *world {
	return &world{t: t, p: merge.DefaultPolicy(), recs: map[string]merge.Record{}}
}

// apply folds ev, then everything it emits, and their emits, in order.
func (w *world) apply(evs ...*events.CustomerEvent) merge.Outcome {
	w.t.Helper()
	var first merge.Outcome
	for i, ev := range evs {
		queue := []*events.CustomerEvent{ev}
		for n := 0; len(queue) > 0; n++ {
			if n > 100 {
				w.t.Fatalf("event %s: emitted events do not end", ev.EventID)
			}
			e := queue[0]
			queue = queue[1:]
			next, out := checkApply(w.t, w.recs[e.CustomerID], e, w.p)
			w.recs[e.CustomerID] = next
			for _, x := range out.Emit {
				w.emitted = append(w.emitted, x)
				queue = append(queue, &x)
			}
			if i == len(evs)-1 && n == 0 {
				first = out
			}
		}
	}
	return first
}

func (w *world) applyMessage(m *events.MessageEvent) {
	w.t.Helper()
	prev := w.recs[m.CustomerID]
	next, out := merge.ApplyMessage(prev, m, w.p)
	checkInvariants(w.t, prev, next, out, true)
	w.recs[m.CustomerID] = next
	for _, x := range out.Emit {
		w.emitted = append(w.emitted, x)
		w.apply(&x)
	}
}

// own folds evs alone into a fresh record: what a customer's own events give.
func own(evs ...*events.CustomerEvent) merge.Record {
	var r merge.Record
	for _, e := range evs {
		r, _ = merge.Apply(r, e, nil)
	}
	return r
}

func TestMergeAbsorbs(t *testing.T) {
	w := newWorld(t)
	w.apply(
		upsert("s1", 0, crm, forCustomer(survivor), set("phone", "+1"), set("id_number", "X9"), set("name", "Li Lei")),
		upsert("s2", time.Hour, wechat, forCustomer(survivor), set("email", "s@x.cn"), ident("phone", "+1")),
		upsert("a1", 2*time.Hour, wechat, forCustomer(absorbed), set("phone", "+2"), set("name", "Lei Li"),
			ident("wechat_openid", "o1")),
		// A's CRM wrote the e-mail before S's WeChat did: S's newer, lower
		// value would have been held back.
		upsert("a2", 30*time.Minute, crm, forCustomer(absorbed), set("email", "a@x.cn"), set("attributes.color", "red")),
	)
	w.applyMessage(message("m1", 5*time.Hour, wechat))
	w.recs[absorbed], _ = merge.ApplyMessage(w.recs[absorbed], func() *events.MessageEvent {
		m := message("m2", 6*time.Hour, app)
		m.CustomerID = absorbed
		return m
	}(), nil)
	before := w.recs[absorbed]

	out := w.apply(mergeReq("merge1", 7*time.Hour))
	a, s := w.recs[absorbed], w.recs[survivor]
	if a.MergedInto == nil || a.MergedInto.CustomerID != survivor || a.MergedInto.MergeID != "merge1" {
		t.Fatalf("absorbed record not frozen into the survivor: %+v", a.MergedInto)
	}
	if a.ContentHash() != before.ContentHash() || a.Version != before.Version+1 {
		t.Error("the freeze changed the absorbed customer's content, or not its version")
	}
	if len(out.Emit) != 1 {
		t.Fatalf("the request emitted %d events, want the hand-off", len(out.Emit))
	}
	h := out.Emit[0]
	if h.CustomerID != survivor || h.Op != events.OpMerge || h.Merge.MergeID != "merge1" || h.Merge.SnapshotJSON == nil ||
		h.Merge.PolicyHash != w.p.Hash() || h.Merge.DecidedBy != "agent-7" || len(h.Merge.Evidence) != 1 {
		t.Errorf("hand-off %+v %+v", h, h.Merge)
	}

	want := map[string]string{
		"phone":            `"+1"`,     // S's CRM phone; A's newer WeChat one awaits review
		"id_number":        `"X9"`,     // only S's
		"name":             `"Lei Li"`, // A's newer name
		"email":            `"a@x.cn"`, // A's older CRM value over S's newer WeChat one
		"attributes.color": `"red"`,    // only A's
	}
	for f, v := range want {
		if got := s.Fields[f].Value; got != v {
			t.Errorf("survivor %s = %s, want %s", f, got, v)
		}
	}
	conflicts := map[string]merge.Conflict{}
	for _, c := range s.Conflicts {
		conflicts[c.Field] = c
	}
	if c := conflicts["phone"]; c.Current != `"+1"` || c.Candidate != `"+2"` || !c.Open() ||
		c.ID != merge.ConflictID(survivor, "phone", "a1") {
		t.Errorf("phone conflict %+v", c)
	}
	if c := conflicts["email"]; c.Current != `"a@x.cn"` || c.Candidate != `"s@x.cn"` || !c.Open() ||
		c.CandidateEventID != "s2" || c.ID != merge.ConflictID(survivor, "email", "s2") {
		t.Errorf("email conflict %+v", c)
	}
	if len(s.Conflicts) != 2 || !s.NeedsReview {
		t.Errorf("survivor conflicts %+v, review %v", s.Conflicts, s.NeedsReview)
	}
	if len(s.Identities) != 2 {
		t.Errorf("identities %v, want S's phone and A's openid", s.Identities)
	}
	if s.LastContact == nil || s.LastContact.EventID != "m2" || s.LastContactChannel != app {
		t.Errorf("last contact %v %s, want A's newer message", s.LastContact, s.LastContactChannel)
	}
	if len(s.Absorbed) != 1 || s.Absorbed[0].CustomerID != absorbed || s.Absorbed[0].Snapshot.ContentHash() != before.ContentHash() {
		t.Errorf("absorbed %+v", s.Absorbed)
	}
	if s.Own == nil || s.Own.CustomerID != survivor || s.Own.Fields["email"].Value != `"s@x.cn"` {
		t.Errorf("own record %+v", s.Own)
	}

	// Absorb, the exported fold, gives the same content from the two
	// records before the merge.
	if got := merge.Absorb(*s.Own, before, nil); got.ContentHash() != s.ContentHash() {
		t.Error("Absorb differs from the merge's fold")
	}
	checkEmitsEncode(t, w.emitted)
}

// checkEmitsEncode encodes emitted events with the customer_event schema.
func checkEmitsEncode(t testing.TB, evs []events.CustomerEvent) {
	t.Helper()
	codec, schema, err := eventSchema()
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		native, err := avro.ToNative(schema, &ev)
		if err != nil {
			t.Fatalf("emitted %s: %v", ev.EventID, err)
		}
		if _, err := codec.BinaryFromNative(nil, native); err != nil {
			t.Fatalf("emitted %s does not encode: %v", ev.EventID, err)
		}
	}
}

// eventSchema returns the customer_event schema, parsed once.
func eventSchema() (*goavro.Codec, *avro.Schema, error) {
	eventSchemaOnce.Do(func() {
		text := schemas.Current(schemas.CustomerEvent)
		if eventCodec, eventSchemaErr = goavro.NewCodec(text); eventSchemaErr == nil {
			eventAvro, eventSchemaErr = avro.Parse(text)
		}
	})
	return eventCodec, eventAvro, eventSchemaErr
}

var (
	eventSchemaOnce sync.Once
	eventCodec      *goavro.Codec
	eventAvro       *avro.Schema
	eventSchemaErr  error
)

// unmergeScenario returns the own events of each side of the merge tests.
func unmergeScenario() (sOwn, aOwn []*events.CustomerEvent) {
	sOwn = []*events.CustomerEvent{
		upsert("s1", 0, crm, forCustomer(survivor), set("phone", "+1"), set("name", "Li Lei")),
		upsert("s2", time.Hour, wechat, forCustomer(survivor), set("email", "s@x.cn"), ident("phone", "+1")),
	}
	aOwn = []*events.CustomerEvent{
		upsert("a1", 2*time.Hour, wechat, forCustomer(absorbed), set("phone", "+2"), set("name", "Lei Li"), ident("wechat_openid", "o1")),
		upsert("a2", 30*time.Minute, crm, forCustomer(absorbed), set("email", "a@x.cn")),
	}
	return sOwn, aOwn
}

// messageFor returns a message of customer c.
func messageFor(c, id string, at time.Duration, ch events.Channel) *events.MessageEvent {
	m := message(id, at, ch)
	m.CustomerID = c
	return m
}

func TestUnmergeRestoresExactly(t *testing.T) {
	w := newWorld(t)
	sOwn, aOwn := unmergeScenario()
	w.apply(sOwn...)
	w.apply(aOwn...)
	w.apply(mergeReq("merge1", 3*time.Hour))

	// While merged: S's own events, A's stragglers, an agent's decision.
	sLater := []*events.CustomerEvent{
		upsert("s3", 4*time.Hour, app, forCustomer(survivor), set("attributes.tier", "2"), set("name", "Lily")),
		upsert("s4", 9*time.Hour, wechat, forCustomer(survivor), set("phone", "+3")),
	}
	aLater := []*events.CustomerEvent{
		upsert("a3", 5*time.Hour, web, forCustomer(absorbed), set("attributes.color", "blue"), ident("web_visitor", "v1")),
	}
	w.apply(sLater...)
	out := w.apply(aLater...)
	if len(out.Emit) != 1 || out.Emit[0].CustomerID != survivor {
		t.Fatalf("a straggler emitted %+v, want a new hand-off to the survivor", out.Emit)
	}
	if got := w.recs[survivor].Fields["attributes.color"].Value; got != `"blue"` {
		t.Errorf("the straggler did not reach the survivor: color %s", got)
	}
	w.applyMessage(messageFor(absorbed, "m1", 6*time.Hour, phone))
	w.applyMessage(messageFor(survivor, "m2", 7*time.Hour, web))
	var resolveEmail *events.CustomerEvent
	for _, c := range w.recs[survivor].Conflicts {
		if c.Field == "email" {
			resolveEmail = event(events.OpResolve, "r1", 8*time.Hour, agent, forCustomer(survivor), from("console"))
			resolveEmail.Resolution = &events.Resolution{ConflictID: c.ID, Field: "email", Choice: events.ChoiceTakeCandidate, ResolvedBy: "agent-7"}
		}
	}
	if resolveEmail == nil {
		t.Fatal("no e-mail conflict on the merged record")
	}
	w.apply(resolveEmail)
	merged := w.recs[survivor]
	if got := merged.Fields["email"].Value; got != `"s@x.cn"` {
		t.Errorf("resolved e-mail %s", got)
	}
	aBefore := w.recs[absorbed]

	out = w.apply(unmergeReq("u1", "merge1", 10*time.Hour))
	if len(out.Emit) != 1 || out.Emit[0].Op != events.OpUnmerge || out.Emit[0].CustomerID != absorbed {
		t.Fatalf("unmerge emitted %+v, want the release", out.Emit)
	}
	s, a := w.recs[survivor], w.recs[absorbed]

	wantS := own(append(append(append([]*events.CustomerEvent{}, sOwn...), sLater...), resolveEmail)...)
	wantS, _ = merge.ApplyMessage(wantS, messageFor(survivor, "m2", 7*time.Hour, web), nil)
	wantA := own(append(append([]*events.CustomerEvent{}, aOwn...), aLater...)...)
	wantA, _ = merge.ApplyMessage(wantA, messageFor(absorbed, "m1", 6*time.Hour, phone), nil)
	if s.ContentHash() != wantS.ContentHash() {
		t.Errorf("survivor after unmerge differs from its own events' fold:\n got %s\nwant %s", js(s), js(wantS))
	}
	if a.ContentHash() != wantA.ContentHash() {
		t.Errorf("absorbed after unmerge differs from its own events' fold:\n got %s\nwant %s", js(a), js(wantA))
	}
	if s.Own != nil || s.Absorbed != nil || s.MergedInto != nil || a.MergedInto != nil {
		t.Errorf("merge bookkeeping left: %+v %+v %+v %+v", s.Own, s.Absorbed, s.MergedInto, a.MergedInto)
	}
	if s.Version != merged.Version+1 || a.Version != aBefore.Version+1 {
		t.Errorf("versions %d → %d and %d → %d, want one more each", merged.Version, s.Version, aBefore.Version, a.Version)
	}
	checkEmitsEncode(t, w.emitted)
}

func js(r merge.Record) string {
	b, _ := json.Marshal(r)
	return string(b)
}

// Every step delivered again, in every later state, changes nothing.
func TestMergeDuplicatesChangeNothing(t *testing.T) {
	w := newWorld(t)
	sOwn, aOwn := unmergeScenario()
	w.apply(sOwn...)
	w.apply(aOwn...)
	var delivered []*events.CustomerEvent
	step := func(ev *events.CustomerEvent) {
		t.Helper()
		n := len(w.emitted)
		w.apply(ev)
		delivered = append(delivered, ev)
		for i := n; i < len(w.emitted); i++ {
			delivered = append(delivered, &w.emitted[i])
		}
		for _, d := range delivered {
			prev := w.recs[d.CustomerID]
			next, out := checkApply(t, prev, d, w.p)
			if out.Changed || len(out.Emit) > 0 || next.CanonicalHash() != prev.CanonicalHash() {
				t.Fatalf("after %s, %s %s to %s again: %+v", ev.EventID, d.Op, d.EventID, d.CustomerID, out)
			}
		}
	}
	step(mergeReq("merge1", 3*time.Hour))
	step(upsert("a3", 5*time.Hour, web, forCustomer(absorbed), set("attributes.color", "blue")))
	step(upsert("s3", 6*time.Hour, app, forCustomer(survivor), set("name", "Lily")))
	step(unmergeReq("u1", "merge1", 10*time.Hour))
	step(upsert("a4", 11*time.Hour, web, forCustomer(absorbed), set("attributes.color", "green")))
	if got := w.recs[survivor].Fields["attributes.color"]; got.Value != "" {
		t.Errorf("after the unmerge A's event reached S: %+v", got)
	}
	// A merge again (a new request) works as the first did.
	step(mergeReq("merge2", 12*time.Hour))
	if got := w.recs[survivor].Fields["attributes.color"].Value; got != `"green"` {
		t.Errorf("second merge: color %s", got)
	}
}

func TestMergeIgnores(t *testing.T) {
	w := newWorld(t)
	sOwn, aOwn := unmergeScenario()
	w.apply(sOwn...)
	w.apply(aOwn...)
	w.apply(mergeReq("merge1", 3*time.Hour))
	hand := w.emitted[0]

	otherPolicy := hand
	m := *hand.Merge
	m.PolicyHash = mustPolicy(t, "conflict_window: 1h").Hash()
	otherPolicy.Merge = &m

	badSnapshot := hand
	m2 := *hand.Merge
	m2.SnapshotJSON = ptr(`{"customer_id":"cus_other"}`)
	m2.MergeID = "merge9"
	badSnapshot.Merge = &m2

	intoOther := mergeReq("merge2", 4*time.Hour)
	intoOther.Merge.SurvivorID = "cus_t"

	upward := event(events.OpMerge, "merge3", 4*time.Hour, agent, forCustomer(survivor))
	upward.Merge = &events.Merge{SurvivorID: absorbed, AbsorbedID: survivor}

	neither := mergeReq("merge4", 4*time.Hour)
	neither.CustomerID = "cus_z"

	noSurvivor := mergeReq("merge5", 4*time.Hour)
	noSurvivor.Merge.SurvivorID = ""

	for _, tt := range []struct {
		name string
		ev   events.CustomerEvent
		want merge.Reason
	}{
		{"hand-off of another policy", otherPolicy, merge.ReasonOtherPolicy},
		{"hand-off of another customer's record", badSnapshot, merge.ReasonBadMerge},
		{"merge of a merged customer into another", *intoOther, merge.ReasonAlreadyMerged},
		{"merge into a greater customer ID", *upward, merge.ReasonMergeOrder},
		{"merge keyed by neither", *neither, merge.ReasonBadMerge},
		{"merge without survivor", *noSurvivor, merge.ReasonBadMerge},
		{"unmerge without merge ID", *unmergeReq("u1", "", 5*time.Hour), merge.ReasonBadMerge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			prev := w.recs[tt.ev.CustomerID]
			next, out := checkApply(t, prev, &tt.ev, w.p)
			if !reflect.DeepEqual(out, merge.Outcome{Ignored: tt.want}) {
				t.Errorf("outcome %+v, want ignored: %s", out, tt.want)
			}
			if next.CanonicalHash() != prev.CanonicalHash() {
				t.Error("an ignored event changed the record")
			}
		})
	}

	// A survivor merged into another keeps what it absorbed.
	t.Run("unmerge from a merged survivor", func(t *testing.T) {
		w2 := newWorld(t)
		w2.recs = map[string]merge.Record{survivor: w.recs[survivor], absorbed: w.recs[absorbed]}
		up := event(events.OpMerge, "merge6", 5*time.Hour, agent, forCustomer(survivor))
		up.Merge = &events.Merge{SurvivorID: "cus_r", AbsorbedID: survivor}
		w2.apply(up)
		if w2.recs["cus_r"].Fields["phone"].Value == "" {
			t.Fatal("the chained merge did not reach the top survivor")
		}
		_, out := checkApply(t, w2.recs[survivor], unmergeReq("u2", "merge1", 6*time.Hour), w2.p)
		if out.Ignored != merge.ReasonSurvivorMerged {
			t.Errorf("outcome %+v, want %s", out, merge.ReasonSurvivorMerged)
		}
	})
}

// A straggler of A changes only what it changes on S: an agent's decision
// on a merge conflict stays decided.
func TestMergeStragglerKeepsDecisions(t *testing.T) {
	w := newWorld(t)
	sOwn, aOwn := unmergeScenario()
	w.apply(sOwn...)
	w.apply(aOwn...)
	w.apply(mergeReq("merge1", 3*time.Hour))
	var phoneConflict merge.Conflict
	for _, c := range w.recs[survivor].Conflicts {
		if c.Field == "phone" {
			phoneConflict = c
		}
	}
	if !phoneConflict.Open() {
		t.Fatalf("no open phone conflict: %+v", w.recs[survivor].Conflicts)
	}
	keep := event(events.OpResolve, "r1", 4*time.Hour, agent, forCustomer(survivor), from("console"))
	keep.Resolution = &events.Resolution{ConflictID: phoneConflict.ID, Field: "phone", Choice: events.ChoiceKeepCurrent, ResolvedBy: "agent-7"}
	w.apply(keep)
	for _, c := range w.recs[survivor].Conflicts {
		if c.Open() && c.Field == "email" {
			res := event(events.OpResolve, "r2", 4*time.Hour, agent, forCustomer(survivor), from("console"))
			res.Resolution = &events.Resolution{ConflictID: c.ID, Field: "email", Choice: events.ChoiceTakeCandidate, ResolvedBy: "agent-7"}
			w.apply(res)
		}
	}
	if w.recs[survivor].NeedsReview {
		t.Fatalf("conflicts left open: %+v", w.recs[survivor].Conflicts)
	}
	w.apply(upsert("a3", 5*time.Hour, web, forCustomer(absorbed), set("attributes.color", "blue")))
	s := w.recs[survivor]
	if s.NeedsReview {
		t.Errorf("a straggler reopened a decided conflict: %+v", s.Conflicts)
	}
	if s.Fields["attributes.color"].Value != `"blue"` || s.Fields["phone"].Value != `"+1"` || s.Fields["email"].Value != `"s@x.cn"` {
		t.Errorf("fields after the straggler: %+v", s.Fields)
	}
}

// A delete of the survivor erases the absorbed customer too, and the echo
// ends; a delete of the absorbed customer erases the survivor.
func TestMergeDeleteErasesBoth(t *testing.T) {
	w := newWorld(t)
	sOwn, aOwn := unmergeScenario()
	w.apply(sOwn...)
	w.apply(aOwn...)
	w.apply(mergeReq("merge1", 3*time.Hour))
	out := w.apply(remove("d1", 4*time.Hour, forCustomer(survivor)))
	if len(out.Emit) != 1 || out.Emit[0].Op != events.OpDelete || out.Emit[0].CustomerID != absorbed || out.Emit[0].EventID != "d1" {
		t.Fatalf("delete emitted %+v, want the same delete for the absorbed customer", out.Emit)
	}
	s, a := w.recs[survivor], w.recs[absorbed]
	if !s.Deleted() || !a.Deleted() || !s.Own.Deleted() || !s.Absorbed[0].Snapshot.Deleted() {
		t.Errorf("not all erased: survivor %s\nabsorbed %s", js(s), js(a))
	}
	if all := js(s) + js(a); strings.Contains(all, "+1") || strings.Contains(all, "Lei") {
		t.Errorf("erased data left in the records: %s", all)
	}
	// A delete of A after the merge erases S as well.
	w.apply(upsert("s5", 5*time.Hour, app, forCustomer(survivor), set("name", "New")))
	w.apply(remove("d2", 6*time.Hour, forCustomer(absorbed)))
	if s := w.recs[survivor]; !s.Deleted() || s.Tombstone.EventID != "d2" || !s.Own.Deleted() {
		t.Errorf("a delete of the absorbed customer left the survivor %s", js(s))
	}
	checkEmitsEncode(t, w.emitted)
}

// Old stored records load, and a record with merge state survives JSON.
func TestRecordJSONMergeFields(t *testing.T) {
	old := `{"customer_id":"cus_1","version":2,"fields":{"name":{"value_json":"\"Li\"","stamp":{"at":1772442000000,"event_id":"e1"},"channel":"CRM","source":"crm-1"}},"identities":[{"kind":"phone","scope":"","value":"+1","verified":true}],"conflicts":[],"needs_review":false,"tombstone":null,"last_contact":null,"last_contact_channel":"","updated_at":1772442000000,"policy_hash":"f3215416e37f388b5ccd3c10be96f8780f2b98035d7cb863359e845f4c36d745"}`
	var r merge.Record
	if err := json.Unmarshal([]byte(old), &r); err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(r); string(b) != old {
		t.Errorf("a record stored before merges re-encodes differently:\n%s\n%s", b, old)
	}

	w := newWorld(t)
	sOwn, aOwn := unmergeScenario()
	w.apply(sOwn...)
	w.apply(aOwn...)
	w.apply(mergeReq("merge1", 3*time.Hour))
	w.apply(unmergeReq("u0", "merge0", 3*time.Hour)) // a merge that never reached S: ended
	for _, c := range []string{survivor, absorbed} {
		rec := w.recs[c]
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		var back merge.Record
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if back.CanonicalHash() != rec.CanonicalHash() || !reflect.DeepEqual(back.EndedMerges, rec.EndedMerges) {
			t.Errorf("%s: JSON round trip changed the record:\n%s", c, b)
		}
		next := upsert("x1", 20*time.Hour, crm, forCustomer(c), set("name", "Zed"))
		again, _ := merge.Apply(back, next, nil)
		live, _ := merge.Apply(rec, next, nil)
		if again.CanonicalHash() != live.CanonicalHash() {
			t.Errorf("%s: reloaded record diverges", c)
		}
	}
	if s := w.recs[survivor]; s.Own == nil || len(s.Absorbed) != 1 || len(s.EndedMerges) != 1 {
		t.Errorf("survivor merge state: %s", js(s))
	}
}
