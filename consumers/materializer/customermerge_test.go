package materializer_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/omnisync/omnisync/consumers/merge"
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
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, err := st.Load(context.Background(), []string{id})
		if err == nil && ok(got[id]) {
			return got[id]
		}
		if time.Now().After(deadline) {
			t.Fatalf("customer %s: record %+v (err %v) not as awaited after 60 s", id, got[id], err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
