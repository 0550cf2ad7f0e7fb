package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Scraped returns a Gatherer of this process's metrics (local) and those
// of other omnisync services' /metrics endpoints (urls), so the sync
// status of an API that runs apart from the producers and materializers
// still reports on them. A URL written dns+http://HOST:PORT/metrics stands
// for every address HOST resolves to at each scrape, as a scaled service's
// name does in Docker or a headless Service in Kubernetes. Series from
// several sources are kept side by side (replicas of one service add up),
// not deduplicated.
func Scraped(local prometheus.Gatherer, urls []string) prometheus.Gatherer {
	return scraped{local: local, urls: urls, client: &http.Client{Timeout: 3 * time.Second}, lookup: net.DefaultResolver.LookupHost}
}

type scraped struct {
	local  prometheus.Gatherer
	urls   []string
	client *http.Client
	lookup func(ctx context.Context, host string) ([]string, error)
}

// Gather returns what every source answered and an error naming those
// that did not.
func (s scraped) Gather() ([]*dto.MetricFamily, error) {
	urls, resolveErrs := s.resolve()
	results := make([]map[string]*dto.MetricFamily, len(urls))
	errs := make([]error, len(urls)+1)
	var wg sync.WaitGroup
	for i, url := range urls {
		wg.Go(func() { results[i], errs[i] = s.scrape(url) })
	}
	local, err := s.local.Gather()
	errs[len(urls)] = err
	wg.Wait()

	merged := map[string]*dto.MetricFamily{}
	add := func(f *dto.MetricFamily) {
		if m, ok := merged[f.GetName()]; ok && m.GetType() == f.GetType() {
			m.Metric = append(m.Metric, f.Metric...)
		} else if !ok {
			merged[f.GetName()] = f
		}
	}
	for _, f := range local {
		add(f)
	}
	for _, fams := range results {
		for _, f := range fams {
			add(f)
		}
	}
	out := make([]*dto.MetricFamily, 0, len(merged))
	for _, f := range merged {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out, errors.Join(append(resolveErrs, errs...)...)
}

// resolve expands every dns+ URL into one URL per address of its host.
func (s scraped) resolve() ([]string, []error) {
	var urls []string
	var errs []error
	for _, raw := range s.urls {
		rest, ok := strings.CutPrefix(raw, "dns+")
		if !ok {
			urls = append(urls, raw)
			continue
		}
		u, err := url.Parse(rest)
		if err != nil || u.Hostname() == "" {
			errs = append(errs, fmt.Errorf("scrape URL %s: want dns+http://HOST:PORT/PATH", raw))
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.client.Timeout)
		addrs, err := s.lookup(ctx, u.Hostname())
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("resolving %s: %w", raw, err))
			continue
		}
		slices.Sort(addrs)
		for _, a := range addrs {
			v := *u
			v.Host = a
			if port := u.Port(); port != "" {
				v.Host = net.JoinHostPort(a, port)
			}
			urls = append(urls, v.String())
		}
	}
	return urls, errs
}

func (s scraped) scrape(url string) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.client.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	return fams, nil
}
