package ingest

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the producers' Prometheus metrics, labelled by channel.
type Metrics struct {
	requests   *prometheus.CounterVec
	events     *prometheus.CounterVec
	rejections *prometheus.CounterVec
	produce    *prometheus.HistogramVec
}

// NewMetrics registers the ingest metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omnisync_ingest_requests_total", Help: "Ingest requests by channel and HTTP status code.",
		}, []string{"channel", "code"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omnisync_ingest_events_total", Help: "Events accepted into Kafka by channel and kind (customer, message).",
		}, []string{"channel", "kind"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omnisync_ingest_rejections_total", Help: "Rejected requests by channel and reason (unauthorized, invalid, too_large, unavailable).",
		}, []string{"channel", "reason"}),
		produce: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "omnisync_ingest_produce_seconds", Help: "Time for Kafka to acknowledge a request's events (acks=all).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"channel"}),
	}
	reg.MustRegister(m.requests, m.events, m.rejections, m.produce)
	return m
}
