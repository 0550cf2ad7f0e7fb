package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// Scraped adds up the series of this process and of every endpoint, and
// names the endpoints that did not answer.
func TestScrapedMergesSources(t *testing.T) {
	counter := func(reg *prometheus.Registry, channel string, n float64) {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "omnisync_ingest_requests_total", Help: "h"}, []string{"channel", "code"})
		reg.MustRegister(c)
		c.WithLabelValues(channel, "200").Add(n)
	}
	local, web, webReplica := prometheus.NewRegistry(), prometheus.NewRegistry(), prometheus.NewRegistry()
	counter(local, "app", 1)
	counter(web, "web", 2)
	counter(webReplica, "web", 3)
	serve := func(reg *prometheus.Registry) string {
		srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		t.Cleanup(srv.Close)
		return srv.URL + "/metrics"
	}
	down := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(down.Close)

	fams, err := Scraped(local, []string{serve(web), serve(webReplica), down.URL + "/metrics"}).Gather()
	if err == nil || !strings.Contains(err.Error(), down.URL) {
		t.Errorf("error = %v, want one naming %s", err, down.URL)
	}
	snap := snapshot{families: map[string]*dto.MetricFamily{}}
	for _, f := range fams {
		snap.families[f.GetName()] = f
	}
	for channel, want := range map[string]float64{"app": 1, "web": 5} {
		if got := snap.total("omnisync_ingest_requests_total", map[string]string{"channel": channel}); got != want {
			t.Errorf("%s requests = %v, want %v", channel, got, want)
		}
	}
}
