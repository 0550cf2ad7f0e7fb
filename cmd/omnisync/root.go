package main

import (
	"context"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/sr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/pkg/registry"
)

// globals are the flags every command shares.
type globals struct {
	kafka    kafka.Config
	brokers  string
	logLevel string
}

func newRootCommand() *cobra.Command {
	g := &globals{kafka: kafka.ConfigFromEnv()}
	root := &cobra.Command{
		Use:           "omnisync",
		Short:         "Keep customer data in sync across customer-service channels, with Kafka as the backbone",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	f := root.PersistentFlags()
	f.StringVar(&g.brokers, "brokers", strings.Join(g.kafka.Brokers, ","), "Kafka bootstrap brokers, comma-separated (env OMNISYNC_KAFKA_BROKERS)")
	f.StringVar(&g.kafka.SASLMechanism, "sasl-mechanism", g.kafka.SASLMechanism, "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (env OMNISYNC_KAFKA_SASL_MECHANISM; user and password from OMNISYNC_KAFKA_SASL_USER and OMNISYNC_KAFKA_SASL_PASSWORD)")
	f.BoolVar(&g.kafka.TLS, "tls", g.kafka.TLS, "connect to Kafka with TLS (env OMNISYNC_KAFKA_TLS)")
	f.StringVar(&g.kafka.TLSCAFile, "tls-ca", g.kafka.TLSCAFile, "PEM CA bundle for Kafka TLS (env OMNISYNC_KAFKA_TLS_CA)")
	f.StringVar(&g.kafka.TLSCertKey, "tls-cert-key", g.kafka.TLSCertKey, "client certificate and key for mutual TLS to Kafka, as cert.pem,key.pem (env OMNISYNC_KAFKA_TLS_CERT_KEY)")
	f.StringVar(&g.kafka.Compression, "compression", g.kafka.Compression, "producer compression: none, gzip, snappy, lz4 or zstd (default "+kafka.DefaultCompression+")")
	f.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.AddCommand(newDevCommand(g), newBrokerCommand(g), newTopicsCommand(g), newRegistryCommand(g), newProduceCommand(g), newConsumeCommand(g), newAPICommand(g), newForwardCommand(g))
	return root
}

// logger returns a console logger at the configured level.
func (g *globals) logger() (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(g.logLevel)
	if err != nil {
		return nil, err
	}
	cfg := zap.NewDevelopmentConfig()
	cfg.Level = zap.NewAtomicLevelAt(level)
	cfg.DisableStacktrace = true
	return cfg.Build()
}

// kafkaConfig returns the Kafka configuration the flags describe.
func (g *globals) kafkaConfig(log *zap.Logger) kafka.Config {
	cfg := g.kafka
	cfg.Brokers = strings.Split(g.brokers, ",")
	cfg.Logger = log
	return cfg
}

// newSerde returns a codec on the schema registry at the comma-separated
// URLs, with omnisync's schemas registered.
func newSerde(ctx context.Context, registryURLs string, opts ...sr.ClientOpt) (*codec.Serde, error) {
	reg, err := registry.New(strings.Split(registryURLs, ","), opts...)
	if err != nil {
		return nil, err
	}
	return codec.New(ctx, reg)
}
