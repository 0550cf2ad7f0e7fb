package main

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/health"
	"github.com/omnisync/omnisync/pkg/httpserve"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/producers"
	"github.com/omnisync/omnisync/producers/ingest"
)

func newProduceCommand(g *globals) *cobra.Command {
	var channel, listen, credentialsFile, registryURL, policyFile string
	var serve httpserve.Options
	cmd := &cobra.Command{
		Use:   "produce",
		Short: "Run channel producers: native channel input in, Avro events to Kafka",
		Long: `Run one channel's producer (--channel web|app|miniprogram|wechat|phone|crm), or all
of them on one listener (--channel all). Endpoints are /ingest/<channel>;
/metrics, /healthz and /readyz beside them. Secrets come from --credentials
(JSON, the format omnisync dev writes) and the environment
(OMNISYNC_WEB_KEY, OMNISYNC_WECHAT_TOKEN, OMNISYNC_CRM_KEYS=system=key,…, …),
never from code. The CRM channel takes one bearer key per source system
(channels.crm.<system>.key). --policy is the materializers' merge policy: its
merge_identities say which identities an event shows of two customers merge
them (a MERGE request) or only suggest it to an agent (docs/design.md,
Identity graph).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			creds, err := ingest.LoadCredentials(credentialsFile)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			serde, err := newSerde(ctx, registryURL)
			if err != nil {
				return err
			}
			policy := merge.DefaultPolicy()
			if policyFile != "" {
				if policy, err = merge.LoadPolicy(policyFile); err != nil {
					return err
				}
			}
			mux, run, ready, closeProducer, err := newProducerMux(ctx, g.kafkaConfig(log), serde, creds, strings.Split(channel, ","), policy, prometheus.DefaultRegisterer, log)
			if err != nil {
				return err
			}
			defer closeProducer() // after the server: its ingest handlers produce with it
			health.Mount(mux, ready)
			mux.Handle("/metrics", promhttp.Handler())
			return serveUntilDone(ctx, listen, mux, serve, log, run)
		},
	}
	f := cmd.Flags()
	f.StringVar(&channel, "channel", "all", "channel(s) to serve, comma-separated: "+strings.Join(producers.Names(), ", ")+", or all")
	f.StringVar(&listen, "listen", "127.0.0.1:8090", "address to listen on")
	f.StringVar(&credentialsFile, "credentials", "", "channel secrets as JSON (see README); the environment overrides")
	f.StringVar(&registryURL, "registry", "http://127.0.0.1:8081", "schema registry URL(s), comma-separated")
	f.StringVar(&policyFile, "policy", "", "merge policy YAML, the materializers' (default: the built-in policy)")
	addServeFlags(f, &serve)
	return cmd
}

// newProducerMux builds the ingest pipeline and mounts the channels; run
// follows the identity directory until ctx ends; ready passes once the
// directory has caught up; closeProducer closes the pipeline's Kafka client
// once the server no longer takes requests.
func newProducerMux(ctx context.Context, kcfg kafka.Config, serde *codec.Serde, creds ingest.Credentials, channels []string,
	policy *merge.Policy, reg prometheus.Registerer, log *zap.Logger) (mux *http.ServeMux, run func(context.Context) error, ready health.Check, closeProducer func(), err error) {
	cl, err := kafka.NewClient(kcfg)
	if err != nil {
		return nil, nil, ready, nil, err
	}
	dir, err := ingest.NewDirectory(kcfg, serde, log.Named("identities"))
	if err != nil {
		cl.Close()
		return nil, nil, ready, nil, err
	}
	p := ingest.New(ingest.Config{Client: cl, Serde: serde, Directory: dir, Policy: policy, Logger: log.Named("ingest"), Metrics: ingest.NewMetrics(reg)})
	mux = http.NewServeMux()
	if err := producers.Mount(mux, p, creds, channels...); err != nil {
		cl.Close()
		return nil, nil, ready, nil, err
	}
	ready = health.Check{Name: "identity directory", Func: func(context.Context) error {
		select {
		case <-dir.Ready():
			return nil
		default:
			return errors.New("loading the identities topic")
		}
	}}
	return mux, dir.Run, ready, cl.Close, nil
}
