package kafka_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/pkg/registry"
)

// BenchmarkProduceCompression produces Avro CustomerEvents with acks=all and
// each compression codec, to choose DefaultCompression; "none" is the
// baseline. It reports events/s and the bytes the broker stored per event.
func BenchmarkProduceCompression(b *testing.B) {
	k := testenv.AnyKafka(b)
	fake := srfake.New()
	defer fake.Close()
	reg, err := registry.New([]string{fake.URL()})
	if err != nil {
		b.Fatal(err)
	}
	serde, err := codec.New(context.Background(), reg)
	if err != nil {
		b.Fatal(err)
	}
	const n = 2000
	values := make([][]byte, n)
	keys := make([][]byte, n)
	for i := range values {
		id := fmt.Sprintf("cus_%06d", i%500)
		name, phone, email := fmt.Sprintf("客户 %d", i), fmt.Sprintf("+86138%08d", i), fmt.Sprintf("customer%d@example.com", i)
		ev := &events.CustomerEvent{
			EventID: fmt.Sprintf("2JxZ0n4sYGyWkPqQpNQXy%06d", i), CustomerID: id, Channel: events.ChannelApp,
			Source: "producer/app@bench", Op: events.OpUpsert, OccurredAt: time.UnixMilli(int64(1.7e12) + int64(i)), IngestedAt: time.Now(),
			Identities: []events.Identity{{Kind: "app_user", Value: "u-" + id}, {Kind: "phone", Value: phone}},
			Profile:    &events.Profile{Name: &name, Phone: &phone, Email: &email, Attributes: map[string]string{"app_version": "5.2.1"}},
		}
		if values[i], err = serde.Encode(ev); err != nil {
			b.Fatal(err)
		}
		keys[i] = []byte(id)
	}
	for _, c := range []string{"baseline=none", "snappy", "lz4", "zstd", "gzip"} {
		b.Run(k.Backend+"/"+c, func(b *testing.B) {
			cfg := k.Config()
			cfg.Compression = c
			if c == "baseline=none" {
				cfg.Compression = "none"
			}
			cl, err := kafka.NewClient(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer cl.Close()
			adm := kadm.NewClient(cl)
			topic := testenv.UniqueName(b, "bench")
			if _, err := adm.CreateTopic(context.Background(), 12, -1, nil, topic); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			// Warm up: the first produce to a new topic waits for its metadata.
			for i := range n {
				cl.Produce(ctx, &kgo.Record{Topic: topic, Key: keys[i], Value: values[i]}, nil)
			}
			if err := cl.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			var produced int
			start := time.Now()
			for b.Loop() {
				for i := range n {
					cl.Produce(ctx, &kgo.Record{Topic: topic, Key: keys[i], Value: values[i]}, func(_ *kgo.Record, err error) {
						if err != nil {
							b.Error(err)
						}
					})
				}
				if err := cl.Flush(ctx); err != nil {
					b.Fatal(err)
				}
				produced += n
			}
			elapsed := time.Since(start)
			b.ReportMetric(float64(produced)/elapsed.Seconds(), "events/s")
			all, err := adm.DescribeAllLogDirs(ctx, nil)
			if err != nil {
				b.Logf("no stored size: %v", err)
			} else {
				var stored int64
				for _, dirs := range all {
					dirs.EachPartition(func(p kadm.DescribedLogDirPartition) {
						if p.Topic == topic {
							stored += p.Size
						}
					})
				}
				if stored > 0 {
					b.ReportMetric(float64(stored)/float64(produced+n), "stored-B/event")
				}
			}
			_, _ = adm.DeleteTopic(ctx, topic)
		})
	}
}
