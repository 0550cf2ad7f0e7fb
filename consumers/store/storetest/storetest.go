// Package storetest is the conformance suite every omnisync store passes:
// each promise of store.Writer (the write side) and store.Reader (the
// read side), checked through store.Store only. A store's test runs
//
//	storetest.Run(t, func(t *testing.T) store.Store { return openEmpty(t) })
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/pkg/events"
)

// Run runs the suite. open returns a new, empty store for every subtest;
// the suite closes it when the subtest ends.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s store.Store)
	}{
		{"LoadRoundTrip", testLoadRoundTrip},
		{"VersionGuard", testVersionGuard},
		{"AllOrNothing", testAllOrNothing},
		{"Offsets", testOffsets},
		{"PolicyHash", testPolicyHash},
		{"CompareAndSetOffsets", testCompareAndSet},
		{"Delete", testDelete},
		{"MessagesAndTombstones", testMessagesAndTombstones},
		{"MessageUpsertIdempotent", testMessageIdempotent},
		{"MessageChannels", testMessageChannels},
		{"Search", testSearch},
		{"Paging", testPaging},
		{"Conflicts", testConflicts},
		{"OddText", testOddText},
		{"ScanAndReplace", testScanAndReplace},
		{"CustomerMerge", testCustomerMerge},
		{"MergedConflicts", testMergedConflicts},
		{"Accounts", testAccounts},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.run(t, s)
		})
	}
}

var ctx = context.Background()

// checkCustomer checks that Customer and Load return want exactly.
func checkCustomer(t *testing.T, s store.Store, want merge.Record) {
	t.Helper()
	got, ok, err := s.Customer(ctx, want.CustomerID)
	if err != nil {
		t.Fatalf("Customer(%s): %v", want.CustomerID, err)
	}
	if !ok || got.CanonicalHash() != want.CanonicalHash() {
		t.Errorf("Customer(%s) = version %d (found %v), want version %d; diff (-want +got):\n%s",
			want.CustomerID, got.Version, ok, want.Version, cmp.Diff(want, got))
	}
	loaded, err := s.Load(ctx, []string{want.CustomerID})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got, ok := loaded[want.CustomerID]; !ok || got.CanonicalHash() != want.CanonicalHash() {
		t.Errorf("Load(%s) = version %d (found %v), want version %d", want.CustomerID, got.Version, ok, want.Version)
	}
}

// search returns the IDs of every customer SearchCustomers finds for q.
func search(t *testing.T, s store.Store, q string) []string {
	t.Helper()
	recs, err := s.SearchCustomers(ctx, q, nil, 1000)
	if err != nil {
		t.Fatalf("SearchCustomers(%q): %v", q, err)
	}
	ids := []string{}
	for _, r := range recs {
		ids = append(ids, r.CustomerID)
	}
	return ids
}

func timelineIDs(t *testing.T, s store.Store, customer string) []string {
	t.Helper()
	ms, err := s.Timeline(ctx, customer, nil, 1000)
	if err != nil {
		t.Fatalf("Timeline(%s): %v", customer, err)
	}
	ids := []string{}
	for _, m := range ms {
		ids = append(ids, m.MessageID)
	}
	return ids
}

func conflictIDs(t *testing.T, s store.Store, status events.ConflictStatus) []string {
	t.Helper()
	cs, err := s.Conflicts(ctx, status, nil, 1000)
	if err != nil {
		t.Fatalf("Conflicts(%q): %v", status, err)
	}
	ids := []string{}
	for _, c := range cs {
		ids = append(ids, c.ID)
	}
	return ids
}

// rich returns a record with every kind of field, identities, an open and
// a resolved conflict, a cleared field and a last contact, and the message
// that made the contact.
func rich(t *testing.T, id string) (merge.Record, events.MessageEvent) {
	m := message(id, id+"-m1", 5*time.Hour, events.ChannelWeChat, "你好，我想查询订单")
	r := fold(t, merge.Record{},
		upsert(id, id+"-e1", 0, events.ChannelCRM, name("张三"), phone("+8613800138000"), email("zhang@example.com"), full(),
			ident("crm", "", "crm-"+id)),
		upsert(id, id+"-e2", time.Hour, events.ChannelWeChat, phone("+8613900000000"), ident("wechat_openid", "wx_app", "o-"+id)),
		upsert(id, id+"-e3", 2*time.Hour, events.ChannelWeb, email("other@example.com")),
		resolve(id, id+"-e4", 3*time.Hour, "email", id+"-e3", events.ChoiceTakeCandidate, nil),
		upsert(id, id+"-e5", 4*time.Hour, events.ChannelWeb, cleared("attributes.level")),
	)
	return foldMessages(t, r, m), m
}

func testLoadRoundTrip(t *testing.T, s store.Store) {
	a, m := rich(t, "cus_rich")
	recreated := fold(t, merge.Record{},
		upsert("cus_again", "a1", 0, events.ChannelApp, name("Again")),
		remove("cus_again", "a2", time.Hour),
		upsert("cus_again", "a3", 2*time.Hour, events.ChannelApp, name("Again, later")))
	deleted := fold(t, merge.Record{}, upsert("cus_gone", "g1", 0, events.ChannelApp, name("Gone")), remove("cus_gone", "g2", time.Hour))
	if len(a.Conflicts) != 2 || !a.NeedsReview || a.LastContact == nil || recreated.Tombstone == nil || !deleted.Deleted() {
		t.Fatalf("the fixtures are not what this test needs: %+v", a)
	}
	apply(t, s, batch(records(a, recreated, deleted), m))
	for _, want := range []merge.Record{a, recreated, deleted} {
		checkCustomer(t, s, want)
	}
	loaded, err := s.Load(ctx, []string{"cus_rich", "cus_again", "cus_gone", "cus_never"})
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded) != 3 {
		t.Errorf("Load of 3 stored and 1 unknown customer returned %d records, want 3", len(loaded))
	}
	if _, ok, err := s.Customer(ctx, "cus_never"); ok || err != nil {
		t.Errorf("Customer(unknown) = found %v, %v; want not found", ok, err)
	}
	if got, err := s.Load(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("Load(nil) = %v, %v; want an empty map", got, err)
	}
	got, err := s.Timeline(ctx, "cus_rich", nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]events.MessageEvent{m}, got); diff != "" {
		t.Errorf("Timeline round trip (-want +got):\n%s", diff)
	}
}

// versions returns versions 2, 4 and a forged version 4 of one customer:
// v2 has an open conflict on phone, v4 took its candidate and renamed the
// customer; the forged v4 renamed it otherwise.
func versions(t *testing.T, id string) (v2, v4, forged merge.Record, conflictID string) {
	v2 = fold(t, merge.Record{},
		upsert(id, "v1", 0, events.ChannelCRM, name("Alice Old"), phone("+14155550100")),
		upsert(id, "v2", time.Hour, events.ChannelWeChat, phone("+14155550199")))
	v3 := fold(t, v2, resolve(id, "v3", 2*time.Hour, "phone", "v2", events.ChoiceTakeCandidate, nil))
	v4 = fold(t, v3, upsert(id, "v4", 3*time.Hour, events.ChannelCRM, name("Alice New")))
	forged = fold(t, v3, upsert(id, "v4x", 3*time.Hour, events.ChannelCRM, name("Mallory")))
	if v2.Version != 2 || v4.Version != 4 || forged.Version != 4 {
		t.Fatalf("fixture versions %d, %d, %d; want 2, 4, 4", v2.Version, v4.Version, forged.Version)
	}
	return v2, v4, forged, merge.ConflictID(id, "phone", "v2")
}

func testVersionGuard(t *testing.T, s store.Store) {
	type step []string // the records of one batch: "v2", "v4" or "forged"
	tests := []struct {
		name  string
		steps []step
		want  string
	}{
		{"older after newer is ignored", []step{{"v4"}, {"v2"}}, "v4"},
		{"newer after older is written", []step{{"v2"}, {"v4"}}, "v4"},
		{"same version again is ignored", []step{{"v4"}, {"forged"}}, "v4"},
		{"older after newer in one batch", []step{{"v4", "v2"}}, "v4"},
		{"newer after older in one batch", []step{{"v2", "v4"}}, "v4"},
		{"older alone", []step{{"v2"}}, "v2"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("cus_version_%d", i)
			v2, v4, forged, conflict := versions(t, id)
			byName := map[string]merge.Record{"v2": v2, "v4": v4, "forged": forged}
			for _, st := range tc.steps {
				var recs []merge.Record
				for _, n := range st {
					recs = append(recs, byName[n])
				}
				apply(t, s, batch(recs))
			}
			want := byName[tc.want]
			checkCustomer(t, s, want)
			// The child rows are those of the stored version.
			c, ok, err := s.Conflict(ctx, conflict)
			if err != nil || !ok {
				t.Fatalf("Conflict(%s) = found %v, %v", conflict, ok, err)
			}
			if c.Status != want.Conflicts[0].Status {
				t.Errorf("conflict status %s, want %s (that of version %d)", c.Status, want.Conflicts[0].Status, want.Version)
			}
			for _, q := range []string{"Alice Old", "Alice New", "Mallory", "+14155550100", "+14155550199"} {
				found := slices.Contains(search(t, s, q), id)
				wantFound := false
				for _, f := range []string{"name", "phone"} {
					wantFound = wantFound || want.Fields[f].Value == fmt.Sprintf("%q", q)
				}
				if found != wantFound {
					t.Errorf("search %q finds the customer: %v, want %v (stored should be version %d)", q, found, wantFound, want.Version)
				}
			}
		})
	}
}

func testAllOrNothing(t *testing.T, s store.Store) {
	// big is a batch large enough that a store is mid-way through it when
	// a short timeout cancels it.
	big := func(prefix string) (*store.Batch, []string) {
		b := &store.Batch{Group: prefix, PolicyHash: "hash-" + prefix, Offsets: map[string]map[int32]int64{"topic": {0: 4000, 1: 17}}}
		var ids []string
		for i := range 2000 {
			id := fmt.Sprintf("%s_%04d", prefix, i)
			ids = append(ids, id)
			b.Records = append(b.Records, fold(t, merge.Record{}, upsert(id, id+"-e", 0, events.ChannelApp,
				name("Name "+id), phone("+1415555"+fmt.Sprintf("%04d", i)), email(id+"@example.com"), full(), ident("app_user", "", id))))
			b.Messages = append(b.Messages, message(id, id+"-m", time.Minute, events.ChannelApp, "hello"))
		}
		return b, ids
	}
	check := func(t *testing.T, b *store.Batch, ids []string, err error) (applied bool) {
		t.Helper()
		loaded, lerr := s.Load(ctx, ids)
		if lerr != nil {
			t.Fatal(lerr)
		}
		offsets, oerr := s.Offsets(ctx, b.Group)
		if oerr != nil {
			t.Fatal(oerr)
		}
		last := ids[len(ids)-1]
		timeline := timelineIDs(t, s, last)
		if err == nil {
			if len(loaded) != len(ids) || offsets["topic"][0] != 4000 || len(timeline) != 1 {
				t.Errorf("Apply succeeded but the store holds %d of %d records, offsets %v, %d of 1 messages", len(loaded), len(ids), offsets, len(timeline))
			}
			return true
		}
		if len(loaded) != 0 || len(offsets) != 0 || len(timeline) != 0 {
			t.Errorf("Apply failed (%v) but the store holds %d of its %d records, offsets %v, %d messages", err, len(loaded), len(ids), offsets, len(timeline))
		}
		return false
	}

	t.Run("cancelled before", func(t *testing.T) {
		b, ids := big("pre")
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		err := s.Apply(cctx, b)
		if err == nil {
			t.Fatal("Apply with a cancelled context succeeded")
		}
		check(t, b, ids, err)
		if h, err := s.PolicyHash(ctx); err != nil || h != "" {
			t.Errorf("PolicyHash after a failed Apply = %q, %v; want empty", h, err)
		}
	})
	t.Run("cancelled mid-way", func(t *testing.T) {
		// Whatever the moment the context is cancelled, the batch is in
		// the store entirely or not at all.
		outcomes := map[bool]int{}
		for i, d := range []time.Duration{time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond, 150 * time.Millisecond, 500 * time.Millisecond} {
			b, ids := big(fmt.Sprintf("mid%d", i))
			cctx, cancel := context.WithTimeout(ctx, d)
			err := s.Apply(cctx, b)
			cancel()
			outcomes[check(t, b, ids, err)]++
		}
		t.Logf("batches cancelled at 1 ms to 500 ms: %d applied whole, %d not at all", outcomes[true], outcomes[false])
	})
}

func testOffsets(t *testing.T, s store.Store) {
	type offsets = map[string]map[int32]int64
	steps := []struct {
		group   string
		offsets offsets
	}{
		{"g1", offsets{"events": {0: 10, 1: 20}, "messages": {0: 5}}},
		{"g1", offsets{"events": {1: 25, 2: 7}}},
		{"g2", offsets{"events": {0: 99}}},
		{"g1", offsets{"messages": {0: 6}}},
	}
	if got, err := s.Offsets(ctx, "g1"); err != nil || len(got) != 0 {
		t.Fatalf("Offsets of an empty store = %v, %v; want none", got, err)
	}
	for _, st := range steps {
		// Offset-only batches happen when every record was stale.
		apply(t, s, &store.Batch{Group: st.group, PolicyHash: policy.Hash(), Offsets: st.offsets})
	}
	for g, want := range map[string]offsets{
		"g1": {"events": {0: 10, 1: 25, 2: 7}, "messages": {0: 6}},
		"g2": {"events": {0: 99}},
		"g3": {},
	} {
		got, err := s.Offsets(ctx, g)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Offsets(%s) (-want +got):\n%s", g, diff)
		}
	}
}

func testPolicyHash(t *testing.T, s store.Store) {
	if h, err := s.PolicyHash(ctx); err != nil || h != "" {
		t.Fatalf("PolicyHash of an empty store = %q, %v; want \"\"", h, err)
	}
	for _, want := range []string{"hash-1", "hash-2"} {
		apply(t, s, &store.Batch{Group: group, PolicyHash: want, Offsets: map[string]map[int32]int64{"t": {0: 1}}})
		if h, err := s.PolicyHash(ctx); err != nil || h != want {
			t.Errorf("PolicyHash = %q, %v; want %q", h, err, want)
		}
	}
}

// testCompareAndSet: a batch with From applies only while the store holds
// From's offsets (store.NoOffset for none) and no other policy hash;
// otherwise it writes nothing and says why.
func testCompareAndSet(t *testing.T, s store.Store) {
	type offsets = map[string]map[int32]int64
	rec, _ := rich(t, "cas-1")
	apply(t, s, &store.Batch{Group: group, PolicyHash: policy.Hash(), Offsets: offsets{"events": {0: 10}},
		From: offsets{"events": {0: store.NoOffset}}})
	var moved *store.OffsetsMovedError
	err := s.Apply(ctx, &store.Batch{Group: group, PolicyHash: policy.Hash(), Records: []merge.Record{rec},
		Offsets: offsets{"events": {0: 20}}, From: offsets{"events": {0: 5}}})
	if !errors.As(err, &moved) || moved.Held["events"][0] != 10 {
		t.Fatalf("Apply from offsets the store does not hold = %v; want an OffsetsMovedError holding 10", err)
	}
	err = s.Apply(ctx, &store.Batch{Group: group, PolicyHash: policy.Hash(), Records: []merge.Record{rec},
		Offsets: offsets{"events": {1: 3}}, From: offsets{"events": {1: 0}}})
	if !errors.As(err, &moved) {
		t.Fatalf("Apply from an offset on a partition the store holds none of = %v; want an OffsetsMovedError", err)
	}
	err = s.Apply(ctx, &store.Batch{Group: group, PolicyHash: "another policy", Records: []merge.Record{rec},
		Offsets: offsets{"events": {0: 20}}, From: offsets{"events": {0: 10}}})
	if !errors.Is(err, store.ErrPolicyMismatch) {
		t.Fatalf("Apply of a batch of another policy = %v; want ErrPolicyMismatch", err)
	}
	if got, err := s.Load(ctx, []string{rec.CustomerID}); err != nil || len(got) != 0 {
		t.Fatalf("refused batches wrote %v (%v); want nothing", got, err)
	}
	apply(t, s, &store.Batch{Group: group, PolicyHash: policy.Hash(), Records: []merge.Record{rec},
		Offsets: offsets{"events": {0: 20}}, From: offsets{"events": {0: 10}}})
	checkCustomer(t, s, rec)
	if got, err := s.Offsets(ctx, group); err != nil || got["events"][0] != 20 {
		t.Errorf("Offsets after the compare-and-set = %v, %v; want events/0 at 20", got, err)
	}

	// The generation: a batch folded from records of another generation
	// is refused where the offsets agree; a repair makes a new one.
	gen, err := s.Generation(ctx)
	if err != nil || gen == "" {
		t.Fatalf("Generation = %q, %v; want one from the first opening on", gen, err)
	}
	err = s.Apply(ctx, &store.Batch{Group: group, PolicyHash: policy.Hash(), Generation: "another", Records: []merge.Record{rec},
		Offsets: offsets{"events": {0: 30}}, From: offsets{"events": {0: 20}}})
	if !errors.As(err, &moved) || moved.Held["events"][0] != 20 {
		t.Fatalf("Apply of a batch of another generation = %v; want an OffsetsMovedError holding 20", err)
	}
	apply(t, s, &store.Batch{Group: group, PolicyHash: policy.Hash(), Generation: gen,
		Offsets: offsets{"events": {0: 30}}, From: offsets{"events": {0: 20}}})
	if r, ok := s.(store.Replacer); ok {
		if err := r.Replace(ctx, []string{rec.CustomerID}, []merge.Record{rec}, nil); err != nil {
			t.Fatal(err)
		}
		if after, err := s.Generation(ctx); err != nil || after == gen {
			t.Fatalf("Generation after Replace = %q, %v; want a new one (was %q)", after, err, gen)
		}
		err = s.Apply(ctx, &store.Batch{Group: group, PolicyHash: policy.Hash(), Generation: gen,
			Offsets: offsets{"events": {0: 40}}, From: offsets{"events": {0: 30}}})
		if !errors.As(err, &moved) {
			t.Fatalf("Apply of a batch folded before a repair = %v; want an OffsetsMovedError", err)
		}
	}
}

func testDelete(t *testing.T, s store.Store) {
	a, m := rich(t, "cus_del")
	other, om := rich(t, "cus_keep")
	apply(t, s, batch(records(a, other), m, om))
	openConflict := a.Conflicts[0].ID
	if _, ok, _ := s.Conflict(ctx, openConflict); !ok {
		t.Fatalf("conflict %s not stored before the delete", openConflict)
	}

	gone := fold(t, a, remove("cus_del", "cus_del-del", 6*time.Hour))
	apply(t, s, batch(records(gone)))
	checkCustomer(t, s, gone) // the tombstone stays
	if got := timelineIDs(t, s, "cus_del"); len(got) != 0 {
		t.Errorf("timeline after delete = %v, want empty", got)
	}
	if _, ok, err := s.Conflict(ctx, openConflict); ok || err != nil {
		t.Errorf("Conflict(%s) after delete: found %v, %v; want erased", openConflict, ok, err)
	}
	for _, id := range conflictIDs(t, s, "") {
		if slices.ContainsFunc(a.Conflicts, func(c merge.Conflict) bool { return c.ID == id }) {
			t.Errorf("Conflicts lists %s of the deleted customer", id)
		}
	}
	for _, q := range []string{"", "cus_del", "o-cus_del", "crm-cus_del", "张三", "+8613800138000"} {
		if got := search(t, s, q); slices.Contains(got, "cus_del") {
			t.Errorf("search %q finds the deleted customer", q)
		}
	}
	// The other customer is untouched.
	checkCustomer(t, s, other)
	if got := timelineIDs(t, s, "cus_keep"); !slices.Equal(got, []string{om.MessageID}) {
		t.Errorf("other customer's timeline = %v, want [%s]", got, om.MessageID)
	}
	if got := search(t, s, "o-cus_keep"); !slices.Equal(got, []string{"cus_keep"}) {
		t.Errorf("search by the other customer's identity = %v", got)
	}

	// A newer upsert recreates the customer without the erased data.
	back := fold(t, gone, upsert("cus_del", "cus_del-back", 7*time.Hour, events.ChannelApp, name("Back"), ident("app_user", "", "u-back")))
	apply(t, s, batch(records(back)))
	checkCustomer(t, s, back)
	if got := search(t, s, "u-back"); !slices.Equal(got, []string{"cus_del"}) {
		t.Errorf("search by the new identity = %v, want [cus_del]", got)
	}
	if got := search(t, s, "o-cus_del"); len(got) != 0 {
		t.Errorf("search by an erased identity = %v, want none", got)
	}
	if got := timelineIDs(t, s, "cus_del"); len(got) != 0 {
		t.Errorf("timeline after re-creation = %v, want empty", got)
	}
}

func testMessagesAndTombstones(t *testing.T, s store.Store) {
	// The customer of each case is deleted at 10h by event <id>/del-5;
	// message IDs are <id>/<name>, want lists the names.
	tests := []struct {
		name string
		run  func(t *testing.T, id string, deleted merge.Record)
		want []string // the timeline's message IDs
	}{
		{"older message after the delete is dropped", func(t *testing.T, id string, deleted merge.Record) {
			apply(t, s, batch(records(deleted)))
			apply(t, s, batch(nil, message(id, id+"/m1", 9*time.Hour, events.ChannelWeb, "late")))
		}, []string{}},
		{"message at the delete's time is ordered by ID", func(t *testing.T, id string, deleted merge.Record) {
			apply(t, s, batch(records(deleted)))
			apply(t, s, batch(nil, message(id, id+"/del-4", 10*time.Hour, events.ChannelWeb, "before"),
				message(id, id+"/del-5", 10*time.Hour, events.ChannelWeb, "same stamp"),
				message(id, id+"/del-6", 10*time.Hour, events.ChannelWeb, "after")))
		}, []string{"del-6"}},
		{"newer message after the delete is kept", func(t *testing.T, id string, deleted merge.Record) {
			apply(t, s, batch(records(deleted)))
			apply(t, s, batch(nil, message(id, id+"/m2", 11*time.Hour, events.ChannelWeb, "new")))
		}, []string{"m2"}},
		{"older message and the delete in one batch", func(t *testing.T, id string, deleted merge.Record) {
			apply(t, s, batch(records(deleted), message(id, id+"/m1", 9*time.Hour, events.ChannelWeb, "late"),
				message(id, id+"/m2", 11*time.Hour, events.ChannelWeb, "new")))
		}, []string{"m2"}},
		{"delete erases stored messages", func(t *testing.T, id string, deleted merge.Record) {
			apply(t, s, batch(nil, message(id, id+"/m1", 9*time.Hour, events.ChannelWeb, "old")))
			apply(t, s, batch(records(deleted)))
		}, []string{}},
		{"delete and re-creation in one batch erase stored messages", func(t *testing.T, id string, deleted merge.Record) {
			apply(t, s, batch(nil, message(id, id+"/m1", 9*time.Hour, events.ChannelWeb, "old")))
			back := fold(t, deleted, upsert(id, "up-1", 12*time.Hour, events.ChannelApp, name("Back")))
			if back.Deleted() || back.Tombstone == nil {
				t.Fatal("fixture: the re-created record must hold the tombstone and not be deleted")
			}
			apply(t, s, batch(records(back), message(id, id+"/m2", 11*time.Hour, events.ChannelWeb, "new")))
		}, []string{"m2"}},
		{"a stale record's older tombstone does not let a message past the stored one", func(t *testing.T, id string, deleted merge.Record) {
			again := fold(t, deleted, upsert(id, "up-1", 11*time.Hour, events.ChannelApp, name("Back")),
				remove(id, id+"/del-9", 14*time.Hour))
			apply(t, s, batch(records(again)))
			// A re-delivered batch from before the second delete: its record
			// is older than the stored one, its message older than that delete.
			apply(t, s, batch(records(deleted), message(id, id+"/m3", 13*time.Hour, events.ChannelWeb, "erased")))
		}, []string{}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("cus_tomb_%d", i)
			deleted := fold(t, merge.Record{}, upsert(id, "up-0", 0, events.ChannelApp, name("Tomb")), remove(id, id+"/del-5", 10*time.Hour))
			tc.run(t, id, deleted)
			want := []string{}
			for _, m := range tc.want {
				want = append(want, id+"/"+m)
			}
			if got := timelineIDs(t, s, id); !slices.Equal(got, want) {
				t.Errorf("timeline = %v, want %v", got, want)
			}
		})
	}
}

func testMessageIdempotent(t *testing.T, s store.Store) {
	m1 := message("cus_msg", "m1", time.Hour, events.ChannelWeChat, "hello")
	m2 := message("cus_msg", "m2", 2*time.Hour, events.ChannelPhone, "again")
	apply(t, s, batch(nil, m1, m1, m2))
	apply(t, s, batch(nil, m2, m1))
	got, err := s.Timeline(ctx, "cus_msg", nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]events.MessageEvent{m1, m2}, got); diff != "" {
		t.Errorf("timeline after re-deliveries (-want +got):\n%s", diff)
	}
}

// MessageChannels names every channel of a customer's stored messages,
// once, sorted, and nothing for customers without messages.
func testMessageChannels(t *testing.T, s store.Store) {
	apply(t, s, batch(nil,
		message("cus_a", "a1", time.Hour, events.ChannelWeChat, "hi"),
		message("cus_a", "a2", 2*time.Hour, events.ChannelPhone, "call"),
		message("cus_a", "a3", 3*time.Hour, events.ChannelWeChat, "again"),
		message("cus_a", "a4", 4*time.Hour, events.ChannelApp, "app"),
		message("cus_b", "b1", time.Hour, events.ChannelWeb, "web")))
	got, err := s.MessageChannels(ctx, []string{"cus_a", "cus_b", "cus_none"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]events.Channel{
		"cus_a": {events.ChannelApp, events.ChannelPhone, events.ChannelWeChat},
		"cus_b": {events.ChannelWeb},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("MessageChannels (-want +got):\n%s", diff)
	}
	if got, err := s.MessageChannels(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("MessageChannels(nil) = %v, %v; want an empty map", got, err)
	}
}

func testSearch(t *testing.T, s store.Store) {
	h := time.Hour
	recs := []merge.Record{
		fold(t, merge.Record{}, upsert("cus_s1", "s1", 1*h, events.ChannelCRM, name("Alice Smith"), phone("+14155550101"),
			email("alice@example.com"), ident("wechat_openid", "wx1", "oAlice123"))),
		fold(t, merge.Record{}, upsert("cus_s2", "s2", 2*h, events.ChannelCRM, name("张三丰"), phone("+8613800138000"), email("zhang@example.cn"))),
		// An identity a message brought (a sighting) is found too.
		foldMessages(t, fold(t, merge.Record{}, upsert("cus_s3", "s3", 3*h, events.ChannelCRM, name("100% Real_Name"), email("percent@example.com"))),
			message("cus_s3", "s3m", 2*h, events.ChannelApp, "hi")),
		fold(t, merge.Record{},
			upsert("cus_s4", "s4a", 4*h, events.ChannelCRM, name("Soon Cleared"), phone("+8613800138001"), email("nobody@example.org")),
			upsert("cus_s4", "s4b", 5*h, events.ChannelCRM, cleared("name"))),
		fold(t, merge.Record{}, upsert("cus_s5", "s5", 6*h, events.ChannelCRM, name(`Bob "The Builder" O\Neil`))),
		fold(t, merge.Record{},
			upsert("cus_s6", "s6a", 7*h, events.ChannelCRM, name("Alice Deleted"), ident("wechat_openid", "wx1", "oGone")),
			remove("cus_s6", "s6b", 8*h)),
	}
	apply(t, s, batch(recs))
	tests := []struct {
		q    string
		want []string // most recently updated first
	}{
		{"", []string{"cus_s5", "cus_s4", "cus_s3", "cus_s2", "cus_s1"}},
		{"alice", []string{"cus_s1"}},
		{"ALICE SMITH", []string{"cus_s1"}},
		{"smi", []string{"cus_s1"}},
		{"张三", []string{"cus_s2"}},
		{"三丰", []string{"cus_s2"}},
		{"13800", []string{"cus_s4", "cus_s2"}},
		{"+1415", []string{"cus_s1"}},
		{"EXAMPLE.CN", []string{"cus_s2"}},
		{"@example.", []string{"cus_s4", "cus_s3", "cus_s2", "cus_s1"}},
		{"oAlice123", []string{"cus_s1"}}, // identity value, exactly
		{"oAlice12", []string{}},
		{"oalice123", []string{}},
		{"cus_s3", []string{"cus_s3"}},     // customer ID, exactly
		{"dev-cus_s3", []string{"cus_s3"}}, // a message's identity
		{"cus_s", []string{}},
		{"%", []string{"cus_s3"}},
		{"_", []string{"cus_s3"}},
		{"0%", []string{"cus_s3"}},
		{"a%", []string{}},
		{`\`, []string{"cus_s5"}},
		{`"`, []string{"cus_s5"}},
		{`"the builder"`, []string{"cus_s5"}},
		{"null", []string{}},
		{"Soon", []string{}},
		{"Alice Deleted", []string{}},
		{"oGone", []string{}},
		{"cus_s6", []string{}},
	}
	for _, tc := range tests {
		if got := search(t, s, tc.q); !slices.Equal(got, tc.want) {
			t.Errorf("SearchCustomers(%q) = %v, want %v", tc.q, got, tc.want)
		}
	}
}

// pageAll reads every page of size n through page and checks that the
// pages join to want, without gaps or duplicates.
func pageAll[T any](t *testing.T, what string, n int, want []string, page func(after *store.Cursor) ([]T, error), key func(T) (store.Cursor, string)) {
	t.Helper()
	var got []string
	var after *store.Cursor
	for pages := 0; ; pages++ {
		items, err := page(after)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if len(items) > n {
			t.Fatalf("%s: a page of %d items, limit %d", what, len(items), n)
		}
		if len(items) == 0 || pages > len(want) {
			break
		}
		for _, it := range items {
			c, id := key(it)
			got = append(got, id)
			after = &c
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s in pages of %d:\n got %v\nwant %v", what, n, got, want)
	}
}

func testPaging(t *testing.T, s store.Store) {
	// Customers, messages and conflicts with equal times, so that the ID
	// decides the order within a time.
	var recs []merge.Record
	var msgs []events.MessageEvent
	for i := range 23 {
		id := fmt.Sprintf("cus_page_%02d", (i*7)%23) // IDs not in time order
		at := time.Duration(i%5) * time.Hour
		r := fold(t, merge.Record{},
			upsert(id, fmt.Sprintf("p%02d-a", i), at, events.ChannelCRM, name(fmt.Sprintf("Pager %d", i)), phone("+8613800000000")),
			upsert(id, fmt.Sprintf("p%02d-b", i), at+time.Duration(i%3)*time.Minute, events.ChannelWeChat, phone("+8613911111111")))
		recs = append(recs, r)
		ch := []events.Channel{events.ChannelWeb, events.ChannelApp, events.ChannelWeChat, events.ChannelPhone}[i%4]
		msgs = append(msgs, message("cus_timeline", fmt.Sprintf("msg-%02d", (i*5)%23), time.Duration(i%4)*time.Minute, ch, "hi"))
	}
	apply(t, s, batch(recs, msgs...))

	sorted := slices.Clone(recs)
	slices.SortFunc(sorted, func(a, b merge.Record) int {
		if c := b.UpdatedAt.Compare(a.UpdatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.CustomerID, b.CustomerID)
	})
	var wantCustomers []string
	for _, r := range sorted {
		wantCustomers = append(wantCustomers, r.CustomerID)
	}
	customerKey := func(r merge.Record) (store.Cursor, string) {
		return store.Cursor{At: r.UpdatedAt.UnixMilli(), ID: r.CustomerID}, r.CustomerID
	}
	for _, q := range []string{"", "pager"} {
		for _, n := range []int{1, 4, 23, 50} {
			pageAll(t, fmt.Sprintf("SearchCustomers(%q)", q), n, wantCustomers, func(after *store.Cursor) ([]merge.Record, error) {
				return s.SearchCustomers(ctx, q, after, n)
			}, customerKey)
		}
	}

	slices.SortFunc(msgs, func(a, b events.MessageEvent) int {
		if c := a.OccurredAt.Compare(b.OccurredAt); c != 0 {
			return c
		}
		return strings.Compare(a.MessageID, b.MessageID)
	})
	var wantMessages []string
	for _, m := range msgs {
		wantMessages = append(wantMessages, m.MessageID)
	}
	for _, n := range []int{1, 3, 23} {
		pageAll(t, "Timeline", n, wantMessages, func(after *store.Cursor) ([]events.MessageEvent, error) {
			return s.Timeline(ctx, "cus_timeline", after, n)
		}, func(m events.MessageEvent) (store.Cursor, string) {
			return store.Cursor{At: m.OccurredAt.UnixMilli(), ID: m.MessageID}, m.MessageID
		})
	}

	var conflicts []store.Conflict
	for _, r := range recs {
		for _, c := range r.Conflicts {
			conflicts = append(conflicts, store.Conflict{CustomerID: r.CustomerID, Conflict: c})
		}
	}
	slices.SortFunc(conflicts, func(a, b store.Conflict) int {
		if c := a.DetectedAt.Compare(b.DetectedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	var wantConflicts []string
	for _, c := range conflicts {
		wantConflicts = append(wantConflicts, c.ID)
	}
	if len(wantConflicts) != 23 {
		t.Fatalf("fixture: %d conflicts, want 23", len(wantConflicts))
	}
	for _, status := range []events.ConflictStatus{"", events.ConflictOpen} {
		for _, n := range []int{1, 2, 23} {
			pageAll(t, fmt.Sprintf("Conflicts(%q)", status), n, wantConflicts, func(after *store.Cursor) ([]store.Conflict, error) {
				return s.Conflicts(ctx, status, after, n)
			}, func(c store.Conflict) (store.Cursor, string) {
				return store.Cursor{At: c.DetectedAt.UnixMilli(), ID: c.ID}, c.ID
			})
		}
	}
}

func testConflicts(t *testing.T, s store.Store) {
	setTo := "+8613700000000"
	tests := []struct {
		customer string
		resolve  func(id string) *events.CustomerEvent
		want     events.ConflictStatus
	}{
		{"cus_c_open", nil, events.ConflictOpen},
		{"cus_c_kept", func(id string) *events.CustomerEvent {
			return resolve(id, id+"-r", 2*time.Hour, "phone", id+"-b", events.ChoiceKeepCurrent, nil)
		}, events.ConflictKeptCurrent},
		{"cus_c_took", func(id string) *events.CustomerEvent {
			return resolve(id, id+"-r", 3*time.Hour, "phone", id+"-b", events.ChoiceTakeCandidate, nil)
		}, events.ConflictTookCandidate},
		{"cus_c_set", func(id string) *events.CustomerEvent {
			return resolve(id, id+"-r", 4*time.Hour, "phone", id+"-b", events.ChoiceSetValue, &setTo)
		}, events.ConflictSetValue},
	}
	var recs []merge.Record
	var all []store.Conflict
	for i, tc := range tests {
		id := tc.customer
		r := fold(t, merge.Record{},
			upsert(id, id+"-a", 0, events.ChannelCRM, phone("+8613800138000")),
			upsert(id, id+"-b", time.Duration(i)*time.Minute, events.ChannelWeChat, phone("+8613900000000")))
		if tc.resolve != nil {
			r = fold(t, r, tc.resolve(id))
		}
		if len(r.Conflicts) != 1 || r.Conflicts[0].Status != tc.want {
			t.Fatalf("fixture %s: conflicts %+v", id, r.Conflicts)
		}
		recs = append(recs, r)
		all = append(all, store.Conflict{CustomerID: id, Conflict: r.Conflicts[0]})
	}
	apply(t, s, batch(recs))
	for _, want := range all {
		got, err := s.Conflicts(ctx, want.Status, nil, 100)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]store.Conflict{want}, got); diff != "" {
			t.Errorf("Conflicts(%s) (-want +got):\n%s", want.Status, diff)
		}
		c, ok, err := s.Conflict(ctx, want.ID)
		if err != nil || !ok {
			t.Fatalf("Conflict(%s) = found %v, %v", want.ID, ok, err)
		}
		if diff := cmp.Diff(want, c); diff != "" {
			t.Errorf("Conflict(%s) (-want +got):\n%s", want.ID, diff)
		}
	}
	got, err := s.Conflicts(ctx, "", nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(all, got); diff != "" {
		t.Errorf("Conflicts of every status (-want +got):\n%s", diff)
	}
	if _, ok, err := s.Conflict(ctx, "no-such-conflict"); ok || err != nil {
		t.Errorf("Conflict(unknown) = found %v, %v; want not found", ok, err)
	}
}

func testOddText(t *testing.T, s store.Store) {
	// NUL bytes and other odd text, as a channel may send them, never
	// stall a store: records and messages come back exactly.
	odd := "a\x00b \U0001F600 \u2028 <&> \\ \"q\" 'x' 名字"
	r := fold(t, merge.Record{}, upsert("cus_odd", "o1", 0, events.ChannelWeb, name(odd), email("odd@example.com"),
		ident("web_visitor", "site\x00", "v\x00"), func(e *events.CustomerEvent) { e.Source = "src\x00" }))
	m := message("cus_odd", "o-m1", time.Hour, events.ChannelWeb, odd)
	m.Metadata = map[string]string{"k\x00": "v\x00"}
	r = foldMessages(t, r, m)
	apply(t, s, batch(records(r), m))
	checkCustomer(t, s, r)
	got, err := s.Timeline(ctx, "cus_odd", nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]events.MessageEvent{m}, got); diff != "" {
		t.Errorf("Timeline round trip (-want +got):\n%s", diff)
	}
	if got := search(t, s, "名字"); !slices.Equal(got, []string{"cus_odd"}) {
		t.Errorf("search in an odd name = %v, want [cus_odd]", got)
	}
}
