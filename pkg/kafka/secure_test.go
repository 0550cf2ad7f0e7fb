package kafka_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/kafka"
)

// A client configured with SCRAM and TLS provisions topics, produces
// idempotently with acks=all and consumes the records back, on a real
// Apache Kafka whose only client listener is SASL_SSL.
func TestSASLSSLProvisionProduceConsume(t *testing.T) {
	k := testenv.RealSecureKafka(t)
	for _, mech := range []string{"SCRAM-SHA-512", "SCRAM-SHA-256"} {
		t.Run(mech, func(t *testing.T) { provisionProduceConsume(t, k.Config(mech)) })
	}
}

// A client presenting a certificate from the broker's CA does the same on a
// listener that requires one; without the certificate it is refused at once.
func TestMutualTLS(t *testing.T) {
	k := testenv.RealSecureKafka(t)
	if len(k.MTLSBrokers) == 0 {
		testenv.Skip(t, "the SASL_SSL broker in OMNISYNC_TEST_KAFKA_SECURE has no mutual-TLS listener set (OMNISYNC_TEST_KAFKA_SECURE_MTLS, _CLIENT_CERT, _CLIENT_KEY)")
	}
	t.Run("with the client certificate", func(t *testing.T) { provisionProduceConsume(t, k.MTLSConfig()) })
	t.Run("without a client certificate", func(t *testing.T) {
		cfg := k.MTLSConfig()
		cfg.TLSCertKey = ""
		if err := pingFails(t, cfg); !strings.Contains(err.Error(), "tls: certificate required") && !strings.Contains(err.Error(), "tls: bad certificate") {
			t.Errorf("got %v, want the broker's TLS alert for a missing client certificate", err)
		}
	})
}

// provisionProduceConsume creates a topic with kafka.Provision, produces to
// it with cfg's producer settings and consumes every record back.
func provisionProduceConsume(t *testing.T, cfg kafka.Config) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kafka.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	topic := testenv.UniqueName(t, "secure")
	spec := []kafka.TopicSpec{{Name: topic, Partitions: 3, ReplicationFactor: 1, Configs: map[string]string{"retention.ms": "-1"}}}
	adm := kadm.NewClient(cl)
	st, err := kafka.Provision(ctx, adm, spec)
	if err != nil {
		t.Fatalf("provisioning %s: %v", topic, err)
	}
	if len(st) != 1 || !st[0].Created {
		t.Fatalf("provisioning %s: got %+v, want it created", topic, st)
	}
	// Again: the topic exists and matches its spec, read back with
	// DescribeConfigs over the same listener.
	if st, err = kafka.Provision(ctx, adm, spec); err != nil || st[0].Created || len(st[0].Differences) > 0 {
		t.Fatalf("provisioning %s again: %+v, %v; want it found unchanged", topic, st, err)
	}

	const n = 50
	var sent []*kgo.Record
	for i := range n {
		sent = append(sent, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "customer-%d", i%7), Value: fmt.Appendf(nil, "event %d of %s", i, t.Name())})
	}
	if err := cl.ProduceSync(ctx, sent...).FirstErr(); err != nil {
		t.Fatalf("producing: %v", err)
	}
	// The broker gave the producer an ID: idempotence is on (it needs
	// acks=all), negotiated through InitProducerID over this listener.
	if pid := sent[0].ProducerID; pid < 0 {
		t.Fatalf("record produced with producer ID %d: the producer is not idempotent", pid)
	}

	consumer, err := kafka.NewClient(cfg, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	want := map[string]string{}
	for _, r := range sent {
		want[string(r.Value)] = string(r.Key)
	}
	got := 0
	for got < n {
		fs := consumer.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", got, n, err)
		}
		if errs := fs.Errors(); len(errs) > 0 {
			t.Fatalf("consuming: %v", errs[0].Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			key, ok := want[string(r.Value)]
			if !ok || key != string(r.Key) {
				t.Errorf("consumed unexpected record %q=%q", r.Key, r.Value)
				return
			}
			delete(want, string(r.Value))
			got++
		})
	}
	if len(want) > 0 {
		t.Fatalf("%d records not consumed", len(want))
	}
}

// pingFails asks the broker for metadata with cfg and returns the error,
// failing the test if there is none or if it only came with the deadline.
func pingFails(t *testing.T, cfg kafka.Config) error {
	t.Helper()
	const deadline = 20 * time.Second
	cl, err := kafka.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	err = cl.Ping(ctx)
	if err == nil {
		t.Fatal("connected; want an error")
	}
	if ctx.Err() != nil {
		t.Fatalf("still failing after %s (%v); want an error at once", time.Since(start).Round(time.Millisecond), err)
	}
	t.Logf("failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
	return err
}

// Bad credentials and TLS settings fail with an error naming the cause,
// well before the deadline, instead of retrying until it.
func TestSASLSSLRejectsBadSettings(t *testing.T) {
	k := testenv.RealSecureKafka(t)
	t.Run("wrong password", func(t *testing.T) {
		for _, mech := range []string{"SCRAM-SHA-512", "SCRAM-SHA-256"} {
			cfg := k.Config(mech)
			cfg.SASLPassword += "-wrong"
			if err := pingFails(t, cfg); !errors.Is(err, kerr.SaslAuthenticationFailed) {
				t.Errorf("%s: got %v, want %v", mech, err, kerr.SaslAuthenticationFailed)
			}
		}
	})
	t.Run("unknown user", func(t *testing.T) {
		cfg := k.Config("SCRAM-SHA-512")
		cfg.SASLUser = "nobody"
		if err := pingFails(t, cfg); !errors.Is(err, kerr.SaslAuthenticationFailed) {
			t.Errorf("got %v, want %v", err, kerr.SaslAuthenticationFailed)
		}
	})
	t.Run("no TLS", func(t *testing.T) {
		cfg := k.Config("SCRAM-SHA-512")
		cfg.TLS = false
		// The broker answers plaintext with a TLS alert, which franz-go
		// recognises; had it just closed the connection, franz-go would
		// return ErrFirstReadEOF, which also suggests TLS.
		var eof *kgo.ErrFirstReadEOF
		if err := pingFails(t, cfg); !errors.As(err, &eof) && !strings.Contains(err.Error(), "plaintext connection speaking to a tls endpoint") {
			t.Errorf("got %v (%T), want an error saying the broker speaks TLS", err, err)
		}
	})
	t.Run("TLS without the CA", func(t *testing.T) {
		cfg := k.Config("SCRAM-SHA-512")
		cfg.TLSCAFile = "" // the system roots, which do not hold the throwaway CA
		var unknown x509.UnknownAuthorityError
		if err := pingFails(t, cfg); !errors.As(err, &unknown) {
			t.Errorf("got %v (%T), want x509.UnknownAuthorityError", err, err)
		}
	})
}

// The omnisync binary reaches the SASL_SSL listener with its flags and with
// its environment variables, says why when the password is wrong, and
// reaches the mutual-TLS listener with its client certificate.
func TestSecureKafkaCommandLine(t *testing.T) {
	k := testenv.RealSecureKafka(t)
	bin := testenv.Binary(t)
	run := func(t *testing.T, env []string, args ...string) (string, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		// Only what the test gives: no OMNISYNC_KAFKA_* from the caller.
		cmd.Env = append([]string{"HOME=" + t.TempDir(), "PATH=/usr/bin:/bin"}, env...)
		out, err := cmd.CombinedOutput()
		if ctx.Err() != nil {
			t.Fatalf("omnisync %s did not finish within 90s:\n%s", strings.Join(args, " "), out)
		}
		return string(out), err
	}
	login := []string{"OMNISYNC_KAFKA_SASL_USER=" + k.User, "OMNISYNC_KAFKA_SASL_PASSWORD=" + k.Password}
	flags := []string{"--brokers", strings.Join(k.Brokers, ","), "--sasl-mechanism", "SCRAM-SHA-512", "--tls", "--tls-ca", k.CAFile, "--log-level", "warn"}

	// Flags: create omnisync's topics with the default layout (rerunning on
	// a broker that has them reports them "ok").
	out, err := run(t, login, append([]string{"topics", "create"}, flags...)...)
	if err != nil {
		t.Fatalf("omnisync topics create: %v\n%s", err, out)
	}
	for _, spec := range kafka.DefaultLayout.Topics() {
		if !strings.Contains(out, "created  "+spec.Name+"\n") && !strings.Contains(out, "ok       "+spec.Name+"\n") {
			t.Errorf("omnisync topics create did not report %s created or ok:\n%s", spec.Name, out)
		}
	}

	// Environment: describe them.
	env := append([]string{
		"OMNISYNC_KAFKA_BROKERS=" + strings.Join(k.Brokers, ","),
		"OMNISYNC_KAFKA_SASL_MECHANISM=SCRAM-SHA-256",
		"OMNISYNC_KAFKA_TLS=true",
		"OMNISYNC_KAFKA_TLS_CA=" + k.CAFile,
	}, login...)
	// Topics created a moment ago may not be in the broker's metadata yet
	// (describe prints them "missing"): ask again for a while.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		out, err = run(t, env, "topics", "describe", "--log-level", "warn")
		if err != nil {
			t.Fatalf("omnisync topics describe: %v\n%s", err, out)
		}
		if !strings.Contains(out, "missing") || time.Now().After(deadline) {
			break
		}
	}
	for _, spec := range kafka.DefaultLayout.Topics() {
		row := regexp.MustCompile(fmt.Sprintf(`(?m)^%s +%d +1 `, regexp.QuoteMeta(spec.Name), spec.Partitions))
		if !row.MatchString(out) {
			t.Errorf("omnisync topics describe does not list %s with %d partitions and 1 replica:\n%s", spec.Name, spec.Partitions, out)
		}
	}

	// A wrong password makes the command fail, naming the cause.
	bad := []string{"OMNISYNC_KAFKA_SASL_USER=" + k.User, "OMNISYNC_KAFKA_SASL_PASSWORD=wrong"}
	out, err = run(t, bad, append([]string{"topics", "describe"}, flags...)...)
	if err == nil {
		t.Fatalf("omnisync topics describe with a wrong password succeeded:\n%s", out)
	}
	if !strings.Contains(out, kerr.SaslAuthenticationFailed.Message) {
		t.Errorf("omnisync topics describe with a wrong password: %v; output does not name %s:\n%s", err, kerr.SaslAuthenticationFailed.Message, out)
	}

	if len(k.MTLSBrokers) == 0 {
		t.Logf("NOTE: no mutual-TLS listener (OMNISYNC_TEST_KAFKA_SECURE_MTLS): --tls-cert-key not run")
		return
	}
	mtlsFlags := []string{"--brokers", strings.Join(k.MTLSBrokers, ","), "--tls", "--tls-ca", k.CAFile, "--tls-cert-key", k.ClientCertKey}
	mtlsEnv := []string{
		"OMNISYNC_KAFKA_BROKERS=" + strings.Join(k.MTLSBrokers, ","),
		"OMNISYNC_KAFKA_TLS=true",
		"OMNISYNC_KAFKA_TLS_CA=" + k.CAFile,
		"OMNISYNC_KAFKA_TLS_CERT_KEY=" + k.ClientCertKey,
	}
	for _, how := range []struct {
		name       string
		env, flags []string
	}{{"--tls-cert-key", nil, mtlsFlags}, {"OMNISYNC_KAFKA_TLS_CERT_KEY", mtlsEnv, nil}} {
		out, err = run(t, how.env, append([]string{"topics", "describe", "--log-level", "warn"}, how.flags...)...)
		if err != nil {
			t.Fatalf("omnisync topics describe with %s: %v\n%s", how.name, err, out)
		}
		if row := regexp.MustCompile(`(?m)^_schemas +1 +1 `); !row.MatchString(out) {
			t.Errorf("omnisync topics describe with %s does not list _schemas:\n%s", how.name, out)
		}
	}
}
