package main

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/omnisync/omnisync/consumers/forwarder"
	"github.com/omnisync/omnisync/pkg/health"
	"github.com/omnisync/omnisync/pkg/httpserve"
)

func newForwardCommand(g *globals) *cobra.Command {
	var target, token, secret, group, registryURL, listen string
	var skipSources []string
	var timeout time.Duration
	var serve httpserve.Options
	cmd := &cobra.Command{
		Use:   "forward",
		Short: "Run a forwarder: one consumer group delivering every changed customer record to a target system over HTTP",
		Long: `Run a member of a consumer group on the compacted state topic that POSTs every
changed customer record as JSON to --target (body: the CustomerState fields
with the version; see consumers/forwarder.Body). Delivery is at least once:
offsets are committed only after the target answered 2xx, so a record can
arrive twice; dedupe on customer_id + version (also sent as the
Idempotency-Key header). Network errors, 5xx, 408 and 429 are retried with
exponential backoff for as long as it takes; any other 4xx sends the record
to the dead-letter topic and the forwarder moves on. Run one group per
target system. /metrics, /healthz and /readyz are served on --listen.

Two-way sync with a back-office system (a CRM that also sends its changes
to omnisync on /ingest/crm, through omnisync source postgres or poll, or
by import): --skip-source crm/<system> leaves out every record whose last
change (its newest field writes) came from that system itself, so the CRM
never receives its own changes back and cannot echo them into a loop.`,
		Example: `  omnisync forward --target https://crm.example.com/hooks/omnisync --group omnisync-forward-crm --skip-source crm/main
  OMNISYNC_FORWARD_SECRET=… omnisync forward --target https://warehouse.example.com/customers`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			if token == "" {
				token = os.Getenv("OMNISYNC_FORWARD_TOKEN")
			}
			if secret == "" {
				secret = os.Getenv("OMNISYNC_FORWARD_SECRET")
			}
			if target == "" {
				return fmt.Errorf("--target is required")
			}
			if group == "" {
				u, err := url.Parse(target)
				if err != nil || u.Hostname() == "" {
					return fmt.Errorf("--target %q: want an http:// or https:// URL", target)
				}
				group = "omnisync-forward-" + u.Hostname()
			}
			ctx := cmd.Context()
			serde, err := newSerde(ctx, registryURL)
			if err != nil {
				return err
			}
			f, err := forwarder.New(forwarder.Config{
				Kafka: g.kafkaConfig(log), Group: group, Serde: serde, Target: target, Token: token, Secret: secret,
				HTTPClient: &http.Client{Timeout: timeout}, Logger: log.Named("forwarder"), SkipSources: skipSources,
				Metrics: forwarder.NewMetrics(prometheus.DefaultRegisterer, group),
			})
			if err != nil {
				return err
			}
			mux := http.NewServeMux()
			health.Mount(mux, health.Check{Name: "kafka", Func: f.Ping})
			mux.Handle("/metrics", promhttp.Handler())
			log.Info("forwarder starting", zap.String("group", group), zap.String("target", redactURL(target)))
			return serveUntilDone(ctx, listen, mux, serve, log, f.Run)
		},
	}
	f := cmd.Flags()
	f.StringVar(&target, "target", "", "URL of the target system each changed record is POSTed to (required)")
	f.StringVar(&token, "target-token", "", "bearer token for the target (default env OMNISYNC_FORWARD_TOKEN; prefer the environment)")
	f.StringVar(&secret, "target-secret", "", "HMAC-SHA256 key signing each body in X-Omnisync-Signature (default env OMNISYNC_FORWARD_SECRET)")
	f.DurationVar(&timeout, "target-timeout", 30*time.Second, "time limit of one request to the target")
	f.StringVar(&group, "group", "", "consumer group, one per target system (default omnisync-forward-<host of --target>)")
	f.StringVar(&registryURL, "registry", "http://127.0.0.1:8081", "schema registry URL(s), comma-separated")
	f.StringSliceVar(&skipSources, "skip-source", nil, "channel/system of the target itself (e.g. crm/main): records whose last change came from it are not sent back (two-way sync); repeatable")
	f.StringVar(&listen, "listen", "127.0.0.1:8097", "address serving /metrics, /healthz and /readyz")
	addServeFlags(f, &serve)
	return cmd
}

// redactURL drops credentials and the query from a URL for logs.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable URL)"
	}
	u.User, u.RawQuery = nil, ""
	return u.String()
}
