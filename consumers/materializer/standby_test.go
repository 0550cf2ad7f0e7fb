package materializer_test

import (
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/omnisync/omnisync/internal/testenv"
)

// A SQLite store has one writer: a second member of its group waits as a
// standby, owning no partition, while the first writes; when the first
// stops, the standby takes the lock, joins and goes on where the store
// is. The store ends as the merge contract folds the stream.
func TestSQLiteSecondMemberIsAStandby(t *testing.T) {
	k := testenv.Embedded(t, "")
	r := newRig(t, k)
	dbPath := filepath.Join(t.TempDir(), "one-writer.db")
	storeA, storeB := openSQLite(t, dbPath), openSQLite(t, dbPath)
	group := testenv.UniqueName(t, "standby")
	r.startAtEnd(t, storeA, group)
	rng := rand.New(rand.NewPCG(5, 6))
	ids := customers(t, 24)
	first := randomStream(rng, ids, 300)
	r.produce(t, first...)

	a := startMember(t, r, group, storeA, 50)
	waitCaughtUp(t, storeA, group, r.endOffsets(t), 60*time.Second)
	b := startMember(t, r, group, storeB, 50)
	second := randomStream(rng, ids, 300)
	r.produce(t, second...)
	waitCaughtUp(t, storeA, group, r.endOffsets(t), 60*time.Second)
	time.Sleep(time.Second) // time enough for b to join, were it to
	if lag := b.metrics.Lag(); len(lag) > 0 {
		t.Fatalf("the standby owns partitions %v while the first member writes the SQLite store", lag)
	}
	if len(a.metrics.Lag()) == 0 {
		t.Fatal("the first member owns no partition")
	}

	if err := a.stop(); err != nil {
		t.Fatalf("stopping the first member: %v", err)
	}
	third := randomStream(rng, ids, 300)
	r.produce(t, third...)
	waitCaughtUp(t, storeB, group, r.endOffsets(t), 60*time.Second)
	if len(b.metrics.Lag()) == 0 {
		t.Error("the standby owns no partition after the first member stopped")
	}
	want, wantMessages := expected(append(append(first, second...), third...))
	checkStore(t, storeB, want, wantMessages)
}
