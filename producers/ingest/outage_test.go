package ingest_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/schemas"
)

// While the broker is down, requests get 503 with Retry-After, never a 2xx;
// once it is back, every event that got a 2xx is in Kafka. On the embedded
// broker (closed and restarted) and on a real one-node Apache Kafka
// (stopped and started with scripts/kafka.sh).
func TestBrokerOutageAnswers503AndLosesNothing(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		dataDir, addr := t.TempDir(), testenv.FreeAddr(t)
		var broker *kafka.Embedded
		start := func() {
			b, err := kafka.StartEmbedded(kafka.EmbeddedConfig{DataDir: dataDir, Listen: addr})
			if err != nil {
				t.Fatal(err)
			}
			broker = b
		}
		start()
		defer func() { broker.Close() }()
		outage(t, testenv.Kafka{Backend: "embedded", Brokers: []string{addr}}, func() { broker.Close() }, start)
	})
	t.Run("real Kafka", func(t *testing.T) {
		c := testenv.KafkaNodes(t, 1)
		outage(t, c.Kafka, func() { c.StopNode(t, 1, true) }, func() { c.StartNode(t, 1) })
	})
}

func outage(t *testing.T, k testenv.Kafka, stop, start func()) {
	r := newRig(t, k)
	cid := testenv.UniqueName(t, "cus")
	accepted := map[string]bool{}
	var unavailable int
	post := func(i int) {
		resp, body := r.post(t, "k", fmt.Sprintf(`{"CustomerID":%q,"Phone":"+8613800138000","MsgID":"outage-%d","Text":"%d"}`, cid, i, i))
		switch resp.StatusCode {
		case http.StatusOK:
			accepted[body["messages"].([]any)[0].(string)] = true
		case http.StatusServiceUnavailable:
			if resp.Header.Get("Retry-After") == "" {
				t.Fatal("503 without Retry-After")
			}
			unavailable++
		default:
			t.Fatalf("request %d: status %d %v", i, resp.StatusCode, body)
		}
	}
	i := 0
	for ; i < 20; i++ {
		post(i)
	}
	stop()
	deadline := time.Now().Add(8 * time.Second)
	for ; time.Now().Before(deadline); i++ {
		post(i)
	}
	if unavailable == 0 {
		t.Fatal("no 503 while the broker was down")
	}
	start()
	// After the restart the clients reconnect; the first requests may still
	// be refused.
	before := len(accepted)
	for deadline := time.Now().Add(60 * time.Second); len(accepted) < before+20 && time.Now().Before(deadline); i++ {
		post(i)
	}
	t.Logf("%d requests accepted, %d answered 503 during the outage", len(accepted), unavailable)

	got := map[string]bool{}
	for _, rec := range r.topicRecords(t, schemas.CustomerMessagesTopic) {
		var m events.MessageEvent
		if err := r.serde.Decode(context.Background(), rec.Value, &m); err != nil {
			continue // another test shares the topic (the materializer tests write poison records)
		}
		got[m.MessageID] = true
	}
	for id := range accepted {
		if !got[id] {
			t.Errorf("message %s was answered 200 but is not in Kafka", id)
		}
	}
	if len(accepted) < 40 {
		t.Fatalf("only %d requests accepted; want the 20 before and 20 after the outage at least", len(accepted))
	}
}
