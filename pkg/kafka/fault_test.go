package kafka_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/omnisync/omnisync/internal/testenv"
)

// With replication factor 3 and min.insync.replicas 2, an acks=all producer
// keeps going when one broker dies, is refused — never falsely acknowledged —
// when two are down, and every record it was told is stored is readable once
// the brokers are back.
func TestAcksAllAcrossBrokerFailures(t *testing.T) {
	c := testenv.KafkaNodes(t, 3)
	ctx := context.Background()
	cl := newClient(t, c.Kafka, kgo.RequestRetries(3))
	adm := kadm.NewClient(cl)
	topic := faultTopic(t, adm, 3)
	acked := map[string]bool{}
	produce := func(prefix string, n int, timeout time.Duration) (failed int, lastErr error) {
		t.Helper()
		for i := range n {
			v := fmt.Sprintf("%s-%d", prefix, i)
			pctx, cancel := context.WithTimeout(ctx, timeout)
			err := cl.ProduceSync(pctx, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "cus_%d", i), Value: []byte(v)}).FirstErr()
			cancel()
			if err != nil {
				failed++
				lastErr = err
				continue
			}
			acked[v] = true
		}
		return failed, lastErr
	}

	if failed, err := produce("all-up", 50, 30*time.Second); failed > 0 {
		t.Fatalf("%d produces failed with all brokers up: %v", failed, err)
	}
	c.StopNode(t, 3, true)
	if failed, err := produce("one-down", 50, 60*time.Second); failed > 0 {
		t.Fatalf("%d produces failed with one broker down: %v", failed, err)
	}
	c.StopNode(t, 2, false)
	failed, err := produce("two-down", 5, 5*time.Second)
	if failed != 5 {
		t.Fatalf("with two of three brokers down, %d of 5 produces were acknowledged; min.insync.replicas=2 must refuse them", 5-failed)
	}
	t.Logf("with two brokers down, produce fails as it must: %v", err)
	c.StartNode(t, 2)
	c.StartNode(t, 3)
	if failed, err := produce("recovered", 50, 60*time.Second); failed > 0 {
		t.Fatalf("%d produces failed after recovery: %v", failed, err)
	}

	seen := map[string]bool{}
	consumer := newClient(t, c.Kafka, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	pollCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for len(seen) < len(acked) && pollCtx.Err() == nil {
		consumer.PollFetches(pollCtx).EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
	}
	for v := range acked {
		if !seen[v] {
			t.Errorf("acknowledged record %s is missing", v)
		}
	}
	t.Logf("%d acknowledged records, all readable after recovery", len(acked))
}
