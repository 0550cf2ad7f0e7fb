package testenv

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/omnisync/omnisync/pkg/kafka"
)

// SecureKafka is a real Apache Kafka whose client listeners use TLS with a
// certificate for 127.0.0.1 and localhost signed by the CA in CAFile:
// SASL_SSL on Brokers, with SCRAM-SHA-512 and SCRAM-SHA-256 logins for
// User; and, when MTLSBrokers is set, SSL requiring a client certificate
// from the same CA, such as ClientCertKey ("cert.pem,key.pem").
type SecureKafka struct {
	Backend  string
	Brokers  []string
	CAFile   string
	User     string
	Password string

	MTLSBrokers   []string
	ClientCertKey string
}

// Config returns a client configuration that logs in with the SASL
// mechanism (SCRAM-SHA-512 or SCRAM-SHA-256) over TLS.
func (k SecureKafka) Config(mechanism string) kafka.Config {
	return kafka.Config{
		Brokers:       k.Brokers,
		ClientID:      "omnisync-test",
		SASLMechanism: mechanism,
		SASLUser:      k.User,
		SASLPassword:  k.Password,
		TLS:           true,
		TLSCAFile:     k.CAFile,
	}
}

var (
	secureOnce  sync.Once
	secureKafka SecureKafka
	secureSkip  string // why the machine cannot start one
	secureErr   error
)

// MTLSConfig returns a client configuration for the mutual-TLS listener,
// with the client certificate; MTLSBrokers must be set.
func (k SecureKafka) MTLSConfig() kafka.Config {
	return kafka.Config{Brokers: k.MTLSBrokers, ClientID: "omnisync-test", TLS: true, TLSCAFile: k.CAFile, TLSCertKey: k.ClientCertKey}
}

// RealSecureKafka returns the SASL_SSL broker that OMNISYNC_TEST_KAFKA_SECURE
// names (with _CA, _USER and _PASSWORD; optionally _MTLS, _CLIENT_CERT and
// _CLIENT_KEY for a mutual-TLS listener), else one started for this test
// binary with `scripts/kafka.sh up --secure` and stopped by Main (call it
// from TestMain). Without java or openssl the test is skipped loudly; a
// broker that fails to start fails the test.
func RealSecureKafka(t testing.TB) SecureKafka {
	t.Helper()
	secureOnce.Do(startSecureKafka)
	if secureSkip != "" {
		Skip(t, "%s", secureSkip)
	}
	if secureErr != nil {
		t.Fatal(secureErr)
	}
	t.Logf("Kafka backend: %s %v (SASL_SSL)", secureKafka.Backend, secureKafka.Brokers)
	return secureKafka
}

func startSecureKafka() {
	if addrs := os.Getenv("OMNISYNC_TEST_KAFKA_SECURE"); addrs != "" {
		secureKafka, secureErr = secureKafkaFrom(os.Getenv, "external (OMNISYNC_TEST_KAFKA_SECURE)")
		return
	}
	for _, cmd := range []string{"java", "openssl"} {
		if _, err := exec.LookPath(cmd); err != nil {
			secureSkip = fmt.Sprintf("no SASL_SSL Kafka: OMNISYNC_TEST_KAFKA_SECURE is unset and %s is not on PATH, so scripts/kafka.sh up --secure cannot run", cmd)
			return
		}
	}
	root, err := repoRootDir()
	if err != nil {
		secureErr = err
		return
	}
	dir, err := os.MkdirTemp("", "omnisync-kafka-secure-")
	if err != nil {
		secureErr = err
		return
	}
	// The script picks free ports itself unless KAFKA_PORT pins them.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KAFKA_PORT=") {
			env = append(env, kv)
		}
	}
	c := &KafkaCluster{script: filepath.Join(root, "scripts", "kafka.sh"), dir: dir, env: env}
	if out, err := c.run("install"); err != nil {
		os.RemoveAll(dir)
		if _, lookErr := exec.LookPath("mvn"); lookErr != nil {
			secureSkip = "no SASL_SSL Kafka: the Kafka jars are not installed and mvn is missing to fetch them (scripts/kafka.sh install)"
			return
		}
		secureErr = fmt.Errorf("kafka.sh install: %v\n%s", err, out)
		return
	}
	out, err := c.run("up", "--secure", "--dir", dir)
	atExit(func() {
		_, _ = c.run("down", "--dir", dir, "--clean")
		os.Remove(dir + ".lock") // kafka.sh's lock beside DIR
	})
	if err != nil {
		secureErr = fmt.Errorf("starting the SASL_SSL broker: %v\n%s", err, out)
		return
	}
	vars := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			vars[k] = v
		}
	}
	secureKafka, secureErr = secureKafkaFrom(func(k string) string { return vars[k] }, "Apache Kafka (scripts/kafka.sh up --secure)")
	if secureErr != nil {
		secureErr = fmt.Errorf("kafka.sh up --secure: %w; it printed:\n%s", secureErr, out)
	}
}

// secureKafkaFrom reads the OMNISYNC_TEST_KAFKA_SECURE* variables.
func secureKafkaFrom(get func(string) string, backend string) (SecureKafka, error) {
	k := SecureKafka{
		Backend:  backend,
		CAFile:   get("OMNISYNC_TEST_KAFKA_SECURE_CA"),
		User:     get("OMNISYNC_TEST_KAFKA_SECURE_USER"),
		Password: get("OMNISYNC_TEST_KAFKA_SECURE_PASSWORD"),
	}
	if addrs := get("OMNISYNC_TEST_KAFKA_SECURE"); addrs != "" {
		k.Brokers = strings.Split(addrs, ",")
	}
	if addrs, cert, key := get("OMNISYNC_TEST_KAFKA_SECURE_MTLS"), get("OMNISYNC_TEST_KAFKA_SECURE_CLIENT_CERT"), get("OMNISYNC_TEST_KAFKA_SECURE_CLIENT_KEY"); addrs != "" && cert != "" && key != "" {
		k.MTLSBrokers, k.ClientCertKey = strings.Split(addrs, ","), cert+","+key
	}
	for name, v := range map[string]string{
		"OMNISYNC_TEST_KAFKA_SECURE":          strings.Join(k.Brokers, ","),
		"OMNISYNC_TEST_KAFKA_SECURE_CA":       k.CAFile,
		"OMNISYNC_TEST_KAFKA_SECURE_USER":     k.User,
		"OMNISYNC_TEST_KAFKA_SECURE_PASSWORD": k.Password,
	} {
		if v == "" {
			return SecureKafka{}, fmt.Errorf("%s is not set", name)
		}
	}
	return k, nil
}
