package kafka_test

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/kafka"
)

func newClient(t *testing.T, k testenv.Kafka, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kafka.NewClient(k.Config(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func createTopic(t *testing.T, adm *kadm.Client, partitions int32) string {
	t.Helper()
	return newTopic(t, adm, "omnisync-test", partitions, -1, nil, 30*time.Second)
}

// newTopic creates a topic named for the test (prefix first) with the
// given partitions, replication factor (-1: the broker's default) and
// configs, failing the test when that takes longer than timeout.
func newTopic(t *testing.T, adm *kadm.Client, prefix string, partitions int32, replicas int16, configs map[string]*string, timeout time.Duration) string {
	t.Helper()
	topic := testenv.UniqueName(t, prefix)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, partitions, replicas, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("creating topic %s: %v", topic, err)
	}
	return topic
}

// consumeN reads n records from the start of topic, outside any group.
func consumeN(t *testing.T, k testenv.Kafka, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := newClient(t, k, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	return poll(t, cl, n)
}

func poll(t *testing.T, cl *kgo.Client, n int) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("got %d of %d records: %v", len(out), n, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetching %s/%d: %v", topic, p, err) })
		out = append(out, fs.Records()...)
	}
	return out
}

func customerIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("cus_%04d_%x", i, i*7919)
	}
	return ids
}

// Keyed records land on the partition Kafka's murmur2 gives, whether
// omnisync's client or kcat (librdkafka with the Java-compatible
// partitioner) produced them, so every producer agrees where a customer is.
func TestKeyedRecordsLandOnMurmur2Partition(t *testing.T) {
	kcat := testenv.Kcat(t)
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		const partitions = 12
		cl := newClient(t, k)
		topic := createTopic(t, kadm.NewClient(cl), partitions)
		ids := customerIDs(200)

		ctx := context.Background()
		for _, id := range ids {
			cl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(id), Value: []byte("franz-go")}, nil)
		}
		if err := cl.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		var input bytes.Buffer
		for _, id := range ids {
			fmt.Fprintf(&input, "%s\tkcat\n", id)
		}
		cmd := exec.Command(kcat, "-P", "-b", strings.Join(k.Brokers, ","), "-t", topic, "-K", "\t",
			"-X", "partitioner=murmur2_random", "-X", "acks=all")
		cmd.Stdin = &input
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kcat produce: %v\n%s", err, out)
		}

		got := map[string]int{}
		for _, r := range consumeN(t, k, topic, 2*len(ids)) {
			key := string(r.Key)
			if want := testenv.PartitionFor(key, partitions); r.Partition != want {
				t.Errorf("%s record for %s on partition %d, murmur2 says %d", r.Value, key, r.Partition, want)
			}
			got[string(r.Value)]++
		}
		if got["franz-go"] != len(ids) || got["kcat"] != len(ids) {
			t.Fatalf("read %v, want %d of each", got, len(ids))
		}

		// kcat consumes them too and sees the same partitions.
		out, err := exec.Command(kcat, "-C", "-b", strings.Join(k.Brokers, ","), "-t", topic, "-o", "beginning", "-e",
			"-f", "%p\t%k\t%s\n").Output()
		if err != nil {
			t.Fatalf("kcat consume: %v", err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 2*len(ids) {
			t.Fatalf("kcat consumed %d records, want %d", len(lines), 2*len(ids))
		}
		for _, l := range lines {
			var p int32
			var key, value string
			if _, err := fmt.Sscanf(l, "%d\t%s\t%s", &p, &key, &value); err != nil {
				t.Fatalf("kcat line %q: %v", l, err)
			}
			if want := testenv.PartitionFor(key, partitions); p != want {
				t.Errorf("kcat read %s's record on partition %d, murmur2 says %d", key, p, want)
			}
		}
	})
}

// kadm resets a consumer group's offsets to the start and to a timestamp,
// and the group then reads from there.
func TestConsumerGroupOffsetReset(t *testing.T) {
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		ctx := context.Background()
		cl := newClient(t, k)
		adm := kadm.NewClient(cl)
		topic := createTopic(t, adm, 3)
		group := testenv.UniqueName(t, "group")

		base := time.Now().Add(-2 * time.Hour).Truncate(time.Millisecond)
		for i := range 40 {
			ts := base
			if i >= 30 {
				ts = base.Add(time.Hour) // the last ten are an hour newer
			}
			r := &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "cus_%d", i), Value: fmt.Appendf(nil, "%d", i), Timestamp: ts}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}

		consumeGroup := func(want int) {
			t.Helper()
			c := newClient(t, k, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
			recs := poll(t, c, want)
			if len(recs) != want {
				t.Fatalf("group read %d records, want %d", len(recs), want)
			}
			// Nothing more arrives: the group started where it was reset to.
			shortCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if extra := c.PollFetches(shortCtx).Records(); len(extra) > 0 {
				t.Fatalf("group read %d records beyond the %d expected", len(extra), want)
			}
			if err := c.CommitUncommittedOffsets(ctx); err != nil {
				t.Fatal(err)
			}
			c.Close()
		}
		consumeGroup(40)
		lag, err := adm.Lag(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		if total := lag[group].Lag.Total(); total != 0 {
			t.Fatalf("lag after consuming everything: %d", total)
		}

		starts, err := adm.ListStartOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		if err := adm.CommitAllOffsets(ctx, group, starts.Offsets()); err != nil {
			t.Fatalf("resetting to start: %v", err)
		}
		consumeGroup(40)

		after, err := adm.ListOffsetsAfterMilli(ctx, base.Add(30*time.Minute).UnixMilli(), topic)
		if err != nil {
			t.Fatal(err)
		}
		if err := adm.CommitAllOffsets(ctx, group, after.Offsets()); err != nil {
			t.Fatalf("resetting to a timestamp: %v", err)
		}
		consumeGroup(10)
	})
}

// Provisioning creates omnisync's topics with their settings, is harmless
// the second time, and reports an existing topic whose settings differ.
func TestProvisionTopics(t *testing.T) {
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		ctx := context.Background()
		adm := kadm.NewClient(newClient(t, k))
		prefix := testenv.UniqueName(t, "prov") + "."
		specs := kafka.Layout{Partitions: 4}.Topics()
		for i := range specs {
			specs[i].Name = prefix + specs[i].Name
		}
		first, err := kafka.Provision(ctx, adm, specs)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range first {
			if !s.Created {
				t.Errorf("%s not created on the first run", s.Name)
			}
		}
		second, err := kafka.Provision(ctx, adm, specs)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range second {
			if s.Created || len(s.Differences) > 0 {
				t.Errorf("second run: %+v, want an unchanged topic", s)
			}
		}
		details, err := adm.ListTopics(ctx, specs[0].Name)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(details[specs[0].Name].Partitions); n != 4 {
			t.Errorf("%s has %d partitions, want 4", specs[0].Name, n)
		}
		specs[0].Partitions = 8
		specs[0].Configs["retention.ms"] = "1000"
		third, err := kafka.Provision(ctx, adm, specs[:1])
		if err != nil {
			t.Fatal(err)
		}
		if d := third[0].Differences; len(d) != 2 {
			t.Fatalf("differences %q, want partitions and retention.ms", d)
		}
		var buf bytes.Buffer
		if err := kafka.Describe(ctx, adm, specs, &buf); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), specs[1].Name) || !strings.Contains(buf.String(), "retention.ms=-1") {
			t.Fatalf("describe output lacks the topics:\n%s", buf.String())
		}
	})
}
