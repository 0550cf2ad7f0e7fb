package materializer_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/omnisync/omnisync/consumers/materializer"
	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/consumers/store/postgres"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/events"
)

// resettingStore resets the store in place (as omnisync replay --in-place
// does: empty, the group's offsets back to start) just before the member's
// batch number at is applied, and counts the batches the store refused.
type resettingStore struct {
	*postgres.Store
	group string
	start map[string]map[int32]int64
	at    int

	mu      sync.Mutex
	applies int
	reset   bool
	refused int
}

func (s *resettingStore) Apply(ctx context.Context, b *store.Batch) error {
	s.mu.Lock()
	s.applies++
	if s.applies == s.at {
		if err := s.Reset(ctx, s.group, s.start); err != nil {
			s.mu.Unlock()
			return err
		}
		s.reset = true
	}
	s.mu.Unlock()
	err := s.Store.Apply(ctx, b)
	var moved *store.OffsetsMovedError
	if errors.As(err, &moved) {
		s.mu.Lock()
		s.refused++
		s.mu.Unlock()
	}
	return err
}

// A store reset in place under a member that applies batches of 4
// partitions at once and folds the next poll meanwhile: the member drops
// what it had in flight and the records it held, re-seeks to the store's
// offsets and refolds, so the store ends as the stream folds, nothing lost
// and no message doubled.
func TestStoreResetUnderPipelinedMember(t *testing.T) {
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		r := newRig(t, k)
		pg := openPostgres(t, testenv.Postgres(t))
		group := testenv.UniqueName(t, "reset")
		start := r.startAtEnd(t, pg, group)
		st := &resettingStore{Store: pg, group: group, start: start, at: 12}
		stream := randomStream(rand.New(rand.NewPCG(21, 22)), customers(t, 24), 1200)
		r.produce(t, stream...)

		m, err := materializer.New(materializer.Config{Kafka: r.k.Config(), Group: group, Store: st, Serde: r.serde,
			MaxBatch: 20, Writers: 4, Logger: zaptest.NewLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("materializer: %v", err)
			}
		}()
		waitCaughtUp(t, pg, group, r.endOffsets(t), 90*time.Second)

		st.mu.Lock()
		reset, refused, applies := st.reset, st.refused, st.applies
		st.mu.Unlock()
		if !reset || refused == 0 {
			t.Fatalf("the store was reset: %v, batches refused: %d (of %d applied); the test proves nothing", reset, refused, applies)
		}
		want, wantMessages := expected(stream)
		checkStore(t, pg, want, wantMessages)
	})
}

// Another writer moves the store ahead of a member (a replayer folding
// into the live store, as an in-place replay does) while the member's
// batches wait: they are refused, and the member must forget the records
// it folded (older than the store's now) and load them again. Folding the
// later events on its own older copies would write versions the store
// already has, which it ignores: those events would be lost.
func TestStoreMovedAheadOfMember(t *testing.T) {
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		ctx := context.Background()
		r := newRig(t, k)
		pg := openPostgres(t, testenv.Postgres(t))
		group := testenv.UniqueName(t, "ahead")
		start := r.startAtEnd(t, pg, group)
		stream := randomStream(rand.New(rand.NewPCG(23, 24)), customers(t, 12), 1500)
		a, b, c := stream[:600], stream[600:1200], stream[1200:]
		r.produce(t, a...)

		gated := &gatedStore{Store: pg, open: 15, held: make(chan struct{}), release: make(chan struct{})}
		m, err := materializer.New(materializer.Config{Kafka: r.k.Config(), Group: group, Store: gated, Serde: r.serde,
			MaxBatch: 20, Writers: 4, Logger: zaptest.NewLogger(t).Named("member")})
		if err != nil {
			t.Fatal(err)
		}
		mctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- m.Run(mctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("materializer: %v", err)
			}
		}()
		select {
		case <-gated.held:
		case <-time.After(60 * time.Second):
			t.Fatal("the member applied no batch within 60 s")
		}

		// The member waits in the middle of a; a replayer folds the rest of
		// a and all of b into the same store, under the group's name.
		r.produce(t, b...)
		rp, err := materializer.NewReplay(ctx, materializer.Config{Kafka: r.k.Config(), Group: group, Store: pg, Serde: r.serde,
			MaxBatch: 100, Logger: zaptest.NewLogger(t).Named("replayer")}, start)
		if err != nil {
			t.Fatal(err)
		}
		if err := rp.CatchUp(ctx, r.endOffsets(t)); err != nil {
			t.Fatal(err)
		}
		rp.Close()

		r.produce(t, c...)
		close(gated.release)
		waitCaughtUp(t, pg, group, r.endOffsets(t), 90*time.Second)
		want, wantMessages := expected(stream)
		checkStore(t, pg, want, wantMessages)
	})
}

// A repair (omnisync verify --repair, store.Replacer) rewrites a customer
// while a member runs with that customer's record in memory, at the same
// offsets: the member's next batch for the customer, folded on its old
// copy, is refused because the store's generation changed, and the member
// loads the repaired record before it folds again. Without the generation
// the next event would write the old copy back over the repair.
func TestRepairUnderCachingMember(t *testing.T) {
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		ctx := context.Background()
		r := newRig(t, k)
		pg := openPostgres(t, testenv.Postgres(t))
		group := testenv.UniqueName(t, "repair")
		r.startAtEnd(t, pg, group)
		id := customers(t, 1)[0]
		upsert := func(n int, p *events.Profile) *events.CustomerEvent {
			return &events.CustomerEvent{EventID: fmt.Sprintf("%s-e%d", id, n), CustomerID: id, Channel: events.ChannelWeb,
				Source: "test/web", Op: events.OpUpsert, OccurredAt: base.Add(time.Duration(n) * time.Minute), IngestedAt: time.Now(),
				Profile: p}
		}
		r.produce(t, upsert(1, &events.Profile{Name: ptr("Before")}))
		runMaterializer(t, r, group, pg)
		waitCaughtUp(t, pg, group, r.endOffsets(t), 60*time.Second)

		stored, err := pg.Load(ctx, []string{id})
		if err != nil {
			t.Fatal(err)
		}
		rec := stored[id]
		repaired := rec
		repaired.Fields = maps.Clone(rec.Fields)
		name := repaired.Fields["name"]
		name.Value = `"Repaired"`
		repaired.Fields["name"] = name
		if err := pg.Replace(ctx, []string{id}, []merge.Record{repaired}, nil); err != nil {
			t.Fatal(err)
		}

		r.produce(t, upsert(2, &events.Profile{Attributes: map[string]string{"tier": "gold"}}))
		waitCaughtUp(t, pg, group, r.endOffsets(t), 60*time.Second)
		got, ok, err := pg.Customer(ctx, id)
		if err != nil || !ok {
			t.Fatalf("Customer(%s) = %v, %v", id, ok, err)
		}
		if v := got.Fields["name"].Value; v != `"Repaired"` {
			t.Errorf("name after the repair and a later event = %s; want the repair's \"Repaired\" (the member wrote its old copy back)", v)
		}
		if v := got.Fields["attributes.tier"].Value; v != `"gold"` || got.Version != rec.Version+1 {
			t.Errorf("after the later event: attributes.tier %s, version %d; want \"gold\", %d", v, got.Version, rec.Version+1)
		}
	})
}
