package materializer_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/schemas"
)

// owned lists the partitions the members own and have fetched from, as
// "topic/partition". (TestRebalanceHandOver checks that no two members
// report one.)
func owned(members ...*member) []string {
	var out []string
	for _, m := range members {
		for topic, parts := range m.metrics.Lag() {
			for p := range parts {
				if key := fmt.Sprintf("%s/%d", topic, p); !slices.Contains(out, key) {
					out = append(out, key)
				}
			}
		}
	}
	return out
}

// Two members of one group on a real three-node cluster. (a) One member
// shuts down cleanly, as on SIGTERM: it leaves the group, and the other
// owns all partitions within 5 s. (b) Every broker stops for 20 s and
// starts again: every partition is consumed again within seconds of the
// brokers serving. The figures are logged.
func TestMembershipRecovery(t *testing.T) {
	c := testenv.KafkaNodes(t, 3)
	r := newRig(t, c.Kafka)
	// PostgreSQL: members of one group share a store with many writers
	// (a SQLite store takes one writer; a second member waits).
	dsn := testenv.Postgres(t)
	storeA, storeB := openPostgres(t, dsn), openPostgres(t, dsn)
	group := testenv.UniqueName(t, "membership")
	r.startAtEnd(t, storeA, group)
	const partitions = 6 // newRig's layout, of both input topics
	ids := customers(t, 48)
	rng := rand.New(rand.NewPCG(21, 8))
	// chunk produces one event for each customer: every partition gets
	// records, so each owner fetches from each of its partitions.
	chunk := func() {
		t.Helper()
		r.produce(t, randomStream(rng, ids, 2*len(ids))...)
	}
	// until produces a chunk every 200 ms until cond holds and returns how
	// long that took.
	until := func(what string, timeout time.Duration, cond func() bool) time.Duration {
		t.Helper()
		start := time.Now()
		for !cond() {
			if time.Since(start) > timeout {
				t.Fatalf("%s: not within %s", what, timeout)
			}
			chunk()
			time.Sleep(200 * time.Millisecond)
		}
		return time.Since(start)
	}
	all := func(ms ...*member) bool { return len(owned(ms...)) == 2*partitions }
	both := func(a, b *member) func() bool {
		return func() bool { return all(a, b) && len(a.metrics.Lag()) > 0 && len(b.metrics.Lag()) > 0 }
	}

	a := startMember(t, r, group, storeA, 200)
	b := startMember(t, r, group, storeB, 200)
	until("two members owning all partitions", 120*time.Second, both(a, b))
	for name, m := range map[string]*member{"a": a, "b": b} {
		lag := m.metrics.Lag()
		evs := slices.Sorted(maps.Keys(lag[schemas.CustomerEventsTopic]))
		msgs := slices.Sorted(maps.Keys(lag[schemas.CustomerMessagesTopic]))
		if !slices.Equal(evs, msgs) {
			t.Errorf("member %s owns events partitions %v but messages partitions %v", name, evs, msgs)
		}
	}

	t.Run("member shuts down", func(t *testing.T) {
		start := time.Now()
		if err := b.stop(); err != nil {
			t.Fatalf("stopping member b: %v", err)
		}
		left := time.Since(start)
		took := left + until("member a owning every partition", 60*time.Second, func() bool { return all(a) })
		t.Logf("member b stopped (left the group) in %s; member a owned all %d partitions %s after b's shutdown began",
			left.Round(time.Millisecond), 2*partitions, took.Round(time.Millisecond))
		if took > 5*time.Second {
			t.Errorf("member a took %s to own the stopped member's partitions, want at most 5s", took.Round(time.Millisecond))
		}
	})

	t.Run("all brokers return", func(t *testing.T) {
		b = startMember(t, r, group, storeB, 200)
		until("two members owning all partitions again", 120*time.Second, both(a, b))
		c.StopAll(t, false)
		down := time.Now()
		time.Sleep(20 * time.Second)
		c.StartAll(t)
		back := time.Now()
		t.Logf("brokers down for %s; serving again", back.Sub(down).Round(time.Second))
		// Records produced now must be applied on every partition.
		chunk()
		produced := time.Since(back)
		ends := r.endOffsets(t)
		waitCaughtUp(t, storeA, group, ends, 120*time.Second)
		applied := time.Since(back)
		ownedAll := applied + until("members owning all partitions", 60*time.Second, func() bool { return all(a, b) })
		t.Logf("after the brokers served again: a chunk produced in %s, applied on every partition %s after their return; owners reported for all partitions after %s (a %d, b %d)",
			produced.Round(time.Millisecond), applied.Round(time.Millisecond), ownedAll.Round(time.Millisecond), len(a.metrics.Lag()), len(b.metrics.Lag()))
		if applied > 10*time.Second {
			t.Errorf("consumption resumed on every partition %s after the brokers' return, want at most 10s", applied.Round(time.Millisecond))
		}
	})
}
