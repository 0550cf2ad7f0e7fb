package materializer_test

import (
	"context"
	"maps"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/schemas"
)

// Two members of one group share one store. While a stream flows, a second
// member joins and takes over part of the first one's partitions, then the
// first one shuts down cleanly and the second takes over the rest: the store
// ends as the merge contract folds the stream, nothing lost and no message
// doubled, and no partition is ever reported by both members.
func TestRebalanceHandOver(t *testing.T) {
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		r := newRig(t, k)
		// The group starts where the shared topics end now, as if its store
		// had applied everything before: the test does not wait for other
		// tests' records.
		// PostgreSQL: members of one group share a store with many writers
		// (a SQLite store takes one writer; a second member waits).
		dsn := testenv.Postgres(t)
		storeA, storeB := openPostgres(t, dsn), openPostgres(t, dsn)
		group := testenv.UniqueName(t, "handover")
		start := r.startAtEnd(t, storeA, group)

		// The stream flows until the hand-over is done and a few chunks
		// more; the store must then hold what its prefix folds to.
		stream := randomStream(rand.New(rand.NewPCG(9, 11)), customers(t, 48), 4000)
		const chunk, after = 40, 8
		var producedChunks atomic.Int64
		var lastChunk atomic.Int64 // the producer stops after this chunk
		lastChunk.Store(int64(len(stream) / chunk))
		produced := make(chan error, 1)
		go func() {
			for i := int64(0); i < lastChunk.Load(); i++ {
				if err := r.tryProduce(stream[i*chunk : (i+1)*chunk]...); err != nil {
					produced <- err
					return
				}
				producedChunks.Add(1)
				time.Sleep(250 * time.Millisecond)
			}
			produced <- nil
		}()
		waitFor := func(what string, timeout time.Duration, cond func() bool) {
			t.Helper()
			deadline := time.Now().Add(timeout)
			for !cond() {
				if time.Now().After(deadline) {
					t.Fatalf("%s: not within %s", what, timeout)
				}
				select {
				case err := <-produced:
					t.Fatalf("%s: the stream ended after %d chunks (%v)", what, producedChunks.Load(), err)
				case <-time.After(50 * time.Millisecond):
				}
			}
		}

		a := startMember(t, r, group, storeA, 200)
		// Once the first member applied a batch, alone in the group, it owned
		// every partition: whatever the second one gets is handed over.
		waitFor("the first member applying a batch", 90*time.Second, func() bool {
			held, err := storeA.Offsets(context.Background(), group)
			if err != nil {
				t.Fatal(err)
			}
			return !maps.EqualFunc(held, start, maps.Equal)
		})
		b := startMember(t, r, group, storeB, 200)

		// Sample b first: a partition moves to b only after a revoked it, so
		// a later sample of a cannot still hold it.
		waitFor("the second member taking over partitions", 90*time.Second, func() bool {
			lb := b.metrics.Lag()
			la := a.metrics.Lag()
			for topic, parts := range lb {
				for p := range parts {
					if _, ok := la[topic][p]; ok {
						t.Fatalf("partition %s/%d reported by both members: a %v, b %v", topic, p, la, lb)
					}
				}
			}
			return len(la) > 0 && len(lb) > 0
		})
		t.Logf("both members own partitions after %d chunks: a %v, b %v", producedChunks.Load(), a.metrics.Lag(), b.metrics.Lag())
		// A customer's events and messages share a partition number; one
		// member must own both, or two members would fold one customer. The
		// coordinator's assignment is what a member owns; a member's lag
		// lists a partition only once a fetch named it, and a fetch names a
		// partition only when it has new records (Kafka's incremental fetch
		// sessions leave the others out), so events partition 3 may show
		// there before messages partition 3 does.
		adm := kadm.NewClient(r.cl)
		var members []kadm.DescribedGroupMember
		waitFor("the group stable with two members", 60*time.Second, func() bool {
			groups, err := adm.DescribeGroups(context.Background(), group)
			if err != nil {
				t.Logf("describing group %s: %v", group, err)
				return false
			}
			g := groups[group]
			if g.Err != nil || g.State != "Stable" || len(g.Members) != 2 {
				return false
			}
			members = g.Members
			return true
		})
		for _, m := range members {
			c, ok := m.Assigned.AsConsumer()
			if !ok {
				t.Fatalf("member %s: assignment is not a consumer assignment", m.MemberID)
			}
			owned := map[string][]int32{}
			for _, tp := range c.Topics {
				owned[tp.Topic] = slices.Sorted(slices.Values(tp.Partitions))
			}
			evs, msgs := owned[schemas.CustomerEventsTopic], owned[schemas.CustomerMessagesTopic]
			if len(evs) == 0 || !slices.Equal(evs, msgs) {
				t.Errorf("member %s is assigned events partitions %v but messages partitions %v", m.MemberID, evs, msgs)
			}
		}
		both := producedChunks.Load()
		waitFor("more chunks with two members", 60*time.Second, func() bool { return producedChunks.Load() >= both+after })

		// Stop the first member cleanly while the stream flows on.
		if err := a.stop(); err != nil {
			t.Fatalf("first member: %v", err)
		}
		if la := a.metrics.Lag(); len(la) != 0 {
			t.Errorf("the stopped member still reports lag: %v", la)
		}
		stopped := producedChunks.Load()
		lastChunk.Store(stopped + after)
		if err := <-produced; err != nil {
			t.Fatal(err)
		}
		n := producedChunks.Load()
		t.Logf("first member stopped after chunk %d of %d (%d events)", stopped, n, n*chunk)
		stream = stream[:n*chunk]
		ends := r.endOffsets(t)
		waitCaughtUp(t, storeB, group, ends, 120*time.Second)
		want, wantMessages := expected(stream)
		checkStore(t, storeB, want, wantMessages)
	})
}
