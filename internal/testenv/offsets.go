package testenv

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/omnisync/omnisync/pkg/kafka"
)

// EndOffsets returns where each partition of the topics ends now, as
// offsets for kgo.ConsumePartitions: a test that consumes from there reads
// the records written since, not those other tests put on shared topics.
func EndOffsets(t testing.TB, cl *kgo.Client, topics ...string) map[string]map[int32]kgo.Offset {
	t.Helper()
	// Topics created a moment ago may not be in the broker's metadata yet.
	var ends kadm.ListedOffsets
	var err error
	for wait := 50 * time.Millisecond; ; wait *= 2 {
		ends, err = kadm.NewClient(cl).ListEndOffsets(context.Background(), topics...)
		if err == nil {
			err = ends.Error()
		}
		if !errors.Is(err, kerr.UnknownTopicOrPartition) || wait > 5*time.Second {
			break
		}
		time.Sleep(wait)
	}
	if err != nil {
		t.Fatalf("listing the end offsets of %v: %v", topics, err)
	}
	out := map[string]map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if out[o.Topic] == nil {
			out[o.Topic] = map[int32]kgo.Offset{}
		}
		out[o.Topic][o.Partition] = kgo.NewOffset().At(o.Offset)
	})
	return out
}

// RecordsSince returns the records written to topic after from (see
// EndOffsets) up to its end now.
func RecordsSince(t testing.TB, k Kafka, topic string, from map[int32]kgo.Offset) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kafka.NewClient(k.Config(), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("listing the end offsets of %s: %v", topic, err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > from[o.Partition].EpochOffset().Offset {
			left[o.Partition] = o.Offset
		}
	})
	var out []*kgo.Record
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: partitions %v not read to their end", topic, left)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := left[r.Partition]; ok {
				out = append(out, r)
				if r.Offset+1 >= end {
					delete(left, r.Partition)
				}
			}
		})
	}
	return out
}
