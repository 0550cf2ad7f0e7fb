package testenv

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
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
