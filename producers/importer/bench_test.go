package importer_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/producers/hashes"
	"github.com/omnisync/omnisync/producers/importer"
	"github.com/omnisync/omnisync/schemas"
)

// BenchmarkImportCSV imports a CSV file of 2,000 profiles per iteration
// (batches of 500, each acknowledged by Kafka) beside its baseline: the
// same number of customer events, encoded once beforehand, produced in
// batches of 500 with kafka.ProduceAndWait, the floor of the produce path
// on this machine and broker. import-unchanged imports the file again with
// the source's hashes (package hashes), opened each time as omnisync
// import does: every row is unchanged and nothing is produced. All report
// rows/s.
func BenchmarkImportCSV(b *testing.B) {
	const rows, batch = 2000, 500
	k := testenv.AnyKafka(b)
	ctx := context.Background()
	p, serde := pipeline(b, k)
	cl, err := kafka.NewClient(k.Config())
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	source := testenv.UniqueName(b, "bench")
	path := csvFile(b, rows)

	b.Run(k.Backend+"/baseline=produce-encoded", func(b *testing.B) {
		name, phone := "Name", "+8613800000000"
		ev := &events.CustomerEvent{EventID: "x", CustomerID: "cus_bench", Channel: events.ChannelImport, Source: "bench", Op: events.OpUpsert,
			OccurredAt: time.Now(), IngestedAt: time.Now(), Profile: &events.Profile{Name: &name, Phone: &phone, Attributes: map[string]string{}}, Clears: []string{}}
		value, err := serde.Encode(ev)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			for i := 0; i < rows; i += batch {
				recs := make([]*kgo.Record, batch)
				for j := range recs {
					recs[j] = &kgo.Record{Topic: schemas.CustomerEventsTopic, Key: fmt.Appendf(nil, "cus_bench_%d", i+j), Value: value}
				}
				if err := kafka.ProduceAndWait(ctx, cl, recs...); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run(k.Backend+"/import", func(b *testing.B) {
		for b.Loop() {
			sum, err := importer.Run(ctx, p, path, importer.Options{Format: "csv", Source: source, BatchSize: batch})
			if err != nil || sum.Imported != rows {
				b.Fatalf("%+v %v", sum, err)
			}
		}
		b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run(k.Backend+"/import-unchanged", func(b *testing.B) {
		src := testenv.UniqueName(b, "bench-hashes")
		run := func() importer.Summary {
			store, err := hashes.Open(ctx, k.Config(), "", src)
			if err != nil {
				b.Fatal(err)
			}
			defer store.Close()
			sum, err := importer.Run(ctx, p, path, importer.Options{Format: "csv", Source: src, BatchSize: batch, Hashes: store})
			if err != nil {
				b.Fatal(err)
			}
			return sum
		}
		if sum := run(); sum.Imported != rows {
			b.Fatalf("first import: %+v", sum)
		}
		for b.Loop() {
			if sum := run(); sum.Unchanged != rows || sum.Imported != 0 {
				b.Fatalf("%+v", sum)
			}
		}
		b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
	})
}
