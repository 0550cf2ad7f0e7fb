package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"go.uber.org/zap"

	"github.com/omnisync/omnisync/api"
	"github.com/omnisync/omnisync/consumers/materializer"
	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store/sqlite"
	"github.com/omnisync/omnisync/internal/demo"
	"github.com/omnisync/omnisync/pkg/devregistry"
	"github.com/omnisync/omnisync/pkg/httpserve"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/pkg/wxcrypt"
	"github.com/omnisync/omnisync/producers/ingest"
)

func newDevCommand(g *globals) *cobra.Command {
	var dataDir, kafkaListen, registryListen, httpListen string
	var playDemo bool
	var serve httpserve.Options
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run omnisync on one machine: embedded broker, schema registry, topics, producers, a materializer into SQLite, the API and console, persisted under --data-dir",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			if err := privateDataDir(dataDir); err != nil {
				return err
			}
			ctx := cmd.Context()
			broker, err := kafka.StartEmbedded(kafka.EmbeddedConfig{DataDir: filepath.Join(dataDir, "broker"), Listen: kafkaListen, Logger: log})
			if err != nil {
				return err
			}
			defer broker.Close()
			kcfg := g.kafkaConfig(log)
			kcfg.Brokers = broker.Addrs()
			cl, err := kafka.NewClient(kcfg)
			if err != nil {
				return err
			}
			defer cl.Close()
			if _, err := kafka.Provision(ctx, kadm.NewClient(cl), kafka.Layout{Partitions: kafka.DefaultLayout.Partitions, ReplicationFactor: 1}.Topics()); err != nil {
				return fmt.Errorf("provisioning topics: %w", err)
			}
			registrySrv, err := serveRegistry(ctx, cl, registryListen, serve, log)
			if err != nil {
				return err
			}
			defer shutdownNow(registrySrv)
			registryURL := registrySrv.URL()
			serde, err := newSerde(ctx, registryURL, sr.HTTPClient(pinnedClient(registrySrv)))
			if err != nil {
				return err
			}
			credsPath := filepath.Join(dataDir, "credentials.json")
			creds, err := devCredentials(credsPath)
			if err != nil {
				return err
			}
			mux, runDirectory, directoryReady, closeProducer, err := newProducerMux(ctx, kcfg, serde, creds, []string{"all"}, merge.DefaultPolicy(), prometheus.DefaultRegisterer, log)
			if err != nil {
				return err
			}
			defer closeProducer()
			storePath := filepath.Join(dataDir, "omnisync.db")
			store, err := sqlite.Open(ctx, storePath)
			if err != nil {
				return err
			}
			defer store.Close()
			const group = "omnisync-dev-sqlite"
			mat, err := materializer.New(materializer.Config{Kafka: kcfg, Group: group, Store: store, Serde: serde,
				PublishState: true, Logger: log.Named("materializer"), Metrics: materializer.NewMetrics(prometheus.DefaultRegisterer, group)})
			if err != nil {
				return err
			}
			runStatus, err := mountAPI(mux, store, cl, kcfg, serde, creds.AdminToken, prometheus.DefaultGatherer, log, false, directoryReady)
			if err != nil {
				return err
			}
			srv, err := httpserve.Start(httpListen, mux, serve)
			if err != nil {
				return err
			}
			base := srv.URL()
			background := []func(context.Context) error{runDirectory, mat.Run, runStatus, untilFailed(registrySrv)}
			if playDemo {
				background = append(background, func(ctx context.Context) error {
					return demo.Run(ctx, demo.Config{BaseURL: base, HTTPClient: pinnedClient(srv), Credentials: creds,
						CRM: api.KafkaPublisher{Client: cl, Serde: serde}, SeededMarker: filepath.Join(dataDir, "demo-seeded"),
						Every: 4 * time.Second, Logger: log.Named("demo")})
				})
			}
			// The banner names no channel key: those stay in the credentials
			// file, which the README's curl examples read with jq.
			fmt.Fprintf(cmd.OutOrStdout(), `omnisync dev is running (data in %s)

  Agent console             %s/#token=%s
  API base (bearer admin)   %s/api/v1
  Ingest endpoints          %s/ingest/{web,app,miniprogram,wechat,phone}
  Metrics                   %s/metrics
  Kafka (embedded broker)   %s
  Schema registry           %s
  Credentials               %s (channel keys, WeChat tokens, admin token)
  Store (SQLite)            %s

curl examples that read the keys from the credentials file with jq: README.md, "Channel producers".
Ctrl-C stops it; a restart keeps all data.
`, dataDir, base, creds.AdminToken, base, base, base, strings.Join(broker.Addrs(), ","), registryURL, credsPath, storePath)
			err = runUntilDone(ctx, srv, log, background...)
			log.Info("shutting down")
			return err
		},
	}
	cmd.Flags().BoolVar(&playDemo, "demo", false, "play demo customers across all five channels through the ingest endpoints")
	cmd.Flags().StringVar(&dataDir, "data-dir", ".omnisync", "where the broker persists everything")
	cmd.Flags().StringVar(&kafkaListen, "kafka-listen", "127.0.0.1:9092", "address of the embedded Kafka broker")
	cmd.Flags().StringVar(&registryListen, "registry-listen", "127.0.0.1:8081", "address of the embedded schema registry")
	cmd.Flags().StringVar(&httpListen, "http", "127.0.0.1:8080", "address of the ingest endpoints, API and metrics")
	addServeFlags(cmd.Flags(), &serve)
	return cmd
}

func newRegistryCommand(g *globals) *cobra.Command {
	var listen string
	var serve httpserve.Options
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Run the embedded schema registry (Confluent REST API) against a Kafka cluster; single instance, for dev and tests",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			cl, err := kafka.NewClient(g.kafkaConfig(log))
			if err != nil {
				return err
			}
			defer cl.Close()
			srv, err := serveRegistry(cmd.Context(), cl, listen, serve, log)
			if err != nil {
				return err
			}
			return runUntilDone(cmd.Context(), srv, log)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8081", "address to serve the registry API on")
	addServeFlags(cmd.Flags(), &serve)
	return cmd
}

// serveRegistry starts the embedded registry on listen.
func serveRegistry(ctx context.Context, cl *kgo.Client, listen string, opts httpserve.Options, log *zap.Logger) (*httpserve.Server, error) {
	reg, err := devregistry.New(ctx, cl, log.Named("registry"))
	if err != nil {
		return nil, fmt.Errorf("starting schema registry: %w", err)
	}
	srv, err := httpserve.Start(listen, reg, opts)
	if err != nil {
		return nil, fmt.Errorf("schema registry: %w", err)
	}
	return srv, nil
}

// pinnedClient is an HTTP client for the process's own servers: with TLS,
// it trusts exactly the certificate srv serves.
func pinnedClient(srv *httpserve.Server) *http.Client {
	return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: srv.ClientTLS()}}
}

// devCredentials reads the dev credentials (the environment overrides
// them, as for every command), generating random ones on the first start
// and any a newer version needs that the file lacks. On the first start
// the WeChat channels get an EncodingAESKey, so they take encrypted pushes
// only (safe mode); a file written before keys were generated stays in
// plain-text mode.
func devCredentials(path string) (ingest.Credentials, error) {
	var c ingest.Credentials
	b, err := os.ReadFile(path)
	fresh := errors.Is(err, fs.ErrNotExist)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &c); err != nil {
			return c, fmt.Errorf("credentials %s: %w", path, err)
		}
	case !fresh:
		return c, fmt.Errorf("reading credentials: %w", err)
	}
	secret := func() string {
		b := make([]byte, 18)
		_, _ = rand.Read(b)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	changed := false
	fill := func(dst *string, value func() string) {
		if *dst == "" {
			*dst, changed = value(), true
		}
	}
	fill(&c.AdminToken, secret)
	fill(&c.Channels.Web.Key, secret)
	fill(&c.Channels.Web.IdentitySecret, secret)
	fill(&c.Channels.App.Key, secret)
	fill(&c.Channels.App.IdentitySecret, secret)
	fill(&c.Channels.Phone.Key, secret)
	if len(c.Channels.CRM) == 0 {
		c.Channels.CRM, changed = map[string]ingest.KeyCredential{"main": {Key: secret()}}, true
	}
	for _, wc := range []*ingest.WeChatCredential{&c.Channels.WeChat, &c.Channels.MiniProgram} {
		fill(&wc.AppID, func() string { return "wx" + secret()[:16] })
		fill(&wc.Token, secret)
		if fresh {
			fill(&wc.EncodingAESKey, wxcrypt.NewKey)
		}
	}
	if changed {
		b, err := json.MarshalIndent(c, "", "  ")
		if err != nil {
			return c, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return c, err
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
			return c, err
		}
	}
	return ingest.LoadCredentials(path)
}
