package kafka_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/kafka"
)

// startBrokerProcess runs `omnisync broker` as a process on addr.
func startBrokerProcess(t *testing.T, dataDir, addr string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(testenv.Binary(t), "broker", "--data-dir", dataDir, "--listen", addr, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	testenv.WaitListening(t, addr, 30*time.Second)
	return cmd
}

// committedOffsets returns the group's committed offset per partition.
func committedOffsets(t *testing.T, adm *kadm.Client, group string) map[int32]int64 {
	t.Helper()
	resp, err := adm.FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Err != nil {
			t.Fatalf("offset of %s/%d: %v", o.Topic, o.Partition, o.Err)
		}
		out[o.Partition] = o.At
	})
	return out
}

// The embedded broker, killed with SIGKILL while producers stream to it,
// comes back with every record it acknowledged, its topics and the group's
// committed offsets.
func TestEmbeddedBrokerSurvivesKill9(t *testing.T) {
	dataDir := t.TempDir()
	addr := testenv.FreeAddr(t)
	broker := startBrokerProcess(t, dataDir, addr)
	k := testenv.Kafka{Backend: "embedded process", Brokers: []string{addr}}

	cl := newClient(t, k)
	adm := kadm.NewClient(cl)
	topic := createTopic(t, adm, 4)
	group := testenv.UniqueName(t, "group")

	// A group commits offsets for the first records.
	ctx := context.Background()
	for i := range 20 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "cus_%d", i), Value: fmt.Appendf(nil, "pre-%d", i)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	consumer := newClient(t, k, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	poll(t, consumer, 20)
	if err := consumer.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	consumer.Close()
	wantOffsets := committedOffsets(t, adm, group)

	// Producers stream; the broker is killed mid-stream.
	var mu sync.Mutex
	acked := map[string]bool{}
	streamCtx, stopStream := context.WithCancel(ctx)
	producer := newClient(t, k, kgo.RecordRetries(0))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; streamCtx.Err() == nil; i++ {
			v := fmt.Sprintf("stream-%d", i)
			producer.Produce(streamCtx, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "cus_%d", i%50), Value: []byte(v)}, func(_ *kgo.Record, err error) {
				if err == nil {
					mu.Lock()
					acked[v] = true
					mu.Unlock()
				}
			})
			time.Sleep(200 * time.Microsecond)
		}
	}()
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 2000 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := broker.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = broker.Wait()
	stopStream()
	wg.Wait()
	producer.Close() // fails whatever was still buffered: not acknowledged

	mu.Lock()
	ackedCount := len(acked)
	mu.Unlock()
	t.Logf("%d stream records acknowledged before SIGKILL", ackedCount)

	startBrokerProcess(t, dataDir, addr)
	cl2 := newClient(t, k)
	ends, err := kadm.NewClient(cl2).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total < int64(20+ackedCount) {
		t.Fatalf("after restart the topic holds %d records, but %d were acknowledged", total, 20+ackedCount)
	}
	seen := map[string]bool{}
	for _, r := range consumeN(t, k, topic, int(total)) {
		seen[string(r.Value)] = true
	}
	for v := range acked {
		if !seen[v] {
			t.Errorf("acknowledged record %s lost", v)
		}
	}
	if got := committedOffsets(t, kadm.NewClient(cl2), group); fmt.Sprint(got) != fmt.Sprint(wantOffsets) {
		t.Fatalf("group offsets after restart %v, want %v", got, wantOffsets)
	}
}

// A clean restart of the in-process broker keeps topics, records and offsets.
func TestEmbeddedBrokerRestart(t *testing.T) {
	dataDir := t.TempDir()
	addr := testenv.FreeAddr(t)
	b, err := kafka.StartEmbedded(kafka.EmbeddedConfig{DataDir: dataDir, Listen: addr})
	if err != nil {
		t.Fatal(err)
	}
	k := testenv.Kafka{Backend: "embedded", Brokers: b.Addrs()}
	cl, err := kafka.NewClient(k.Config())
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	topic := createTopic(t, adm, 3)
	ctx := context.Background()
	for i := range 30 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "cus_%d", i), Value: fmt.Appendf(nil, "%d", i)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	group := testenv.UniqueName(t, "group")
	if err := adm.CommitAllOffsets(ctx, group, kadm.Offsets{topic: {0: {Topic: topic, Partition: 0, At: 5}}}); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	b.Close()

	b, err = kafka.StartEmbedded(kafka.EmbeddedConfig{DataDir: dataDir, Listen: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got := len(consumeN(t, k, topic, 30)); got != 30 {
		t.Fatalf("read %d records after restart, want 30", got)
	}
	cl2 := newClient(t, k)
	if got := committedOffsets(t, kadm.NewClient(cl2), group); got[0] != 5 {
		t.Fatalf("committed offset after restart %v, want partition 0 at 5", got)
	}
}
