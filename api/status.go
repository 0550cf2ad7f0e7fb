package api

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
)

// Status answers /api/v1/sync/status: per channel and per consumer group,
// the rates and latencies of the last few minutes, from the metrics of
// this process and any services it scrapes (see Scraped; sampled every
// 10 s), and the groups' lag from Kafka.
type Status struct {
	gatherer prometheus.Gatherer
	admin    *kadm.Client // nil: no lag
	channels []string
	window   time.Duration
	started  time.Time

	mu    sync.Mutex
	snaps []snapshot // oldest first, none older than window
}

type snapshot struct {
	at       time.Time
	families map[string]*dto.MetricFamily
	err      error // what could not be gathered
}

// SyncStatus is the body of GET /api/v1/sync/status.
type SyncStatus struct {
	GeneratedAt   time.Time       `json:"generated_at"`
	WindowSeconds float64         `json:"window_seconds"`
	Channels      []ChannelStatus `json:"channels"`
	Groups        []GroupStatus   `json:"consumer_groups"`
	Errors        []string        `json:"errors"`
}

// ChannelStatus is one channel producer's figures over the window.
type ChannelStatus struct {
	Channel string `json:"channel"`
	// IngestRate is events accepted into Kafka per second.
	IngestRate float64 `json:"ingest_rate"`
	Requests   float64 `json:"requests"`
	// SuccessRate is the share of requests answered 2xx; null without
	// requests.
	SuccessRate *float64 `json:"success_rate"`
	// Rejected counts refused requests by reason; invalid and too_large
	// inputs went to the dead-letter topic.
	Rejected    map[string]float64 `json:"rejected"`
	DeadLetters float64            `json:"dead_letters"`
	// ProduceLatencyMS are percentiles of the time Kafka took to
	// acknowledge a request's events.
	ProduceLatencyMS Percentiles `json:"produce_latency_ms"`
}

// GroupStatus is one consumer group's figures.
type GroupStatus struct {
	Group string `json:"group"`
	// State is Kafka's view of the group (Stable, Empty, ...); "" when
	// Kafka was not asked.
	State string `json:"state"`
	// Members is how many members the group has now.
	Members int `json:"members"`
	// ApplyRate is events and messages applied per second (groups of this
	// process only).
	ApplyRate float64 `json:"apply_rate"`
	// EndToEndLatencyMS are percentiles from ingested_at to the store
	// commit (groups of this process only).
	EndToEndLatencyMS Percentiles `json:"end_to_end_latency_ms"`
	// Lag is the records not yet consumed, from the group's committed
	// offsets; null when Kafka did not say.
	Lag            *int64             `json:"lag"`
	LagByPartition []PartitionLag     `json:"lag_by_partition"`
	DeadLetters    float64            `json:"dead_letters"`
	Conflicts      map[string]float64 `json:"conflicts"`
	// StoreUp is whether the group's store answers its members, from
	// omnisync_materializer_store_up of this process's and the scraped
	// members: false while any member's store operations fail (it makes
	// no progress); null when no member reports it.
	StoreUp *bool `json:"store_up"`
}

// PartitionLag is the lag of one partition.
type PartitionLag struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Lag       int64  `json:"lag"`
}

// Percentiles of a latency; null without observations in the window.
type Percentiles struct {
	P50 *float64 `json:"p50"`
	P95 *float64 `json:"p95"`
	P99 *float64 `json:"p99"`
}

// NewStatus reports on the metrics of gatherer, the given channels (always
// listed, even while idle) and, when admin is not nil, every consumer
// group's lag.
func NewStatus(gatherer prometheus.Gatherer, admin *kadm.Client, channels []string) *Status {
	return &Status{gatherer: gatherer, admin: admin, channels: channels, window: 5 * time.Minute, started: time.Now()}
}

// Run samples the metrics every 10 s until ctx ends.
func (s *Status) Run(ctx context.Context) error {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		s.sample(time.Now())
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *Status) gather(now time.Time) snapshot {
	fams, err := s.gatherer.Gather() // a partial answer is still worth reporting
	snap := snapshot{at: now, err: err, families: make(map[string]*dto.MetricFamily, len(fams))}
	for _, f := range fams {
		snap.families[f.GetName()] = f
	}
	return snap
}

func (s *Status) sample(now time.Time) {
	snap := s.gather(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snaps = append(s.snaps, snap)
	for len(s.snaps) > 1 && now.Sub(s.snaps[0].at) > s.window {
		s.snaps = s.snaps[1:]
	}
}

// Report returns the status now.
func (s *Status) Report(ctx context.Context) SyncStatus {
	now := time.Now()
	cur := s.gather(now)
	s.mu.Lock()
	base := snapshot{at: s.started} // counters start at zero with the process
	if len(s.snaps) > 0 && now.Sub(s.snaps[0].at) > time.Second {
		base = s.snaps[0]
	}
	s.mu.Unlock()
	d := delta{cur: cur, base: base}
	seconds := max(now.Sub(base.at).Seconds(), 1)
	out := SyncStatus{GeneratedAt: ms(now), WindowSeconds: math.Round(seconds), Channels: []ChannelStatus{}, Groups: []GroupStatus{}, Errors: []string{}}
	if cur.err != nil {
		out.Errors = append(out.Errors, "metrics: "+cur.err.Error())
	}

	channels := slices.Clone(s.channels)
	for _, c := range cur.labelValues("omnisync_ingest_requests_total", "channel") {
		if !slices.Contains(channels, c) {
			channels = append(channels, c)
		}
	}
	slices.Sort(channels)
	for _, c := range channels {
		only := map[string]string{"channel": c}
		cs := ChannelStatus{Channel: c, Rejected: map[string]float64{}}
		cs.IngestRate = round(d.counter("omnisync_ingest_events_total", only, nil) / seconds)
		cs.Requests = d.counter("omnisync_ingest_requests_total", only, nil)
		if cs.Requests > 0 {
			ok := d.counter("omnisync_ingest_requests_total", only, func(l map[string]string) bool { return strings.HasPrefix(l["code"], "2") })
			rate := round(ok / cs.Requests)
			cs.SuccessRate = &rate
		}
		for _, reason := range cur.labelValues("omnisync_ingest_rejections_total", "reason") {
			if n := d.counter("omnisync_ingest_rejections_total", map[string]string{"channel": c, "reason": reason}, nil); n > 0 {
				cs.Rejected[reason] = n
			}
		}
		cs.DeadLetters = cs.Rejected["invalid"] + cs.Rejected["too_large"]
		cs.ProduceLatencyMS = d.percentiles("omnisync_ingest_produce_seconds", only)
		out.Channels = append(out.Channels, cs)
	}

	groups := map[string]*GroupStatus{}
	group := func(name string) *GroupStatus {
		if g, ok := groups[name]; ok {
			return g
		}
		g := &GroupStatus{Group: name, LagByPartition: []PartitionLag{}, Conflicts: map[string]float64{}}
		groups[name] = g
		return g
	}
	for _, name := range cur.labelValues("omnisync_materializer_events_total", "group") {
		only := map[string]string{"group": name}
		g := group(name)
		g.ApplyRate = round(d.counter("omnisync_materializer_events_total", only, nil) / seconds)
		g.EndToEndLatencyMS = d.percentiles("omnisync_end_to_end_latency_seconds", only)
		g.DeadLetters = cur.total("omnisync_materializer_dead_letters_total", only)
		for _, action := range []string{"opened", "resolved"} {
			g.Conflicts[action] = d.counter("omnisync_materializer_conflicts_total", map[string]string{"group": name, "action": action}, nil)
		}
	}
	for _, name := range cur.labelValues("omnisync_materializer_store_up", "group") {
		up, down := 0, 0
		cur.each("omnisync_materializer_store_up", map[string]string{"group": name}, func(_ map[string]string, m *dto.Metric) {
			if m.GetGauge().GetValue() >= 1 {
				up++
			} else {
				down++
			}
		})
		ok := down == 0
		group(name).StoreUp = &ok
		if !ok {
			out.Errors = append(out.Errors, fmt.Sprintf("consumer group %s: store unavailable to %d of %d members", name, down, up+down))
		}
	}
	if s.admin != nil {
		if err := s.addLag(ctx, group); err != nil {
			out.Errors = append(out.Errors, "consumer lag: "+err.Error())
		}
	}
	for _, g := range groups {
		out.Groups = append(out.Groups, *g)
	}
	sort.Slice(out.Groups, func(i, j int) bool { return out.Groups[i].Group < out.Groups[j].Group })
	return out
}

func (s *Status) addLag(ctx context.Context, group func(string) *GroupStatus) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	listed, err := s.admin.ListGroups(ctx)
	if err != nil {
		return err
	}
	lags, err := s.admin.Lag(ctx, listed.Groups()...)
	if err != nil {
		return err
	}
	for _, l := range lags.Sorted() {
		g := group(l.Group)
		g.State, g.Members = l.State, len(l.Members)
		if l.Error() != nil {
			continue // reported below; the other groups still count
		}
		total := l.Lag.Total()
		g.Lag = &total
		for _, tl := range l.Lag.Sorted() {
			g.LagByPartition = append(g.LagByPartition, PartitionLag{Topic: tl.Topic, Partition: tl.Partition, Lag: tl.Lag})
		}
	}
	return lags.Error()
}

// delta is the change of the metrics between two snapshots.
type delta struct{ cur, base snapshot }

// counter sums the change of the series of a counter whose labels include
// only and pass keep (nil keeps all).
func (d delta) counter(name string, only map[string]string, keep func(map[string]string) bool) float64 {
	sum := func(s snapshot) float64 {
		var v float64
		s.each(name, only, func(l map[string]string, m *dto.Metric) {
			if keep == nil || keep(l) {
				v += m.GetCounter().GetValue()
			}
		})
		return v
	}
	return max(sum(d.cur)-sum(d.base), 0)
}

// percentiles estimates p50, p95 and p99 (in ms) of the observations of a
// histogram (in seconds) made between the snapshots, interpolating
// linearly within buckets as Prometheus' histogram_quantile does.
func (d delta) percentiles(name string, only map[string]string) Percentiles {
	buckets := map[float64]float64{}
	var count float64
	add := func(s snapshot, sign float64) {
		s.each(name, only, func(_ map[string]string, m *dto.Metric) {
			h := m.GetHistogram()
			count += sign * float64(h.GetSampleCount())
			for _, b := range h.GetBucket() {
				buckets[b.GetUpperBound()] += sign * float64(b.GetCumulativeCount())
			}
		})
	}
	add(d.cur, 1)
	add(d.base, -1)
	if count <= 0 {
		return Percentiles{}
	}
	bounds := make([]float64, 0, len(buckets))
	for b := range buckets {
		bounds = append(bounds, b)
	}
	slices.Sort(bounds)
	q := func(p float64) *float64 {
		rank := p * count
		lower, below := 0.0, 0.0
		for _, b := range bounds {
			if buckets[b] >= rank {
				v := lower
				if in := buckets[b] - below; in > 0 {
					v = lower + (b-lower)*(rank-below)/in
				}
				v = round(v * 1000)
				return &v
			}
			lower, below = b, buckets[b]
		}
		v := round(lower * 1000) // beyond the last bucket: its bound
		return &v
	}
	return Percentiles{P50: q(0.50), P95: q(0.95), P99: q(0.99)}
}

// each calls fn with each series of the family name whose labels include
// only.
func (s snapshot) each(name string, only map[string]string, fn func(map[string]string, *dto.Metric)) {
	f := s.families[name]
	if f == nil {
		return
	}
	for _, m := range f.GetMetric() {
		labels := make(map[string]string, len(m.GetLabel()))
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range only {
			match = match && labels[k] == v
		}
		if match {
			fn(labels, m)
		}
	}
}

func (s snapshot) total(name string, only map[string]string) float64 {
	var v float64
	s.each(name, only, func(_ map[string]string, m *dto.Metric) { v += m.GetCounter().GetValue() })
	return v
}

// labelValues lists the values a label takes in a family, sorted.
func (s snapshot) labelValues(name, label string) []string {
	var out []string
	s.each(name, nil, func(l map[string]string, _ *dto.Metric) {
		if v, ok := l[label]; ok && !slices.Contains(out, v) {
			out = append(out, v)
		}
	})
	slices.Sort(out)
	return out
}

func round(v float64) float64 { return math.Round(v*1000) / 1000 }
