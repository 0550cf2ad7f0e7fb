package main

import (
	"context"
	"errors"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/omnisync/omnisync/api"
	"github.com/omnisync/omnisync/console"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/health"
	"github.com/omnisync/omnisync/pkg/httpserve"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/producers"
	"github.com/omnisync/omnisync/producers/ingest"
)

func newAPICommand(g *globals) *cobra.Command {
	var storeURL, listen, credentialsFile, registryURL string
	var secureCookies bool
	var scrape []string
	var serve httpserve.Options
	cmd := &cobra.Command{
		Use:   "api",
		Short: "Serve the agents' API and web console over a store, with /metrics, /healthz and /readyz",
		Long: `Serve the HTTP API (/api/v1; see api/openapi.yaml) and the agent console (/)
over a store a materializer writes. Callers are agents' accounts (API tokens,
or console sessions; see omnisync agents) with the role viewer, agent or
admin, or the bootstrap admin token from --credentials (JSON, the format
omnisync dev writes) or OMNISYNC_ADMIN_TOKEN. Resolving a conflict publishes
a RESOLVE event and its audit event to Kafka; GET /api/v1/audit and
GET /api/v1/live follow the audit and state topics.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			creds, err := ingest.LoadCredentials(credentialsFile)
			if err != nil {
				return err
			}
			if creds.AdminToken == "" {
				return errors.New("no admin token: set OMNISYNC_ADMIN_TOKEN or pass --credentials")
			}
			st, err := openStore(ctx, storeURL)
			if err != nil {
				return err
			}
			defer st.Close()
			serde, err := newSerde(ctx, registryURL)
			if err != nil {
				return err
			}
			cl, err := kafka.NewClient(g.kafkaConfig(log))
			if err != nil {
				return err
			}
			defer cl.Close()
			mux := http.NewServeMux()
			runStatus, err := mountAPI(mux, st, cl, g.kafkaConfig(log), serde, creds.AdminToken, api.Scraped(prometheus.DefaultGatherer, scrape), log,
				secureCookies)
			if err != nil {
				return err
			}
			return serveUntilDone(ctx, listen, mux, serve, log, runStatus)
		},
	}
	f := cmd.Flags()
	f.StringVar(&storeURL, "store", "sqlite:.omnisync/omnisync.db", "store: sqlite:PATH or postgres://…")
	f.StringVar(&listen, "http", "127.0.0.1:8080", "address to serve the API and console on")
	f.StringVar(&credentialsFile, "credentials", "", "JSON with admin_token (see README); OMNISYNC_ADMIN_TOKEN overrides")
	f.StringVar(&registryURL, "registry", "http://127.0.0.1:8081", "schema registry URL(s), comma-separated")
	f.StringSliceVar(&scrape, "scrape", nil, "/metrics URLs of the producers and materializers to report on in /api/v1/sync/status, comma-separated; dns+http://HOST:PORT/metrics scrapes every address HOST resolves to (each replica of a scaled service)")
	f.BoolVar(&secureCookies, "secure-cookies", false, "mark the console's session cookies Secure although this server speaks plain HTTP (behind a TLS-terminating proxy)")
	addServeFlags(f, &serve)
	return cmd
}

// mountAPI serves the API, the console, /metrics, /healthz and /readyz
// (the store answers and Kafka is reachable, plus extra checks) on mux;
// the sync status reports on the metrics gathers.
// The returned function samples the sync status and follows the audit
// and state topics (the audit trail, live push) until ctx ends.
func mountAPI(mux *http.ServeMux, st store.Reader, cl *kgo.Client, kcfg kafka.Config, serde *codec.Serde, adminToken string, metrics prometheus.Gatherer,
	log *zap.Logger, secureCookies bool, checks ...health.Check) (func(context.Context) error, error) {
	status := api.NewStatus(metrics, kadm.NewClient(cl), producers.Names())
	host, _ := os.Hostname()
	audit, err := api.NewAuditLog(kcfg, "", serde, log.Named("audit"))
	if err != nil {
		return nil, err
	}
	live, err := api.NewLive(kcfg, "", serde, log.Named("live"))
	if err != nil {
		return nil, err
	}
	accounts, _ := st.(store.Accounts) // both stores keep accounts
	pub := api.KafkaPublisher{Client: cl, Serde: serde}
	mux.Handle("/api/", api.Handler(api.Config{
		Store: st, Publisher: pub, Recorder: pub, Accounts: accounts, Audit: audit, Live: live, Status: status,
		AdminToken: adminToken, SecureCookies: secureCookies, Logger: log.Named("api"), Instance: host,
	}))
	mux.Handle("/", console.Handler())
	mux.Handle("GET /metrics", promhttp.Handler())
	checks = append(checks,
		health.Check{Name: "store", Func: func(ctx context.Context) error {
			_, err := st.SearchCustomers(ctx, "", nil, 1)
			return err
		}},
		health.Check{Name: "kafka", Func: func(ctx context.Context) error { return cl.Ping(ctx) }},
	)
	health.Mount(mux, checks...)
	return func(ctx context.Context) error {
		g, ctx := errgroup.WithContext(ctx)
		g.Go(func() error { return status.Run(ctx) })
		g.Go(func() error { return audit.Run(ctx) })
		g.Go(func() error { return live.Run(ctx) })
		return g.Wait()
	}, nil
}
