package testenv

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	tckafka "github.com/testcontainers/testcontainers-go/modules/kafka"

	"github.com/omnisync/omnisync/pkg/kafka"
)

// Kafka is a cluster a test runs against.
type Kafka struct {
	Backend string // external (OMNISYNC_TEST_KAFKA), testcontainers or embedded
	Brokers []string
}

// Config returns a client configuration for the cluster.
func (k Kafka) Config() kafka.Config {
	return kafka.Config{Brokers: k.Brokers, ClientID: "omnisync-test"}
}

var (
	containerOnce    sync.Once
	containerBrokers []string
	containerErr     error
)

// ForEachKafka runs fn as a subtest on every cluster available: the real
// Apache Kafka named by OMNISYNC_TEST_KAFKA (make test starts one), else one
// in Docker through testcontainers when an engine answers; and always a
// fresh embedded broker. Shared clusters outlive the test: name topics and
// groups with UniqueName.
func ForEachKafka(t *testing.T, fn func(t *testing.T, k Kafka)) {
	t.Helper()
	if real, ok := realKafka(t); ok {
		t.Run(real.Backend, func(t *testing.T) {
			t.Logf("Kafka backend: %s %v", real.Backend, real.Brokers)
			fn(t, real)
		})
	}
	t.Run("embedded", func(t *testing.T) {
		k := Embedded(t, "")
		t.Logf("Kafka backend: embedded %v", k.Brokers)
		fn(t, k)
	})
}

// RealKafka returns the real Apache Kafka cluster, or skips the test loudly.
func RealKafka(t testing.TB) Kafka {
	t.Helper()
	k, ok := realKafka(t)
	if !ok {
		Skip(t, "no real Kafka: set OMNISYNC_TEST_KAFKA (make test starts one with scripts/kafka.sh) or run a Docker engine for testcontainers")
	}
	t.Logf("Kafka backend: %s %v", k.Backend, k.Brokers)
	return k
}

func realKafka(t testing.TB) (Kafka, bool) {
	if addrs := os.Getenv("OMNISYNC_TEST_KAFKA"); addrs != "" {
		return Kafka{Backend: "external", Brokers: strings.Split(addrs, ",")}, true
	}
	if err := docker(); err != nil {
		t.Logf("NOTE: no real Kafka for this test: OMNISYNC_TEST_KAFKA is unset and testcontainers cannot run (%v)", err)
		return Kafka{}, false
	}
	containerOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		c, err := tckafka.Run(ctx, "confluentinc/confluent-local:7.5.0", tckafka.WithClusterID("omnisync-test"))
		if err != nil {
			containerErr = err
			return
		}
		atExit(func() { _ = c.Terminate(context.Background()) })
		containerBrokers, containerErr = c.Brokers(ctx)
	})
	if containerErr != nil {
		t.Fatalf("starting Kafka with testcontainers: %v", containerErr)
	}
	return Kafka{Backend: "testcontainers", Brokers: containerBrokers}, true
}

// Embedded starts an embedded broker for the test, persisted in dataDir
// (in memory when empty), and stops it when the test ends.
func Embedded(t testing.TB, dataDir string) Kafka {
	t.Helper()
	b, err := kafka.StartEmbedded(kafka.EmbeddedConfig{DataDir: dataDir, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return Kafka{Backend: "embedded", Brokers: b.Addrs()}
}

// AnyKafka returns the real cluster when there is one, else a fresh
// embedded broker; for benchmarks, which report the backend in their name.
func AnyKafka(t testing.TB) Kafka {
	t.Helper()
	if k, ok := realKafka(t); ok {
		return k
	}
	return Embedded(t, "")
}
