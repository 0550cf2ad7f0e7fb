package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
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
	kafka     kafka.Config
	brokers   string
	logLevel  string
	logFormat string

	kafkaMetrics func() *kafka.ClientMetrics // registered once per process
}

func newRootCommand() *cobra.Command {
	g := &globals{kafka: kafka.ConfigFromEnv(), kafkaMetrics: sync.OnceValue(func() *kafka.ClientMetrics {
		return kafka.NewClientMetrics(prometheus.DefaultRegisterer)
	})}
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
	f.StringVar(&g.logFormat, "log-format", defaultLogFormat(), "log format: json (one object a line) or console; default console when stderr is a terminal, else json")
	root.AddCommand(newDevCommand(g), newBrokerCommand(g), newTopicsCommand(g), newRegistryCommand(g), newProduceCommand(g), newConsumeCommand(g), newAPICommand(g), newForwardCommand(g), newConflictsCommand(), newAgentsCommand(), newVerifyCommand(g), newReplayCommand(g), newImportCommand(g), newExportCommand(), newSourceCommand(g))
	return root
}

// logger returns a logger on stderr at the configured level and format.
func (g *globals) logger() (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(g.logLevel)
	if err != nil {
		return nil, err
	}
	var cfg zap.Config
	switch g.logFormat {
	case "console":
		cfg = zap.NewDevelopmentConfig()
	case "json":
		cfg = zap.NewProductionConfig()
		cfg.Sampling = nil // every line, as on the console
		cfg.EncoderConfig.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	default:
		return nil, fmt.Errorf("--log-format %q: want json or console", g.logFormat)
	}
	cfg.Level = zap.NewAtomicLevelAt(level)
	cfg.DisableStacktrace = true
	return cfg.Build()
}

// defaultLogFormat is console for a person at a terminal and json for a
// log collector.
func defaultLogFormat() string {
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		return "console"
	}
	return "json"
}

// kafkaConfig returns the Kafka configuration the flags describe.
func (g *globals) kafkaConfig(log *zap.Logger) kafka.Config {
	cfg := g.kafka
	cfg.Brokers = strings.Split(g.brokers, ",")
	cfg.Logger = log
	cfg.Metrics = g.kafkaMetrics()
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
