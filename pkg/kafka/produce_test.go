package kafka_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/kafka"
)

// ProduceAndWait's context bounds the wait: with the broker down the wait
// ends at the deadline, and once the broker is back the record lands all
// the same. (franz-go keeps an unsent record even when its own context
// ends, so this does not tell the two apart; the loss ProduceAndWait
// guards against needs a request in flight when the context ends, which
// the fault runs of make chaos exercise.)
func TestProduceAndWaitReturnsAtTheDeadlineAndTheRecordStillLands(t *testing.T) {
	dataDir, addr := t.TempDir(), testenv.FreeAddr(t)
	broker, err := kafka.StartEmbedded(kafka.EmbeddedConfig{DataDir: dataDir, Listen: addr})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kafka.NewClient(kafka.Config{Brokers: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	topic := testenv.UniqueName(t, "t")
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	if err := kafka.ProduceAndWait(ctx, cl, &kgo.Record{Topic: topic, Value: []byte("before")}); err != nil {
		t.Fatal(err)
	}

	broker.Close()
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = kafka.ProduceAndWait(short, cl, &kgo.Record{Topic: topic, Value: []byte("during")})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("with the broker down: %v, want the wait to end at its deadline", err)
	}
	if broker, err = kafka.StartEmbedded(kafka.EmbeddedConfig{DataDir: dataDir, Listen: addr}); err != nil {
		t.Fatal(err)
	}
	defer broker.Close()

	reader, err := kafka.NewClient(kafka.Config{Brokers: []string{addr}}, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	wait, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var got []string
	for len(got) < 2 && wait.Err() == nil {
		reader.PollFetches(wait).EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	if len(got) != 2 || got[1] != "during" {
		t.Fatalf("records in the topic: %q; the one whose wait timed out must land once the broker is back", got)
	}
}

// ProduceAndWait does not flush, so a client that lingered would hold every
// caller for the linger: NewClient's clients do not linger.
func TestClientDoesNotLinger(t *testing.T) {
	cl, err := kafka.NewClient(kafka.Config{Brokers: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if got := cl.OptValue(kgo.ProducerLinger); got != time.Duration(0) {
		t.Fatalf("producer linger %v, want 0", got)
	}
}
