package api

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/omnisync/omnisync/internal/testenv"
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

// A dns+ URL stands for every address its host resolves to: each replica
// of a scaled service is scraped, and a name that does not resolve is
// named in the error.
func TestScrapedResolvesDNS(t *testing.T) {
	// Two replicas on one port, as a scaled service's containers are:
	// 127.0.0.1 and 127.0.0.2 (Linux routes all of 127/8 to loopback).
	var listeners [2]net.Listener
	for try := 0; listeners[1] == nil; try++ {
		l2, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			testenv.Skip(t, "cannot listen on 127.0.0.2 on this system: "+err.Error())
		}
		l1, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(l2.Addr().(*net.TCPAddr).Port)))
		if err != nil {
			l2.Close()
			if try == 20 {
				t.Fatalf("no port free on both 127.0.0.1 and 127.0.0.2: %v", err)
			}
			continue
		}
		listeners = [2]net.Listener{l1, l2}
	}
	for i, l := range listeners {
		reg := prometheus.NewRegistry()
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "omnisync_ingest_requests_total", Help: "h"}, []string{"channel", "code"})
		reg.MustRegister(c)
		c.WithLabelValues("web", "200").Add(float64(i + 1))
		srv := httptest.NewUnstartedServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		srv.Listener.Close()
		srv.Listener = l
		srv.Start()
		t.Cleanup(srv.Close)
	}
	port := strconv.Itoa(listeners[0].Addr().(*net.TCPAddr).Port)
	s := Scraped(prometheus.NewRegistry(), []string{"dns+http://materializer:" + port + "/metrics", "dns+http://gone:" + port + "/metrics"}).(scraped)
	s.lookup = func(_ context.Context, host string) ([]string, error) {
		if host == "materializer" {
			return []string{"127.0.0.2", "127.0.0.1"}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	fams, err := s.Gather()
	if err == nil || !strings.Contains(err.Error(), "dns+http://gone:") || strings.Contains(err.Error(), "materializer") {
		t.Errorf("error = %v, want one naming only the unresolvable dns+http://gone", err)
	}
	snap := snapshot{families: map[string]*dto.MetricFamily{}}
	for _, f := range fams {
		snap.families[f.GetName()] = f
	}
	if got := snap.total("omnisync_ingest_requests_total", map[string]string{"channel": "web"}); got != 3 {
		t.Errorf("web requests over both replicas = %v, want 1 + 2", got)
	}
}
