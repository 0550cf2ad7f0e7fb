package kafka

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
)

// ClientMetrics exports the franz-go client metrics (kprom) of every Kafka
// client a process creates with one Config, under omnisync_kafka_*:
// connections, bytes read and written, produced and fetched bytes by
// topic, buffered records. A kprom.Metrics serves one client (it creates
// its series when the client starts), so each client gets its own, labelled
// client="1", "2", … in the order the process created them, and
// ClientMetrics collects them all; register it once per process.
type ClientMetrics struct {
	mu      sync.Mutex
	created int
	clients map[*clientHooks]bool // started and not yet closed
}

// NewClientMetrics returns the collector and registers it with reg.
func NewClientMetrics(reg prometheus.Registerer) *ClientMetrics {
	m := &ClientMetrics{clients: map[*clientHooks]bool{}}
	reg.MustRegister(m)
	return m
}

// hooks returns the hooks of one new client.
func (m *ClientMetrics) hooks() *clientHooks {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.created++
	return &clientHooks{
		Metrics: kprom.NewMetrics("omnisync_kafka", kprom.Registry(nil),
			kprom.WithStaticLabel(prometheus.Labels{"client": strconv.Itoa(m.created)})),
		set: m,
	}
}

// Describe sends nothing: the series appear as clients start, so the
// collector is unchecked.
func (m *ClientMetrics) Describe(chan<- *prometheus.Desc) {}

// Collect sends the series of every open client.
func (m *ClientMetrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for c := range m.clients {
		c.Collect(ch)
	}
}

// clientHooks are one client's kprom hooks; the client is collected from
// the moment kprom created its series until it closes.
type clientHooks struct {
	*kprom.Metrics
	set *ClientMetrics
}

func (h *clientHooks) OnNewClient(cl *kgo.Client) {
	h.Metrics.OnNewClient(cl)
	h.set.mu.Lock()
	h.set.clients[h] = true
	h.set.mu.Unlock()
}

func (h *clientHooks) OnClientClosed(cl *kgo.Client) {
	h.set.mu.Lock()
	delete(h.set.clients, h)
	h.set.mu.Unlock()
	h.Metrics.OnClientClosed(cl)
}
