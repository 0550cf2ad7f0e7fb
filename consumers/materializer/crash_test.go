package materializer_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
)

// The materializer process, killed with SIGKILL at random points at least
// ten times while a stream is produced, ends with a store identical to a
// clean replay: no event lost, no message doubled.
func TestCrashesLoseNothingAndDoubleNothing(t *testing.T) {
	k := testenv.RealKafka(t)
	r := newRig(t, k)
	bin := testenv.Binary(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "crashy.db")
	group := testenv.UniqueName(t, "crashy")
	// Both groups begin where the shared topics end now, so they fold this
	// test's stream, not every other test's records.
	crashy := openSQLite(t, dbPath)
	from := r.startAtEnd(t, crashy, group)

	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "consume", "--brokers", strings.Join(k.Brokers, ","), "--registry", r.url,
			"--group", group, "--store", "sqlite:"+dbPath, "--log-level", "warn")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}

	rng := rand.New(rand.NewPCG(42, 7))
	stream := randomStream(rng, customers(t, 20), 3000)
	produced := make(chan error, 1)
	go func() {
		for i := 0; i < len(stream); i += 50 {
			if err := r.tryProduce(stream[i:min(i+50, len(stream))]...); err != nil {
				produced <- err
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		produced <- nil
	}()

	kills, killsDuringStream, done := 0, 0, false
	proc := start()
	for !done {
		time.Sleep(time.Duration(300+rng.IntN(900)) * time.Millisecond)
		if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = proc.Wait()
		kills++
		if !done {
			killsDuringStream++
		}
		proc = start()
		select {
		case err := <-produced:
			if err != nil {
				t.Fatal(err)
			}
			done = true
		default:
		}
	}
	t.Logf("materializer killed with SIGKILL %d times, %d of them while the stream was produced", kills, killsDuringStream)
	if killsDuringStream < 10 {
		t.Errorf("only %d kills while the stream was produced, want at least 10", killsDuringStream)
	}
	defer func() {
		_ = proc.Process.Signal(syscall.SIGTERM)
		_ = proc.Wait()
	}()

	ends := r.endOffsets(t)
	waitCaughtUp(t, crashy, group, ends, 120*time.Second)

	// A clean replay into a fresh store by a fresh group.
	clean := openSQLite(t, filepath.Join(dir, "clean.db"))
	cleanGroup := testenv.UniqueName(t, "clean")
	if err := clean.Apply(context.Background(), &store.Batch{Group: cleanGroup, Offsets: from}); err != nil {
		t.Fatal(err)
	}
	runMaterializer(t, r, cleanGroup, clean)
	waitCaughtUp(t, clean, cleanGroup, ends, 120*time.Second)

	want, wantMessages := expected(stream)
	checkStore(t, crashy, want, wantMessages)
	checkStore(t, clean, want, wantMessages)
}

// Customers merged and unmerged on the real Kafka while the materializer
// process is killed with SIGKILL at random points, mid-merge included:
// requests, hand-offs and releases re-folded after a crash emit copies
// that change nothing. In the end every merge is undone, so each customer
// holds exactly what its own events give and its own messages once; and a
// clean fold of the same log by a new group holds the same records.
func TestCrashesMidMergeLoseNothingAndDoubleNothing(t *testing.T) {
	k := testenv.RealKafka(t)
	r := newRig(t, k)
	bin := testenv.Binary(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "crashy.db")
	group := testenv.UniqueName(t, "crashy")
	crashy := openSQLite(t, dbPath)
	from := r.startAtEnd(t, crashy, group)
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "consume", "--brokers", strings.Join(k.Brokers, ","), "--registry", r.url,
			"--group", group, "--store", "sqlite:"+dbPath, "--log-level", "warn")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}

	// Customer 2k+1 is merged into 2k a third of the way through the
	// stream and unmerged two thirds of the way; events and messages of
	// both keep coming meanwhile (the absorbed customers' reach their
	// survivors through new hand-offs).
	rng := rand.New(rand.NewPCG(7, 42))
	ids := customers(t, 10)
	stream := randomStream(rng, ids, 1500)
	mergeAt, unmergeAt := len(stream)/3, 2*len(stream)/3
	var requests, unmerges []any
	for i := 0; i+1 < len(ids); i += 2 {
		s, a := ids[i], ids[i+1]
		requests = append(requests, &events.CustomerEvent{EventID: a + "-merge", CustomerID: a, Channel: events.ChannelAgent, Source: "test",
			Op: events.OpMerge, OccurredAt: base.Add(30 * time.Minute), IngestedAt: time.Now(),
			Merge: &events.Merge{SurvivorID: s, AbsorbedID: a, DecidedBy: "agent-1"}})
		unmerges = append(unmerges, &events.CustomerEvent{EventID: s + "-unmerge", CustomerID: s, Channel: events.ChannelAgent, Source: "test",
			Op: events.OpUnmerge, OccurredAt: base.Add(40 * time.Minute), IngestedAt: time.Now(),
			Merge: &events.Merge{MergeID: a + "-merge", SurvivorID: s, AbsorbedID: a, DecidedBy: "agent-1"}})
	}
	// The unmerges go out once every survivor holds its absorbed customer,
	// so that the crashes fall on absorbed merges (an unmerge folded before
	// its hand-off ends the merge as well, absorbing nothing).
	var waiting atomic.Bool // kills are spaced out meanwhile, so each life gets past the group's session timeout
	absorbed := func() error {
		waiting.Store(true)
		defer waiting.Store(false)
		deadline := time.Now().Add(120 * time.Second)
		for time.Now().Before(deadline) {
			recs, err := crashy.Load(context.Background(), ids)
			n := 0
			for i := 0; err == nil && i < len(ids); i += 2 {
				if len(recs[ids[i]].Absorbed) == 1 {
					n++
				}
			}
			if n == len(ids)/2 {
				return nil
			}
			time.Sleep(200 * time.Millisecond)
		}
		return errors.New("the survivors did not absorb their customers within 120 s")
	}
	parts := []func() error{
		func() error { return produceSlowly(r, slices.Concat(stream[:mergeAt], requests)) },
		absorbed,
		// Stragglers while merged, under quick kills: new hand-offs.
		func() error { return produceSlowly(r, stream[mergeAt:unmergeAt]) },
		func() error { return produceSlowly(r, slices.Concat(unmerges, stream[unmergeAt:])) },
	}
	produced := make(chan error, 1)
	go func() {
		for _, part := range parts {
			if err := part(); err != nil {
				produced <- err
				return
			}
		}
		produced <- nil
	}()

	kills, done, sawMerged := 0, false, map[string]bool{}
	proc := start()
	for !done {
		pause := time.Duration(300+rng.IntN(700)) * time.Millisecond
		if waiting.Load() {
			pause += kafka.GroupSessionTimeout + time.Second
		}
		time.Sleep(pause)
		if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = proc.Wait()
		kills++
		// Which survivors were seen holding their absorbed customer: the
		// kills fell while merges were in force.
		if recs, err := crashy.Load(context.Background(), ids); err == nil {
			for id, rec := range recs {
				if len(rec.Absorbed) > 0 {
					sawMerged[id] = true
				}
			}
		}
		proc = start()
		select {
		case err := <-produced:
			if err != nil {
				t.Fatal(err)
			}
			done = true
		default:
		}
	}
	t.Logf("materializer killed with SIGKILL %d times; %d survivors seen merged between kills", kills, len(sawMerged))
	if kills < 5 {
		t.Errorf("only %d kills while the stream was produced, want at least 5", kills)
	}
	if len(sawMerged) == 0 {
		t.Error("no survivor was seen merged between two kills: the test did not kill mid-merge")
	}
	defer func() {
		_ = proc.Process.Signal(syscall.SIGTERM)
		_ = proc.Wait()
	}()

	// Every merge ended on both sides (the releases are emitted, so wait
	// for them rather than for offsets measured now).
	for _, id := range ids {
		waitFor(t, crashy, id, func(rec merge.Record) bool {
			return len(rec.EndedMerges) == 1 && rec.MergedInto == nil && len(rec.Absorbed) == 0
		})
	}
	ends := r.endOffsets(t)
	waitCaughtUp(t, crashy, group, ends, 120*time.Second)

	// What each customer's own events give, and its own messages once.
	want, wantMessages := expected(stream)
	got, err := crashy.Load(context.Background(), ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if got[id].ContentHash() != want[id].ContentHash() {
			t.Errorf("customer %s after merge and unmerge under crashes: content differs from its own events' fold", id)
		}
		timeline := timelineOf(t, crashy, id)
		seen := map[string]int{}
		for _, m := range timeline {
			seen[m]++
		}
		for m := range wantMessages[id] {
			if seen[m] != 1 {
				t.Errorf("customer %s: message %s in the timeline %d times, want once", id, m, seen[m])
			}
		}
		if len(timeline) != len(wantMessages[id]) {
			t.Errorf("customer %s: %d messages in the timeline, want %d", id, len(timeline), len(wantMessages[id]))
		}
	}

	// A clean fold of the same log by a new group: the same records.
	clean := openSQLite(t, filepath.Join(dir, "clean.db"))
	cleanGroup := testenv.UniqueName(t, "clean")
	if err := clean.Apply(context.Background(), &store.Batch{Group: cleanGroup, Offsets: from}); err != nil {
		t.Fatal(err)
	}
	runMaterializer(t, r, cleanGroup, clean)
	waitCaughtUp(t, clean, cleanGroup, ends, 120*time.Second)
	replayed, err := clean.Load(context.Background(), ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if replayed[id].CanonicalHash() != got[id].CanonicalHash() {
			t.Errorf("customer %s: the crashed store holds version %d, a clean fold version %d; canonical hashes differ", id, got[id].Version, replayed[id].Version)
		}
	}
}

// produceSlowly produces items 50 at a time, 200 ms apart.
func produceSlowly(r *rig, items []any) error {
	for i := 0; i < len(items); i += 50 {
		if err := r.tryProduce(items[i:min(i+50, len(items))]...); err != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}
