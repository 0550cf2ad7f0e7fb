package materializer_test

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"github.com/omnisync/omnisync/consumers/materializer"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/schemas"
)

// member is one in-process member of a group with its own metrics.
type member struct {
	metrics *materializer.Metrics
	reg     *prometheus.Registry
	stop    func() error // cancels Run and returns its error; later calls return the same
}

// startMember runs a member of group into store until stop or the end of
// the test.
func startMember(t *testing.T, r *rig, group string, st store.Store, maxBatch int) *member {
	t.Helper()
	reg := prometheus.NewRegistry()
	metrics := materializer.NewMetrics(reg, group)
	m, err := materializer.New(materializer.Config{Kafka: r.k.Config(), Group: group, Store: st, Serde: r.serde,
		MaxBatch: maxBatch, Logger: zaptest.NewLogger(t), Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	stop := sync.OnceValue(func() error {
		cancel()
		return <-done
	})
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("materializer: %v", err)
		}
	})
	return &member{metrics: metrics, reg: reg, stop: stop}
}

// gatedStore applies the first open batches, then holds every further
// Apply until release is closed.
type gatedStore struct {
	store.Store
	mu      sync.Mutex
	open    int
	held    chan struct{} // closed when the first Apply is held
	once    sync.Once
	release chan struct{}
}

func (g *gatedStore) Apply(ctx context.Context, b *store.Batch) error {
	g.mu.Lock()
	g.open--
	hold := g.open < 0
	g.mu.Unlock()
	if hold {
		g.once.Do(func() { close(g.held) })
		select {
		case <-g.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.Store.Apply(ctx, b)
}

// lagText is the exposition of omnisync_materializer_lag_records with these
// series.
func lagText(group string, lags map[string]map[int32]int64) string {
	var b strings.Builder
	b.WriteString("# HELP omnisync_materializer_lag_records Records in a partition this member owns that the group has not applied yet: the high watermark minus the next offset to apply.\n")
	b.WriteString("# TYPE omnisync_materializer_lag_records gauge\n")
	for topic, parts := range lags {
		for p, lag := range parts {
			fmt.Fprintf(&b, "omnisync_materializer_lag_records{group=%q,partition=\"%d\",topic=%q} %d\n", group, p, topic, lag)
		}
	}
	return b.String()
}

// The lag gauge of a partition is its high watermark minus the next offset
// the group will apply, after part of it is applied and after all of it is;
// a member that leaves the group reports no lag any more.
func TestLagMetric(t *testing.T) {
	k := testenv.Embedded(t, "") // a broker of its own: nobody else's records move the watermarks
	r := newRig(t, k)
	cid := customers(t, 1)[0]
	const n = 50
	var stream []any
	for i := range n {
		stream = append(stream, &events.CustomerEvent{EventID: fmt.Sprintf("%s-e%03d", cid, i), CustomerID: cid, Channel: events.ChannelCRM,
			Source: "test", Op: events.OpUpsert, OccurredAt: base.Add(time.Duration(i) * time.Second), IngestedAt: time.Now(),
			Profile: &events.Profile{Name: ptr(fmt.Sprintf("name %d", i))}})
	}
	r.produce(t, stream...)
	ends := r.endOffsets(t)
	var part int32 = -1
	for p, end := range ends[schemas.CustomerEventsTopic] {
		if end == n {
			part = p
		}
	}
	if part < 0 {
		t.Fatalf("no partition of %s holds the %d events: %v", schemas.CustomerEventsTopic, n, ends)
	}

	st := openSQLite(t, filepath.Join(t.TempDir(), "store.db"))
	gate := &gatedStore{Store: st, open: 2, held: make(chan struct{}), release: make(chan struct{})}
	group := testenv.UniqueName(t, "lag")
	m := startMember(t, r, group, gate, 10)
	select {
	case <-gate.held:
	case <-time.After(60 * time.Second):
		t.Fatal("the materializer did not apply two batches within 60 s")
	}

	// Two batches applied, the third polled and held: the lag is what the
	// store has not applied.
	held, err := st.Offsets(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	next := held[schemas.CustomerEventsTopic][part]
	if next <= 0 || next >= n {
		t.Fatalf("after two batches of at most 10 the store holds offset %d of %d", next, n)
	}
	want := map[string]map[int32]int64{schemas.CustomerEventsTopic: {part: n - next}}
	if got := m.metrics.Lag(); !maps.EqualFunc(got, want, maps.Equal) {
		t.Errorf("Lag() = %v with %d of %d records applied, want %v", got, next, n, want)
	}
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(lagText(group, want)), "omnisync_materializer_lag_records"); err != nil {
		t.Error(err)
	}

	// More records on other partitions, then everything applied: every
	// partition the member consumed reports 0.
	var messages []any
	for i, c := range customers(t, 6) {
		messages = append(messages, &events.MessageEvent{MessageID: fmt.Sprintf("%s-m%d", c, i), CustomerID: c, Channel: events.ChannelWeb,
			Source: "test", Direction: events.DirectionInbound, SenderType: events.SenderCustomer, ContentType: events.ContentText,
			Text: ptr("hello"), OccurredAt: base, IngestedAt: time.Now()})
	}
	r.produce(t, messages...)
	ends = r.endOffsets(t)
	close(gate.release)
	waitCaughtUp(t, st, group, ends, 60*time.Second)
	want = map[string]map[int32]int64{}
	for topic, parts := range ends {
		for p, end := range parts {
			if end > 0 {
				if want[topic] == nil {
					want[topic] = map[int32]int64{}
				}
				want[topic][p] = 0
			}
		}
	}
	// The store commits before the member records its new offsets.
	deadline := time.Now().Add(10 * time.Second)
	for got := m.metrics.Lag(); !maps.EqualFunc(got, want, maps.Equal); got = m.metrics.Lag() {
		if time.Now().After(deadline) {
			t.Fatalf("caught up, Lag() = %v, want %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(lagText(group, want)), "omnisync_materializer_lag_records"); err != nil {
		t.Error(err)
	}

	// Leaving the group revokes every partition.
	if err := m.stop(); err != nil {
		t.Fatal(err)
	}
	if got := m.metrics.Lag(); len(got) != 0 {
		t.Errorf("after leaving the group Lag() = %v, want none", got)
	}
	if n, err := testutil.GatherAndCount(m.reg, "omnisync_materializer_lag_records"); err != nil || n != 0 {
		t.Errorf("after leaving the group %d lag series are exported (%v), want none", n, err)
	}
	if got := (*materializer.Metrics)(nil).Lag(); got != nil {
		t.Errorf("a nil *Metrics reports lag %v", got)
	}
}
