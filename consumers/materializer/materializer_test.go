package materializer_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/omnisync/omnisync/consumers/materializer"
	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/consumers/store/postgres"
	"github.com/omnisync/omnisync/consumers/store/sqlite"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/schemas"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

type rig struct {
	k     testenv.Kafka
	serde *codec.Serde
	url   string // registry
	cl    *kgo.Client
}

func newRig(t *testing.T, k testenv.Kafka) *rig {
	t.Helper()
	ctx := context.Background()
	cl, err := kafka.NewClient(k.Config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if _, err := kafka.Provision(ctx, kadm.NewClient(cl), kafka.Layout{Partitions: 6}.Topics()); err != nil {
		t.Fatal(err)
	}
	reg, url := testenv.Registry(t)
	serde, err := codec.New(ctx, reg)
	if err != nil {
		t.Fatal(err)
	}
	return &rig{k: k, serde: serde, url: url, cl: cl}
}

func (r *rig) produce(t *testing.T, values ...any) {
	t.Helper()
	if err := r.tryProduce(values...); err != nil {
		t.Fatal(err)
	}
}

// tryProduce encodes and produces events and messages keyed by customer ID.
func (r *rig) tryProduce(values ...any) error {
	var recs []*kgo.Record
	for _, v := range values {
		b, err := r.serde.Encode(v)
		if err != nil {
			return err
		}
		switch v := v.(type) {
		case *events.CustomerEvent:
			recs = append(recs, &kgo.Record{Topic: schemas.CustomerEventsTopic, Key: []byte(v.CustomerID), Value: b})
		case *events.MessageEvent:
			recs = append(recs, &kgo.Record{Topic: schemas.CustomerMessagesTopic, Key: []byte(v.CustomerID), Value: b})
		}
	}
	return r.cl.ProduceSync(context.Background(), recs...).FirstErr()
}

// endOffsets returns the current end offsets of the input topics.
func (r *rig) endOffsets(t *testing.T) map[string]map[int32]int64 {
	t.Helper()
	out := map[string]map[int32]int64{}
	for topic, parts := range testenv.EndOffsets(t, r.cl, schemas.CustomerEventsTopic, schemas.CustomerMessagesTopic) {
		out[topic] = map[int32]int64{}
		for p, o := range parts {
			out[topic][p] = o.EpochOffset().Offset
		}
	}
	return out
}

// startAtEnd makes group start where the shared topics end now, as if its
// store had applied everything before, and returns those offsets: a test
// then reads its own records, not every other test's.
func (r *rig) startAtEnd(t *testing.T, st store.Store, group string) map[string]map[int32]int64 {
	t.Helper()
	start := r.endOffsets(t)
	if err := st.Apply(context.Background(), &store.Batch{Group: group, Offsets: start}); err != nil {
		t.Fatal(err)
	}
	return start
}

// waitCaughtUp waits until the store's offsets for group reach ends.
func waitCaughtUp(t *testing.T, st store.Store, group string, ends map[string]map[int32]int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		held, err := st.Offsets(context.Background(), group)
		if err == nil {
			behind := false
			for topic, parts := range ends {
				for p, end := range parts {
					if end > 0 && held[topic][p] < end {
						behind = true
					}
				}
			}
			if !behind {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("store not caught up after %s: holds %v, want %v (err %v)", timeout, held, ends, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func openSQLite(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openPostgres(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// runMaterializer runs an in-process member until the test ends.
func runMaterializer(t *testing.T, r *rig, group string, st store.Store) {
	t.Helper()
	m, err := materializer.New(materializer.Config{Kafka: r.k.Config(), Group: group, Store: st, Serde: r.serde, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("materializer: %v", err)
		}
	})
}

func ptr[T any](v T) *T { return &v }

var base = time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)

// randomStream makes n events and messages for the given customers from five
// channels, with late arrivals (random occurred_at) and re-sends.
func randomStream(rng *rand.Rand, customers []string, n int) []any {
	channels := []events.Channel{events.ChannelWeb, events.ChannelApp, events.ChannelWeChat, events.ChannelPhone, events.ChannelCRM}
	var out []any
	for i := range n {
		cid := customers[rng.IntN(len(customers))]
		ch := channels[rng.IntN(len(channels))]
		at := base.Add(time.Duration(rng.IntN(3600)) * time.Second)
		if rng.IntN(3) == 0 {
			text := fmt.Sprintf("message %d", i)
			out = append(out, &events.MessageEvent{
				MessageID: fmt.Sprintf("%s-m%05d", cid, i), CustomerID: cid, Channel: ch, Source: "test/" + string(ch),
				Direction: events.DirectionInbound, SenderType: events.SenderCustomer, ContentType: events.ContentText,
				Text: &text, OccurredAt: at, IngestedAt: time.Now(),
			})
		} else {
			name := fmt.Sprintf("name-%d", rng.IntN(5))
			phone := fmt.Sprintf("+861380013%04d", rng.IntN(3))
			out = append(out, &events.CustomerEvent{
				EventID: fmt.Sprintf("%s-e%05d", cid, i), CustomerID: cid, Channel: ch, Source: "test/" + string(ch),
				Op: events.OpUpsert, OccurredAt: at, IngestedAt: time.Now(),
				Identities: []events.Identity{{Kind: "phone", Value: phone}},
				Profile:    &events.Profile{Name: &name, Phone: &phone, Attributes: map[string]string{"tier": fmt.Sprint(rng.IntN(3))}},
			})
		}
		if rng.IntN(10) == 0 { // a re-send of the same event
			out = append(out, out[len(out)-1])
		}
	}
	return out
}

// expected folds a stream with the merge contract alone: what any store must
// end up holding.
func expected(stream []any) (map[string]merge.Record, map[string]map[string]bool) {
	records := map[string]merge.Record{}
	messages := map[string]map[string]bool{}
	for _, v := range stream {
		switch v := v.(type) {
		case *events.CustomerEvent:
			records[v.CustomerID], _ = merge.Apply(records[v.CustomerID], v, nil)
		case *events.MessageEvent:
			records[v.CustomerID], _ = merge.ApplyMessage(records[v.CustomerID], v, nil)
			if messages[v.CustomerID] == nil {
				messages[v.CustomerID] = map[string]bool{}
			}
			messages[v.CustomerID][v.MessageID] = true
		}
	}
	return records, messages
}

func customers(t *testing.T, n int) []string {
	prefix := testenv.UniqueName(t, "cus")
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s_%02d", prefix, i)
	}
	return out
}

// checkStore compares the store's records and timelines with the expected ones.
// checkedStore is what checkStore reads: a store's records and timelines.
type checkedStore interface {
	Load(ctx context.Context, customerIDs []string) (map[string]merge.Record, error)
	Timeline(ctx context.Context, customerID string, after *store.Cursor, limit int) ([]events.MessageEvent, error)
}

func checkStore(t *testing.T, st checkedStore, want map[string]merge.Record, wantMessages map[string]map[string]bool) {
	t.Helper()
	ctx := context.Background()
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	got, err := st.Load(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	for id, w := range want {
		if g, ok := got[id]; !ok || g.CanonicalHash() != w.CanonicalHash() {
			t.Errorf("customer %s: store has version %d (found %v), the merge contract says version %d", id, g.Version, ok, w.Version)
		}
		timeline, err := st.Timeline(ctx, id, nil, 100000)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		for _, m := range timeline {
			seen[m.MessageID]++
		}
		for mid := range wantMessages[id] {
			if seen[mid] != 1 {
				t.Errorf("customer %s: message %s stored %d times, want once", id, mid, seen[mid])
			}
		}
		if len(timeline) != len(wantMessages[id]) {
			t.Errorf("customer %s: %d messages stored, want %d", id, len(timeline), len(wantMessages[id]))
		}
	}
}

// A stream of events with late arrivals and re-sends ends in the store as
// the merge contract says, messages once each.
func TestMaterializesStream(t *testing.T) {
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		r := newRig(t, k)
		st := openSQLite(t, filepath.Join(t.TempDir(), "store.db"))
		group := testenv.UniqueName(t, "group")
		r.startAtEnd(t, st, group)
		stream := randomStream(rand.New(rand.NewPCG(1, 2)), customers(t, 8), 400)
		r.produce(t, stream...)
		runMaterializer(t, r, group, st)
		waitCaughtUp(t, st, group, r.endOffsets(t), 60*time.Second)
		want, wantMessages := expected(stream)
		checkStore(t, st, want, wantMessages)
	})
}
