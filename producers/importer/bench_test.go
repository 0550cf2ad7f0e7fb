package importer_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/producers/importer"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/schemas"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// BenchmarkImportCSV imports a CSV file of 2,000 profiles per iteration
// (batches of 500, each acknowledged by Kafka) beside its baseline: the
// same number of customer events, encoded once beforehand, produced in
// batches of 500 with kafka.ProduceAndWait, the floor of the produce path
// on this machine and broker. Both report rows/s.
func BenchmarkImportCSV(b *testing.B) {
	const rows, batch = 2000, 500
	k := testenv.AnyKafka(b)
	ctx := context.Background()
	cl, err := kafka.NewClient(k.Config())
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	if _, err := kafka.Provision(ctx, kadm.NewClient(cl), kafka.DefaultLayout.Topics()); err != nil {
		b.Fatal(err)
	}
	reg, _ := testenv.Registry(b)
	serde, err := codec.New(ctx, reg)
	if err != nil {
		b.Fatal(err)
	}
	dir, err := ingest.NewDirectory(k.Config(), serde, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go dir.Run(dctx)
	<-dir.Ready()
	p := ingest.New(ingest.Config{Client: cl, Serde: serde, Directory: dir})
	source := testenv.UniqueName(b, "bench")
	var csv strings.Builder
	csv.WriteString("id,name,phone,email,vip_level\n")
	for i := range rows {
		fmt.Fprintf(&csv, "B%d,Name %d,1380%07d,u%d@example.com,%d\n", i, i, i, i, i%10)
	}
	path := filepath.Join(b.TempDir(), "bench.csv")
	if err := os.WriteFile(path, []byte(csv.String()), 0o600); err != nil {
		b.Fatal(err)
	}

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
}
