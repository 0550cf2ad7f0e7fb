package kafka

import (
	"fmt"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/zap"
)

// Embedded is the dev broker: franz-go's kfake, a Kafka-protocol broker in
// this process, persisted under a data directory so a restart — even after
// kill -9 — keeps topics, records and committed group offsets. Real clients
// (kcat, the Java and Python clients) can use it. Requests over
// MaxRequestBytes are refused by closing the connection, as Kafka does.
type Embedded struct {
	cluster *kfake.Cluster
}

// EmbeddedConfig configures the embedded broker.
type EmbeddedConfig struct {
	DataDir string // where to persist; empty keeps everything in memory
	Listen  string // host:port; port 0 picks a free one; default 127.0.0.1:9092
	// Fsync makes every produce durable against power loss before it is
	// acknowledged. Without it, acknowledged data is in the OS page cache,
	// which survives a crash of the process but not of the machine.
	Fsync  bool
	Logger *zap.Logger
}

// StartEmbedded starts the embedded broker and returns once it listens.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	listen := cfg.Listen
	if listen == "" {
		listen = "127.0.0.1:9092"
	}
	host, portText, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("embedded broker: listen address %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, fmt.Errorf("embedded broker: listen port %q: %w", portText, err)
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("broker")
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			ln, err := net.Listen(network, net.JoinHostPort(host, strconv.Itoa(port)))
			if err != nil {
				return nil, err
			}
			return guardedListener{Listener: ln, log: log}, nil
		}),
		kfake.DefaultNumPartitions(int(DefaultLayout.Partitions)),
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	if cfg.Fsync {
		opts = append(opts, kfake.SyncWrites())
	}
	if cfg.Logger != nil {
		opts = append(opts, kfake.WithLogger(kfakeLogger{log}))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("starting embedded broker on %s: %w", listen, err)
	}
	return &Embedded{cluster: c}, nil
}

// Addrs returns the addresses clients bootstrap from.
func (e *Embedded) Addrs() []string { return e.cluster.ListenAddrs() }

// Close stops the broker, flushing what it persisted.
func (e *Embedded) Close() { e.cluster.Close() }

type kfakeLogger struct{ log *zap.Logger }

func (l kfakeLogger) Logf(level kfake.LogLevel, msg string, args ...any) {
	text := fmt.Sprintf(msg, args...)
	switch level {
	case kfake.LogLevelError:
		l.log.Error(text)
	case kfake.LogLevelWarn:
		l.log.Warn(text)
	case kfake.LogLevelInfo:
		l.log.Info(text)
	default:
		l.log.Debug(text)
	}
}
