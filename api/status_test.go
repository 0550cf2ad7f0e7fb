package api

import (
	"context"
	"math"
	"regexp"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/omnisync/omnisync/consumers/materializer"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/producers/ingest"
)

// capture registers collectors with a registry and keeps them by metric
// name, so a test can drive the real metrics of ingest and materializer.
type capture struct {
	prometheus.Registerer
	byName map[string]prometheus.Collector
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (c *capture) MustRegister(cs ...prometheus.Collector) {
	c.Registerer.MustRegister(cs...)
	for _, col := range cs {
		descs := make(chan *prometheus.Desc, 10)
		col.Describe(descs)
		close(descs)
		for d := range descs {
			if m := fqName.FindStringSubmatch(d.String()); m != nil {
				c.byName[m[1]] = col
			}
		}
	}
}

func (c *capture) counter(t *testing.T, name string) *prometheus.CounterVec {
	t.Helper()
	v, ok := c.byName[name].(*prometheus.CounterVec)
	if !ok {
		t.Fatalf("no counter vector %s registered (have %v)", name, c.byName)
	}
	return v
}

func (c *capture) histogram(t *testing.T, name string) *prometheus.HistogramVec {
	t.Helper()
	v, ok := c.byName[name].(*prometheus.HistogramVec)
	if !ok {
		t.Fatalf("no histogram vector %s registered (have %v)", name, c.byName)
	}
	return v
}

func observe(h prometheus.Observer, n int, seconds float64) {
	for range n {
		h.Observe(seconds)
	}
}

func near(t *testing.T, what string, got, want, tolerance float64) {
	t.Helper()
	if math.Abs(got-want) > tolerance {
		t.Errorf("%s = %v, want %v (±%v)", what, got, want, tolerance)
	}
}

func pct(t *testing.T, what string, got *float64, want float64) {
	t.Helper()
	if got == nil {
		t.Errorf("%s is null, want %v", what, want)
		return
	}
	near(t, what, *got, want, 1e-9)
}

// Report computes rates, shares and percentiles over the window from the
// real ingest and materializer metrics: what happened before the window's
// start does not count.
func TestStatusReport(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := &capture{Registerer: reg, byName: map[string]prometheus.Collector{}}
	ingest.NewMetrics(c)
	materializer.NewMetrics(c, "omnisync-sqlite")
	requests, accepted := c.counter(t, "omnisync_ingest_requests_total"), c.counter(t, "omnisync_ingest_events_total")
	rejections, produce := c.counter(t, "omnisync_ingest_rejections_total"), c.histogram(t, "omnisync_ingest_produce_seconds")
	applied, conflicts := c.counter(t, "omnisync_materializer_events_total"), c.counter(t, "omnisync_materializer_conflicts_total")
	dead, endToEnd := c.counter(t, "omnisync_materializer_dead_letters_total"), c.histogram(t, "omnisync_end_to_end_latency_seconds")

	// What happened before the window: it must not count.
	old := func() {
		requests.WithLabelValues("web", "200").Add(40)
		requests.WithLabelValues("web", "400").Add(7)
		rejections.WithLabelValues("web", "invalid").Add(7)
		accepted.WithLabelValues("web", "message").Add(1000)
		observe(produce.WithLabelValues("web"), 30, 5) // 5 s: would move every percentile
		applied.WithLabelValues("omnisync-sqlite", "customer").Add(900)
		conflicts.WithLabelValues("omnisync-sqlite", "opened").Add(2)
		dead.WithLabelValues("omnisync-sqlite").Add(2)
		observe(endToEnd.WithLabelValues("omnisync-sqlite"), 50, 2)
	}
	old()
	s := NewStatus(reg, nil, []string{"app", "phone", "web"})
	start := time.Now()
	s.sample(start.Add(-500 * time.Second)) // falls out of the 5-minute window
	old()
	s.sample(start.Add(-100 * time.Second)) // the window's start

	// The window: web got 100 requests, 90 answered 2xx.
	requests.WithLabelValues("web", "200").Add(88)
	requests.WithLabelValues("web", "202").Add(2)
	requests.WithLabelValues("web", "400").Add(6)
	requests.WithLabelValues("web", "413").Add(1)
	requests.WithLabelValues("web", "503").Add(3)
	rejections.WithLabelValues("web", "invalid").Add(6)
	rejections.WithLabelValues("web", "too_large").Add(1)
	rejections.WithLabelValues("web", "unavailable").Add(3)
	accepted.WithLabelValues("web", "customer").Add(120)
	accepted.WithLabelValues("web", "message").Add(380)
	// Produce latency, buckets 1, 2, 4, … 64, 128 ms: 50 in (1, 2],
	// 40 in (2, 4], 10 in (64, 128].
	web := produce.WithLabelValues("web")
	observe(web, 50, 0.0015)
	observe(web, 40, 0.003)
	observe(web, 10, 0.1)
	// A channel nobody listed still shows once it has requests.
	requests.WithLabelValues("miniprogram", "401").Add(4)
	rejections.WithLabelValues("miniprogram", "unauthorized").Add(4)

	applied.WithLabelValues("omnisync-sqlite", "customer").Add(300)
	applied.WithLabelValues("omnisync-sqlite", "message").Add(700)
	conflicts.WithLabelValues("omnisync-sqlite", "opened").Add(4)
	conflicts.WithLabelValues("omnisync-sqlite", "resolved").Add(1)
	dead.WithLabelValues("omnisync-sqlite").Add(3)
	// End-to-end, buckets 5, 10, 20, 40, 80, 160, 320 ms: 20 in (0, 5],
	// 60 in (20, 40], 20 in (160, 320].
	e2e := endToEnd.WithLabelValues("omnisync-sqlite")
	observe(e2e, 20, 0.003)
	observe(e2e, 60, 0.03)
	observe(e2e, 20, 0.25)

	r := s.Report(context.Background())
	if r.WindowSeconds != 100 {
		t.Errorf("window_seconds %v, want 100", r.WindowSeconds)
	}
	if d := time.Since(r.GeneratedAt); d < 0 || d > time.Minute || r.GeneratedAt.Location() != time.UTC {
		t.Errorf("generated_at %v", r.GeneratedAt)
	}
	if len(r.Errors) != 0 || r.Errors == nil {
		t.Errorf("errors %#v, want []", r.Errors)
	}
	var names []string
	by := map[string]ChannelStatus{}
	for _, ch := range r.Channels {
		names = append(names, ch.Channel)
		by[ch.Channel] = ch
	}
	if diff := cmp.Diff([]string{"app", "miniprogram", "phone", "web"}, names); diff != "" {
		t.Errorf("channels (-want +got):\n%s", diff)
	}

	w := by["web"]
	near(t, "web ingest_rate", w.IngestRate, 500.0/100, 0.01)
	if w.Requests != 100 || w.SuccessRate == nil || *w.SuccessRate != 0.9 {
		t.Errorf("web requests %v, success_rate %v; want 100 and 0.9", w.Requests, deref(w.SuccessRate))
	}
	if diff := cmp.Diff(map[string]float64{"invalid": 6, "too_large": 1, "unavailable": 3}, w.Rejected); diff != "" {
		t.Errorf("web rejected (-want +got):\n%s", diff)
	}
	if w.DeadLetters != 7 {
		t.Errorf("web dead_letters %v, want 7 (invalid and too_large)", w.DeadLetters)
	}
	// histogram_quantile by hand: p50 is rank 50 of 100, the top of (1, 2];
	// p95 is rank 95, half-way (5 of 10) into (64, 128]; p99 is 9/10 into it.
	pct(t, "web p50", w.ProduceLatencyMS.P50, 2)
	pct(t, "web p95", w.ProduceLatencyMS.P95, 64+64*5.0/10)
	pct(t, "web p99", w.ProduceLatencyMS.P99, 64+64*9.0/10)

	idle := by["app"]
	if idle.Requests != 0 || idle.IngestRate != 0 || idle.SuccessRate != nil || len(idle.Rejected) != 0 || idle.Rejected == nil ||
		idle.ProduceLatencyMS != (Percentiles{}) {
		t.Errorf("idle channel %+v, want zero figures, success_rate and percentiles null", idle)
	}
	mp := by["miniprogram"]
	if mp.Requests != 4 || mp.SuccessRate == nil || *mp.SuccessRate != 0 || mp.Rejected["unauthorized"] != 4 || mp.DeadLetters != 0 {
		t.Errorf("miniprogram %+v", mp)
	}

	if len(r.Groups) != 1 {
		t.Fatalf("groups %+v, want omnisync-sqlite only", r.Groups)
	}
	g := r.Groups[0]
	near(t, "apply_rate", g.ApplyRate, 1000.0/100, 0.01)
	if diff := cmp.Diff(map[string]float64{"opened": 4, "resolved": 1}, g.Conflicts); diff != "" {
		t.Errorf("conflicts (-want +got):\n%s", diff)
	}
	if g.DeadLetters != 2+2+3 {
		t.Errorf("dead_letters %v, want 7 since the process started", g.DeadLetters)
	}
	pct(t, "end-to-end p50", g.EndToEndLatencyMS.P50, 20+20*30.0/60)
	pct(t, "end-to-end p95", g.EndToEndLatencyMS.P95, 160+160*15.0/20)
	pct(t, "end-to-end p99", g.EndToEndLatencyMS.P99, 160+160*19.0/20)
	// Without an admin client Kafka is not asked: no lag, no error.
	if g.Group != "omnisync-sqlite" || g.Lag != nil || g.LagByPartition == nil || len(g.LagByPartition) != 0 || g.State != "" || g.Members != 0 {
		t.Errorf("group %+v, want no lag and no Kafka state", g)
	}
}

// Without any sample the window starts with the process (counters start at
// zero), and a fresh process reports no percentiles.
func TestStatusReportWithoutSamples(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := &capture{Registerer: reg, byName: map[string]prometheus.Collector{}}
	ingest.NewMetrics(c)
	s := NewStatus(reg, nil, []string{"web"})
	c.counter(t, "omnisync_ingest_requests_total").WithLabelValues("web", "200").Add(3)
	r := s.Report(context.Background())
	if len(r.Channels) != 1 || r.Channels[0].Requests != 3 || r.Channels[0].ProduceLatencyMS != (Percentiles{}) || len(r.Groups) != 0 || r.Groups == nil {
		t.Errorf("report %+v", r)
	}
	if r.WindowSeconds != 1 {
		t.Errorf("window_seconds %v, want the 1 s minimum", r.WindowSeconds)
	}
}

// With a Kafka admin client, a group that committed offsets behind the end
// of a topic shows its lag per partition and in total.
func TestStatusLag(t *testing.T) {
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cl, err := kafka.NewClient(k.Config(), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		adm := kadm.NewClient(cl)
		topic, group := testenv.UniqueName(t, "lag"), testenv.UniqueName(t, "lag_group")
		if _, err := adm.CreateTopic(ctx, 2, 1, nil, topic); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = adm.DeleteTopics(context.Background(), topic) })
		var recs []*kgo.Record
		for i := range 15 {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i % 3 / 2), Value: []byte("x")}) // 10 to p0, 5 to p1
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		offsets := kadm.Offsets{}
		offsets.AddOffset(topic, 0, 4, -1)
		offsets.AddOffset(topic, 1, 5, -1)
		committed, err := adm.CommitOffsets(ctx, group, offsets)
		if err == nil {
			err = committed.Error()
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = adm.DeleteGroup(context.Background(), group) })

		r := NewStatus(prometheus.NewRegistry(), adm, nil).Report(ctx)
		var got *GroupStatus
		for i := range r.Groups {
			if r.Groups[i].Group == group {
				got = &r.Groups[i]
			}
		}
		if got == nil {
			t.Fatalf("group %s is not in the report (errors %v)", group, r.Errors)
		}
		if len(r.Errors) > 0 {
			t.Logf("errors about other groups on the cluster: %v", r.Errors)
		}
		if got.Lag == nil || *got.Lag != 6 {
			t.Errorf("lag %v, want 6 (errors %v)", got.Lag, r.Errors)
		}
		want := []PartitionLag{{Topic: topic, Partition: 0, Lag: 6}, {Topic: topic, Partition: 1, Lag: 0}}
		if diff := cmp.Diff(want, got.LagByPartition); diff != "" {
			t.Errorf("lag by partition (-want +got):\n%s", diff)
		}
		if got.State != "Empty" || got.Members != 0 {
			t.Errorf("state %q with %d members, want Empty with none", got.State, got.Members)
		}
	})
}

// The store state of each group comes from its members'
// omnisync_materializer_store_up; a group whose store is down is also
// named in errors.
func TestStatusReportsStoreState(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := &capture{Registerer: reg, byName: map[string]prometheus.Collector{}}
	materializer.NewMetrics(c, "up")
	gauge, ok := c.byName["omnisync_materializer_store_up"].(*prometheus.GaugeVec)
	if !ok {
		t.Fatalf("no gauge vector omnisync_materializer_store_up registered (have %v)", c.byName)
	}
	gauge.WithLabelValues("up").Set(1)
	gauge.WithLabelValues("down").Set(0)
	got := NewStatus(reg, nil, nil).Report(context.Background())
	state := map[string]*bool{}
	for _, g := range got.Groups {
		state[g.Group] = g.StoreUp
	}
	if s := state["up"]; s == nil || !*s {
		t.Errorf("group up: store_up %v, want true", s)
	}
	if s := state["down"]; s == nil || *s {
		t.Errorf("group down: store_up %v, want false", s)
	}
	if want := "consumer group down: store unavailable to 1 of 1 members"; len(got.Errors) != 1 || got.Errors[0] != want {
		t.Errorf("errors %q, want [%q]", got.Errors, want)
	}
}
