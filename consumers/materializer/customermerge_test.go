package materializer_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/omnisync/omnisync/api"
	"github.com/omnisync/omnisync/consumers/materializer"
	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/consumers/verify"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/schemas"
)

// mergePair returns two fresh customer IDs on different partitions of a
// six-partition topic: survivor < absorbed, as merges go.
func mergePair(t *testing.T) (survivor, absorbed string) {
	t.Helper()
	ids := customers(t, 12)
	for _, a := range ids[1:] {
		if testenv.PartitionFor(a, 6) != testenv.PartitionFor(ids[0], 6) {
			return ids[0], a
		}
	}
	t.Fatal("no two customers on different partitions")
	return "", ""
}

// A MERGE request folded on the absorbed customer's partition emits the
// hand-off, which the survivor's partition absorbs: the survivor's record
// holds both customers' data, the absorbed one names its survivor. The
// emitted event is in the events topic, keyed by the survivor.
func TestMergeRequestEmitsHandOffThatTheSurvivorAbsorbs(t *testing.T) {
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		r := newRig(t, k)
		st := openSQLite(t, filepath.Join(t.TempDir(), "store.db"))
		group := testenv.UniqueName(t, "group")
		from := r.startAtEnd(t, st, group)
		s, a := mergePair(t)
		sName, aEmail := "Liu Yang", "liu@example.com"
		r.produce(t,
			&events.CustomerEvent{EventID: s + "-1", CustomerID: s, Channel: events.ChannelCRM, Source: "test", Op: events.OpUpsert,
				OccurredAt: base, IngestedAt: time.Now(), Profile: &events.Profile{Name: &sName}},
			&events.CustomerEvent{EventID: a + "-1", CustomerID: a, Channel: events.ChannelWeb, Source: "test", Op: events.OpUpsert,
				OccurredAt: base.Add(time.Second), IngestedAt: time.Now(), Profile: &events.Profile{Email: &aEmail}},
			&events.CustomerEvent{EventID: a + "-merge", CustomerID: a, Channel: events.ChannelUnknown, Source: "test", Op: events.OpMerge,
				OccurredAt: base.Add(time.Minute), IngestedAt: time.Now(),
				Merge: &events.Merge{SurvivorID: s, AbsorbedID: a, DecidedBy: "agent-1"}},
		)
		runMaterializer(t, r, group, st)
		got := waitFor(t, st, s, func(rec merge.Record) bool { return len(rec.Absorbed) == 1 })
		if got.Absorbed[0].CustomerID != a || got.Absorbed[0].MergeID != a+"-merge" {
			t.Fatalf("survivor absorbed %+v, want %s by merge %s-merge", got.Absorbed, a, a)
		}
		if got.Fields["name"].Value != `"Liu Yang"` || got.Fields["email"].Value != `"liu@example.com"` {
			t.Fatalf("survivor's fields are not both customers': %+v", got.Fields)
		}
		absorbed := waitFor(t, st, a, func(rec merge.Record) bool { return rec.MergedInto != nil })
		if absorbed.MergedInto.CustomerID != s {
			t.Fatalf("absorbed customer is merged into %q, want %q", absorbed.MergedInto.CustomerID, s)
		}

		// The hand-off is in the log, keyed by the survivor, with the policy hash.
		c, err := kafka.NewClient(k.Config(), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
			schemas.CustomerEventsTopic: {testenv.PartitionFor(s, 6): kgo.NewOffset().At(from[schemas.CustomerEventsTopic][testenv.PartitionFor(s, 6)])},
		}))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var handOffs int
		for handOffs == 0 && ctx.Err() == nil {
			c.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
				var ev events.CustomerEvent
				if string(rec.Key) != s || r.serde.Decode(ctx, rec.Value, &ev) != nil || ev.Op != events.OpMerge {
					return
				}
				if ev.Merge.PolicyHash != merge.DefaultPolicy().Hash() || ev.Merge.SnapshotJSON == nil || ev.Merge.MergeID != a+"-merge" {
					t.Errorf("hand-off %+v lacks the policy hash, snapshot or merge ID", ev.Merge)
				}
				handOffs++
			})
		}
		if handOffs == 0 {
			t.Fatal("no hand-off keyed by the survivor in the events topic")
		}
	})
}

// A hand-off whose snapshot does not decode goes to the dead-letter topic;
// the survivor absorbs nothing.
func TestHandOffWithBadSnapshotIsDeadLettered(t *testing.T) {
	k := testenv.RealKafka(t)
	r := newRig(t, k)
	st := openSQLite(t, filepath.Join(t.TempDir(), "store.db"))
	group := testenv.UniqueName(t, "group")
	r.startAtEnd(t, st, group)
	dlFrom := testenv.EndOffsets(t, r.cl, schemas.DeadLetterTopic)
	s, a := mergePair(t)
	bad := `{"customer_id": 12`
	name := "after"
	r.produce(t,
		&events.CustomerEvent{EventID: s + "-handoff", CustomerID: s, Channel: events.ChannelUnknown, Source: "test", Op: events.OpMerge,
			OccurredAt: base, IngestedAt: time.Now(),
			Merge: &events.Merge{MergeID: a + "-merge", SurvivorID: s, AbsorbedID: a, SnapshotJSON: &bad, PolicyHash: merge.DefaultPolicy().Hash()}},
		&events.CustomerEvent{EventID: s + "-ok", CustomerID: s, Channel: events.ChannelCRM, Source: "test", Op: events.OpUpsert,
			OccurredAt: base, IngestedAt: time.Now(), Profile: &events.Profile{Name: &name}},
	)
	runMaterializer(t, r, group, st)
	got := waitFor(t, st, s, func(rec merge.Record) bool { return rec.Version > 0 })
	if len(got.Absorbed) != 0 || got.Version != 1 {
		t.Fatalf("the bad hand-off changed the survivor: %+v", got)
	}
	c, err := kafka.NewClient(k.Config(), kgo.ConsumePartitions(dlFrom))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		found := false
		c.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
			var dl events.DeadLetter
			if string(rec.Key) == s && r.serde.Decode(ctx, rec.Value, &dl) == nil && dl.Component == "materializer/"+group {
				found = true
			}
		})
		if found {
			return
		}
	}
	t.Fatal("the hand-off with a bad snapshot is not in the dead-letter topic")
}

// waitFor waits until customer id's stored record satisfies ok and returns it.
func waitFor(t *testing.T, st checkedStore, id string, ok func(merge.Record) bool) merge.Record {
	t.Helper()
	// Generous: the test machine may be loaded many times over.
	deadline := time.Now().Add(120 * time.Second)
	for {
		got, err := st.Load(context.Background(), []string{id})
		if err == nil && ok(got[id]) {
			return got[id]
		}
		if time.Now().After(deadline) {
			t.Fatalf("customer %s: record %+v (err %v) not as awaited after 120 s", id, got[id], err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ownFold folds events and messages as if no merge existed: what a customer's
// own events alone give, which an unmerge restores.
func ownFold(items ...any) merge.Record {
	var r merge.Record
	for _, it := range items {
		switch it := it.(type) {
		case *events.CustomerEvent:
			r, _ = merge.Apply(r, it, nil)
		case *events.MessageEvent:
			r, _ = merge.ApplyMessage(r, it, nil)
		}
	}
	return r
}

// timelineOf returns the IDs of a customer's timeline, in order.
func timelineOf(t *testing.T, st checkedStore, id string) []string {
	t.Helper()
	ms, err := st.Timeline(context.Background(), id, nil, 1000)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, m := range ms {
		out = append(out, m.MessageID)
	}
	return out
}

// Two customers on different partitions merged through the API on the
// real Kafka, into each store: one customer with one timeline holding
// every message once, the absorbed ID answered with the survivor; late
// events of both reach the merged customer; an unmerge through the API
// gives each customer exactly what its own events give; and a replay of
// the log into an empty store by a new group gives the same records.
func TestMergeAndUnmergeThroughTheAPI(t *testing.T) {
	k := testenv.RealKafka(t)
	r := newRig(t, k)
	stores := map[string]func(t *testing.T) store.Store{
		"sqlite":   func(t *testing.T) store.Store { return openSQLite(t, filepath.Join(t.TempDir(), "store.db")) },
		"postgres": func(t *testing.T) store.Store { return openPostgres(t, testenv.Postgres(t)) },
	}
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) { mergeThroughAPI(t, r, stores[name]) })
	}
}

func mergeThroughAPI(t *testing.T, r *rig, open func(t *testing.T) store.Store) {
	began := time.Now()
	phase := func(what string) { t.Logf("%s after %v", what, time.Since(began).Round(time.Millisecond)) }
	st := open(t)
	group := testenv.UniqueName(t, "group")
	from := r.startAtEnd(t, st, group)
	s, a := mergePair(t)
	text := func(s string) *string { return &s }
	msg := func(cid, id string, at time.Duration, ch events.Channel) *events.MessageEvent {
		return &events.MessageEvent{MessageID: cid + "-" + id, CustomerID: cid, Channel: ch, Source: "test",
			Direction: events.DirectionInbound, SenderType: events.SenderCustomer, ContentType: events.ContentText,
			Text: text(id), OccurredAt: base.Add(at), IngestedAt: time.Now()}
	}
	unionid := events.Identity{Kind: "wechat_unionid", Value: "u-" + a, Verified: true}
	own := map[string][]any{
		s: {&events.CustomerEvent{EventID: s + "-e1", CustomerID: s, Channel: events.ChannelCRM, Source: "test", Op: events.OpUpsert,
			OccurredAt: base, IngestedAt: time.Now(), Profile: &events.Profile{Name: text("刘洋"), Phone: text("+8613800138000")},
			Identities: []events.Identity{{Kind: "crm", Value: "crm-" + s, Verified: true}}},
			msg(s, "m1", time.Minute, events.ChannelPhone)},
		a: {&events.CustomerEvent{EventID: a + "-e1", CustomerID: a, Channel: events.ChannelMiniProgram, Source: "test", Op: events.OpUpsert,
			OccurredAt: base.Add(time.Second), IngestedAt: time.Now(), Profile: &events.Profile{Email: text("liu@example.com")},
			Identities: []events.Identity{unionid}},
			msg(a, "m1", 2*time.Minute, events.ChannelMiniProgram)},
	}
	r.produce(t, append(slices.Clone(own[s]), own[a]...)...)
	runMaterializer(t, r, group, st)
	waitFor(t, st, a, func(rec merge.Record) bool { return rec.LastContact != nil })
	waitFor(t, st, s, func(rec merge.Record) bool { return rec.LastContact != nil })

	phase("both customers stored")
	h := api.Handler(api.Config{Store: st, Publisher: api.KafkaPublisher{Client: r.cl, Serde: r.serde}, AdminToken: "tok", Instance: "test"})
	do := func(method, target, body string, want int, out any) {
		t.Helper()
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != want {
			t.Fatalf("%s %s: %d %s, want %d", method, target, w.Code, w.Body, want)
		}
		if err := json.Unmarshal(w.Body.Bytes(), out); err != nil {
			t.Fatal(err)
		}
	}
	// Named the other way round: the smaller ID survives.
	var accepted api.MergeAccepted
	do("POST", "/api/v1/merges", `{"survivor_id":"`+a+`","absorbed_id":"`+s+`",
		"evidence":[{"kind":"wechat_unionid","scope":"","value":"`+unionid.Value+`","verified":true}]}`, 202, &accepted)
	if accepted.SurvivorID != s || accepted.AbsorbedID != a {
		t.Fatalf("merge accepted as %+v, want survivor %s", accepted, s)
	}
	merged := waitFor(t, st, s, func(rec merge.Record) bool { return len(rec.Absorbed) == 1 })
	if merged.Fields["email"].Value != `"liu@example.com"` || merged.Fields["name"].Value != `"刘洋"` {
		t.Errorf("the survivor does not hold both customers' fields: %+v", merged.Fields)
	}
	phase("merged")
	var c api.Customer
	do("GET", "/api/v1/customers/"+a, "", 200, &c)
	if c.ID != s || c.RedirectedFrom == nil || *c.RedirectedFrom != a || len(c.AlsoKnownAs) != 1 || c.AlsoKnownAs[0].MergeID != accepted.MergeID {
		t.Errorf("GET of the absorbed customer: id %s, redirected from %v, also known as %+v", c.ID, c.RedirectedFrom, c.AlsoKnownAs)
	}
	if got, want := timelineOf(t, st, s), []string{s + "-m1", a + "-m1"}; !slices.Equal(got, want) {
		t.Errorf("the survivor's timeline is %v, want %v (every message once)", got, want)
	}

	// Late data for both while merged: the absorbed customer's reaches the
	// survivor through a new hand-off.
	lateA := []any{
		&events.CustomerEvent{EventID: a + "-e2", CustomerID: a, Channel: events.ChannelApp, Source: "test", Op: events.OpUpsert,
			OccurredAt: base.Add(time.Hour), IngestedAt: time.Now(), Profile: &events.Profile{Gender: func() *events.Gender { g := events.GenderFemale; return &g }()}},
		msg(a, "m2", time.Hour+time.Minute, events.ChannelApp),
	}
	lateS := []any{msg(s, "m2", 2*time.Hour, events.ChannelPhone)}
	own[a], own[s] = append(own[a], lateA...), append(own[s], lateS...)
	r.produce(t, append(lateA, lateS...)...)
	waitFor(t, st, s, func(rec merge.Record) bool {
		_, ok := rec.Fields["gender"]
		return ok && rec.LastContact != nil && rec.LastContact.EventID == s+"-m2"
	})
	if got, want := timelineOf(t, st, s), []string{s + "-m1", a + "-m1", a + "-m2", s + "-m2"}; !slices.Equal(got, want) {
		t.Errorf("the survivor's timeline is %v, want %v", got, want)
	}

	phase("late data merged")
	// The unmerge: each customer is exactly what its own events give.
	do("POST", "/api/v1/customers/"+s+"/unmerge", `{"merge_id":"`+accepted.MergeID+`"}`, 202, &accepted)
	split := waitFor(t, st, s, func(rec merge.Record) bool { return len(rec.Absorbed) == 0 && len(rec.EndedMerges) == 1 })
	released := waitFor(t, st, a, func(rec merge.Record) bool { return rec.MergedInto == nil && len(rec.EndedMerges) == 1 })
	phase("unmerged")
	for id, got := range map[string]merge.Record{s: split, a: released} {
		if want := ownFold(own[id]...); got.ContentHash() != want.ContentHash() {
			t.Errorf("customer %s after the unmerge: content %+v, want what its own events give %+v", id, got, want)
		}
	}
	if got, want := timelineOf(t, st, s), []string{s + "-m1", s + "-m2"}; !slices.Equal(got, want) {
		t.Errorf("the survivor's timeline after the unmerge is %v, want %v", got, want)
	}
	if got, want := timelineOf(t, st, a), []string{a + "-m1", a + "-m2"}; !slices.Equal(got, want) {
		t.Errorf("the absorbed customer's timeline after the unmerge is %v, want %v", got, want)
	}
	do("GET", "/api/v1/customers/"+a, "", 200, &c)
	if c.ID != a || c.RedirectedFrom != nil {
		t.Errorf("GET of the released customer answers %s (redirected from %v)", c.ID, c.RedirectedFrom)
	}

	// A replay of the log into an empty store gives the same records and
	// timelines, byte for byte.
	ends := r.endOffsets(t)
	waitCaughtUp(t, st, group, ends, 60*time.Second)

	phase("caught up")
	// Verify's fold of the log (which emits nothing: the hand-offs and
	// releases are in the log) agrees with the store on both customers.
	rep, err := verify.AgainstLog(context.Background(), verify.Config{Kafka: r.k.Config(), Serde: r.serde, Group: group, From: from,
		TempDir: t.TempDir(), Logger: zaptest.NewLogger(t)}, st.(verify.Store))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range rep.Differ {
		if d.CustomerID == s || d.CustomerID == a {
			t.Errorf("verify against the log: %v", d)
		}
	}
	phase("verified")
	clean := open(t)
	cleanGroup := testenv.UniqueName(t, "clean")
	if err := clean.Apply(context.Background(), &store.Batch{Group: cleanGroup, Offsets: from}); err != nil {
		t.Fatal(err)
	}
	runMaterializer(t, r, cleanGroup, clean)
	waitCaughtUp(t, clean, cleanGroup, ends, 60*time.Second)
	live, err := st.Load(context.Background(), []string{s, a})
	if err != nil {
		t.Fatal(err)
	}
	replayed, err := clean.Load(context.Background(), []string{s, a})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{s, a} {
		if live[id].CanonicalHash() != replayed[id].CanonicalHash() {
			t.Errorf("customer %s: the replay holds version %d, the live store %d; canonical hashes differ", id, replayed[id].Version, live[id].Version)
		}
		if got, want := timelineOf(t, clean, id), timelineOf(t, st, id); !slices.Equal(got, want) {
			t.Errorf("customer %s: the replay's timeline %v, the live store's %v", id, got, want)
		}
	}
}

// A replay under a new policy ignores the live group's hand-off (another
// policy's) and emits its own: the shadow absorbs it once it reads it back,
// which is why replayers produce what their fold emits.
func TestReplayUnderANewPolicyEmitsItsOwnHandOff(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, testenv.RealKafka(t))
	live := openSQLite(t, filepath.Join(t.TempDir(), "live.db"))
	group := testenv.UniqueName(t, "group")
	from := r.startAtEnd(t, live, group)
	s, a := mergePair(t)
	name := "Liu"
	r.produce(t,
		&events.CustomerEvent{EventID: s + "-e1", CustomerID: s, Channel: events.ChannelCRM, Source: "test", Op: events.OpUpsert,
			OccurredAt: base, IngestedAt: time.Now(), Profile: &events.Profile{Name: &name}},
		&events.CustomerEvent{EventID: a + "-merge", CustomerID: a, Channel: events.ChannelAgent, Source: "test", Op: events.OpMerge,
			OccurredAt: base.Add(time.Minute), IngestedAt: time.Now(), Merge: &events.Merge{SurvivorID: s, AbsorbedID: a, DecidedBy: "agent-1"}})
	runMaterializer(t, r, group, live)
	waitFor(t, live, s, func(rec merge.Record) bool { return len(rec.Absorbed) == 1 })
	ends := r.endOffsets(t)

	policy, err := merge.ParsePolicy([]byte("merge_identities:\n  auto: [crm]\n  suggest: [phone]\n  never: [device]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if policy.Hash() == merge.DefaultPolicy().Hash() {
		t.Fatal("the test policy has the default's hash")
	}
	shadow := openSQLite(t, filepath.Join(t.TempDir(), "shadow.db"))
	rp, err := materializer.NewReplay(ctx, materializer.Config{Kafka: r.k.Config(), Group: group, Store: shadow, Serde: r.serde,
		Policy: policy, Logger: zaptest.NewLogger(t).Named("replayer")}, from)
	if err != nil {
		t.Fatal(err)
	}
	defer rp.Close()
	if err := rp.CatchUp(ctx, ends); err != nil {
		t.Fatal(err)
	}
	got, err := shadow.Load(ctx, []string{s, a})
	if err != nil {
		t.Fatal(err)
	}
	if got[a].MergedInto == nil || len(got[s].Absorbed) != 0 {
		t.Fatalf("after the live log: shadow's absorbed customer merged into %v, survivor absorbed %d; want frozen and none (the live hand-off is another policy's)",
			got[a].MergedInto, len(got[s].Absorbed))
	}
	// Its own hand-off is past the live log's end; folded, it is absorbed.
	if err := rp.CatchUp(ctx, r.endOffsets(t)); err != nil {
		t.Fatal(err)
	}
	rec := waitFor(t, shadow, s, func(rec merge.Record) bool { return len(rec.Absorbed) == 1 })
	if rec.PolicyHash != policy.Hash() || rec.Absorbed[0].MergeID != a+"-merge" {
		t.Errorf("shadow survivor: policy %s, absorbed %+v", rec.PolicyHash, rec.Absorbed)
	}
}
