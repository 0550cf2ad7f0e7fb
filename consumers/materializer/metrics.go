package materializer

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/omnisync/omnisync/consumers/merge"
)

// Metrics are a materializer's Prometheus metrics, labelled by group.
// One Metrics serves one member (Materializer) of the group. A nil *Metrics
// records nothing.
type Metrics struct {
	group      string
	events     *prometheus.CounterVec
	stale      *prometheus.CounterVec
	conflicts  *prometheus.CounterVec
	dead       *prometheus.CounterVec
	emitted    *prometheus.CounterVec
	endToEnd   *prometheus.HistogramVec
	lagGauge   *prometheus.GaugeVec
	storeGauge *prometheus.GaugeVec

	mu         sync.Mutex
	partitions map[string]map[int32]*position // the partitions this member owns
}

// position is where a partition stands: its high watermark as of the last
// fetch and the next offset the group will apply; -1 while unknown.
type position struct{ hwm, next int64 }

// NewMetrics registers the materializer metrics for group with reg.
func NewMetrics(reg prometheus.Registerer, group string) *Metrics {
	m := &Metrics{
		group: group,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omnisync_materializer_events_total", Help: "Events and messages applied, by group and kind (customer, message).",
		}, []string{"group", "kind"}),
		stale: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omnisync_materializer_stale_writes_total", Help: "Field writes ignored because they were not newer than the stored value.",
		}, []string{"group"}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omnisync_materializer_conflicts_total", Help: "Conflicts opened and resolved.",
		}, []string{"group", "action"}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omnisync_materializer_dead_letters_total", Help: "Records that could not be decoded, sent to the dead-letter topic.",
		}, []string{"group"}),
		emitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omnisync_materializer_emitted_events_total",
			Help: "Events the fold emitted (customer merge hand-offs, releases, deletes of absorbed customers), produced to the customer events topic before the store commit.",
		}, []string{"group"}),
		endToEnd: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "omnisync_end_to_end_latency_seconds", Help: "From ingested_at to the store commit.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"group"}),
		lagGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "omnisync_materializer_lag_records",
			Help: "Records in a partition this member owns that the group has not applied yet: the high watermark minus the next offset to apply.",
		}, []string{"group", "topic", "partition"}),
		storeGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "omnisync_materializer_store_up",
			Help: "1 while the member's store answers, 0 while its store operations fail and are retried (the member makes no progress).",
		}, []string{"group"}),
		partitions: map[string]map[int32]*position{},
	}
	reg.MustRegister(m.events, m.stale, m.conflicts, m.dead, m.emitted, m.endToEnd, m.lagGauge, m.storeGauge)
	return m
}

// Lag returns the lag in records of every partition this member owns and
// has fetched from, by topic and partition, as of its last fetch and
// applied batch: what omnisync_materializer_lag_records exports. A nil
// *Metrics returns nil.
func (m *Metrics) Lag() map[string]map[int32]int64 {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]map[int32]int64{}
	for topic, parts := range m.partitions {
		for p, pos := range parts {
			if lag, ok := pos.lag(); ok {
				if out[topic] == nil {
					out[topic] = map[int32]int64{}
				}
				out[topic][p] = lag
			}
		}
	}
	return out
}

func (p *position) lag() (int64, bool) {
	if p.hwm < 0 || p.next < 0 {
		return 0, false
	}
	return max(p.hwm-p.next, 0), true
}

// position returns a partition's position, adding it. m.mu must be held.
func (m *Metrics) position(topic string, partition int32) *position {
	if m.partitions[topic] == nil {
		m.partitions[topic] = map[int32]*position{}
	}
	pos := m.partitions[topic][partition]
	if pos == nil {
		pos = &position{hwm: -1, next: -1}
		m.partitions[topic][partition] = pos
	}
	return pos
}

// exportLag sets the gauge of a partition from its position. m.mu must be
// held.
func (m *Metrics) exportLag(topic string, partition int32, pos *position) {
	if lag, ok := pos.lag(); ok {
		m.lagGauge.WithLabelValues(m.group, topic, strconv.Itoa(int(partition))).Set(float64(lag))
	}
}

// fetched records the high watermarks of a poll; a partition's first polled
// record is the next offset the group will apply. (A partition without
// records in a fetch is not necessarily caught up: the response may have
// been full.)
func (m *Metrics) fetched(fs kgo.Fetches) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		if p.Err != nil || p.HighWatermark < 0 {
			return
		}
		pos := m.partitions[p.Topic][p.Partition]
		switch {
		case pos == nil && len(p.Records) > 0: // a poll with records blocks rebalancing: the partition is ours
			// Batches polled before may still wait for the store: only a
			// partition not yet known starts at the first polled record.
			pos = m.position(p.Topic, p.Partition)
			pos.next = p.Records[0].Offset
		case pos == nil: // not known to be ours (any more)
			return
		}
		pos.hwm = p.HighWatermark
		m.exportLag(p.Topic, p.Partition, pos)
	})
}

// setNext records the next offsets the group will apply: the store's on
// assignment and after each applied batch.
func (m *Metrics) setNext(next map[string]map[int32]int64) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for topic, parts := range next {
		for p, off := range parts {
			pos := m.position(topic, p)
			pos.next = off
			m.exportLag(topic, p, pos)
		}
	}
}

// revoked forgets partitions this member no longer owns and deletes their
// series, so only the owner reports a partition's lag.
func (m *Metrics) revoked(parts map[string][]int32) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for topic, ps := range parts {
		for _, p := range ps {
			delete(m.partitions[topic], p)
			m.lagGauge.DeleteLabelValues(m.group, topic, strconv.Itoa(int(p)))
		}
		if len(m.partitions[topic]) == 0 {
			delete(m.partitions, topic)
		}
	}
}

type stats struct {
	stale, opened, resolved int
}

func (s *stats) add(o merge.Outcome) {
	s.stale += o.Stale
	s.opened += o.ConflictsOpened
	s.resolved += o.ConflictsResolved
}

// batchStats is what the metrics keep of an applied batch.
type batchStats struct {
	outcome             stats
	customers, messages int
	ingested            []time.Time // of each record
}

func newBatchStats(o stats, batch []Decoded) batchStats {
	s := batchStats{outcome: o, ingested: make([]time.Time, len(batch))}
	for i, d := range batch {
		if d.Event != nil {
			s.customers++
		} else {
			s.messages++
		}
		s.ingested[i] = d.ingestedAt()
	}
	return s
}

func (m *Metrics) observeBatch(s batchStats, committed time.Time) {
	if m == nil {
		return
	}
	for _, at := range s.ingested {
		m.endToEnd.WithLabelValues(m.group).Observe(committed.Sub(at).Seconds())
	}
	m.events.WithLabelValues(m.group, "customer").Add(float64(s.customers))
	m.events.WithLabelValues(m.group, "message").Add(float64(s.messages))
	m.stale.WithLabelValues(m.group).Add(float64(s.outcome.stale))
	m.conflicts.WithLabelValues(m.group, "opened").Add(float64(s.outcome.opened))
	m.conflicts.WithLabelValues(m.group, "resolved").Add(float64(s.outcome.resolved))
}

func (m *Metrics) storeUp(up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.storeGauge.WithLabelValues(m.group).Set(v)
}

func (m *Metrics) deadLetters(n int) {
	if m != nil {
		m.dead.WithLabelValues(m.group).Add(float64(n))
	}
}

func (m *Metrics) emittedEvents(n int) {
	if m != nil {
		m.emitted.WithLabelValues(m.group).Add(float64(n))
	}
}
