package forwarder

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a forwarder's Prometheus metrics, labelled by group.
// A nil *Metrics records nothing.
type Metrics struct {
	group      string
	deliveries *prometheus.CounterVec
	retries    *prometheus.CounterVec
	dead       *prometheus.CounterVec
	skipped    *prometheus.CounterVec
	latency    *prometheus.HistogramVec
}

// NewMetrics registers the forwarder metrics for group with reg.
func NewMetrics(reg prometheus.Registerer, group string) *Metrics {
	m := &Metrics{
		group: group,
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omnisync_forwarder_deliveries_total", Help: "State records the target acknowledged with a 2xx.",
		}, []string{"group"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omnisync_forwarder_retries_total", Help: "Retried attempts, by reason: the target's HTTP status, network, or internal (registry or Kafka).",
		}, []string{"group", "reason"}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omnisync_forwarder_dead_letters_total", Help: "Records the target refused for good (or that could not be decoded), sent to the dead-letter topic.",
		}, []string{"group"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omnisync_forwarder_skipped_total", Help: "Records not sent because their last change came from the target system itself (Config.SkipSources).",
		}, []string{"group"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "omnisync_forwarder_delivery_seconds", Help: "From the first attempt to the target's 2xx, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"group"}),
	}
	reg.MustRegister(m.deliveries, m.retries, m.dead, m.skipped, m.latency)
	return m
}

func (m *Metrics) delivered(took time.Duration) {
	if m != nil {
		m.deliveries.WithLabelValues(m.group).Inc()
		m.latency.WithLabelValues(m.group).Observe(took.Seconds())
	}
}

func (m *Metrics) retry(reason string) {
	if m != nil {
		m.retries.WithLabelValues(m.group, reason).Inc()
	}
}

func (m *Metrics) deadLetter() {
	if m != nil {
		m.dead.WithLabelValues(m.group).Inc()
	}
}

func (m *Metrics) skip() {
	if m != nil {
		m.skipped.WithLabelValues(m.group).Inc()
	}
}
