package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/omnisync/omnisync/consumers/materializer"
	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/consumers/store/postgres"
	"github.com/omnisync/omnisync/consumers/store/sqlite"
	"github.com/omnisync/omnisync/pkg/health"
	"github.com/omnisync/omnisync/pkg/httpserve"
)

func newConsumeCommand(g *globals) *cobra.Command {
	var group, storeURL, policyFile, registryURL, listen string
	var publishState bool
	var serve httpserve.Options
	cmd := &cobra.Command{
		Use:   "consume",
		Short: "Run a materializer: one consumer group folding customer events into a store",
		Long: `Run a member of a consumer group that folds customer events and messages into
versioned customer records and writes them, exactly once in effect, into a
store. Run one group per target store; run several members of a group to
spread the partitions. A SQLite store has one writer: a second member of
its group waits as a standby and takes over when the first stops.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			st, err := openStore(ctx, storeURL)
			if err != nil {
				return err
			}
			defer st.Close()
			policy := merge.DefaultPolicy()
			if policyFile != "" {
				if policy, err = merge.LoadPolicy(policyFile); err != nil {
					return err
				}
			}
			serde, err := newSerde(ctx, registryURL)
			if err != nil {
				return err
			}
			m, err := materializer.New(materializer.Config{
				Kafka: g.kafkaConfig(log), Group: group, Store: st, Serde: serde, Policy: policy,
				PublishState: publishState, Logger: log.Named("materializer"),
				Metrics: materializer.NewMetrics(prometheus.DefaultRegisterer, group),
				Writers: storeWriters(st),
			})
			if err != nil {
				return err
			}
			log.Info("materializer starting", zap.String("group", group), zap.String("store", redactDSN(storeURL)), zap.String("policy_hash", policy.Hash()))
			// On the way out: the materializer leaves its group and closes
			// its Kafka client, then the server stops, then the store
			// closes (deferred above).
			if listen == "" {
				return m.Run(ctx)
			}
			mux := http.NewServeMux()
			health.Mount(mux, health.Check{Name: "store", Func: func(ctx context.Context) error {
				if err := m.StoreErr(); err != nil {
					return err // the materializer is retrying the store
				}
				if _, err := st.Offsets(ctx, group); err != nil {
					return fmt.Errorf("store unavailable: %w", err)
				}
				return nil
			}})
			mux.Handle("/metrics", promhttp.Handler())
			return serveUntilDone(ctx, listen, mux, serve, log, m.Run)
		},
	}
	f := cmd.Flags()
	f.StringVar(&group, "group", "omnisync-sqlite", "consumer group: one per target store")
	f.StringVar(&storeURL, "store", "sqlite:.omnisync/omnisync.db", "store: sqlite:PATH, or PostgreSQL as postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=… (also postgresql://)")
	f.StringVar(&policyFile, "policy", "", "merge policy YAML (default: the built-in policy)")
	f.StringVar(&registryURL, "registry", "http://127.0.0.1:8081", "schema registry URL(s), comma-separated")
	f.StringVar(&listen, "listen", "", "address serving /metrics, /healthz and /readyz (default: none)")
	f.BoolVar(&publishState, "publish-state", true, "publish every changed record to the compacted state topic after the store commit (the API's live push, GET /api/v1/live, follows it)")
	addServeFlags(f, &serve)
	return cmd
}

// openStore opens the store a URL names: sqlite:PATH, or a PostgreSQL
// database by a postgres:// or postgresql:// URL (pgx's DSN parameters).
func openStore(ctx context.Context, url string) (store.Store, error) {
	if path, ok := strings.CutPrefix(url, "sqlite:"); ok {
		return sqlite.Open(ctx, path)
	}
	if strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://") {
		return postgres.Open(ctx, url)
	}
	return nil, fmt.Errorf("store %q: want sqlite:PATH, postgres://… or postgresql://…", redactDSN(url))
}

// storeWriters is how many store transactions a member runs at once:
// PostgreSQL applies batches of several partitions in parallel, SQLite has
// one writer.
func storeWriters(st store.Store) int {
	if _, ok := st.(store.SingleWriter); ok {
		return 1
	}
	return 4
}

// redactDSN hides a password in a store URL for logs.
func redactDSN(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url
	}
	creds, host, ok := strings.Cut(rest, "@")
	if !ok {
		return url
	}
	user, _, _ := strings.Cut(creds, ":")
	return scheme + "://" + user + ":***@" + host
}
