package materializer

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/omnisync/omnisync/consumers/merge"
)

// Metrics are a materializer's Prometheus metrics, labelled by group.
// A nil *Metrics records nothing.
type Metrics struct {
	group     string
	events    *prometheus.CounterVec
	stale     *prometheus.CounterVec
	conflicts *prometheus.CounterVec
	dead      *prometheus.CounterVec
	endToEnd  *prometheus.HistogramVec
}

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
		endToEnd: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "omnisync_end_to_end_latency_seconds", Help: "From ingested_at to the store commit.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"group"}),
	}
	reg.MustRegister(m.events, m.stale, m.conflicts, m.dead, m.endToEnd)
	return m
}

type stats struct {
	stale, opened, resolved int
}

func (s *stats) add(o merge.Outcome) {
	s.stale += o.Stale
	s.opened += o.ConflictsOpened
	s.resolved += o.ConflictsResolved
}

func (m *Metrics) observeBatch(s stats, batch []decodedRecord, committed time.Time) {
	if m == nil {
		return
	}
	var customers, messages float64
	for _, d := range batch {
		if d.event != nil {
			customers++
		} else {
			messages++
		}
		m.endToEnd.WithLabelValues(m.group).Observe(committed.Sub(d.ingestedAt()).Seconds())
	}
	m.events.WithLabelValues(m.group, "customer").Add(customers)
	m.events.WithLabelValues(m.group, "message").Add(messages)
	m.stale.WithLabelValues(m.group).Add(float64(s.stale))
	m.conflicts.WithLabelValues(m.group, "opened").Add(float64(s.opened))
	m.conflicts.WithLabelValues(m.group, "resolved").Add(float64(s.resolved))
}

func (m *Metrics) deadLetters(n int) {
	if m != nil {
		m.dead.WithLabelValues(m.group).Add(float64(n))
	}
}
