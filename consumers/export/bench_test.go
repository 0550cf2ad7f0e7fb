package export_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/omnisync/omnisync/consumers/export"
	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/consumers/store/sqlite"
	"github.com/omnisync/omnisync/pkg/events"
)

// BenchmarkExportMemory shows that an export's memory does not grow with
// the store: each format exports a SQLite store of 2,000 customers (the
// baseline) and one of OMNISYNC_BENCH_EXPORT_CUSTOMERS (default 20,000),
// each customer with a full profile and two messages. It reports the peak
// live heap during the export above the heap before it (peak-heap-MB) and
// the customers written per second; benchratio prints the large store's
// figures beside the baseline's.
func BenchmarkExportMemory(b *testing.B) {
	large := 20_000
	if v := os.Getenv("OMNISYNC_BENCH_EXPORT_CUSTOMERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("OMNISYNC_BENCH_EXPORT_CUSTOMERS=%q: want a positive number of customers", v)
		}
		large = n
	}
	small := benchStore(b, 2_000)
	big := benchStore(b, large)
	for _, o := range []export.Options{{Format: "csv"}, {Format: "jsonl", WithMessages: true}, {Format: "xml", WithMessages: true}, {Format: "avro"}, {Format: "avro", WithMessages: true}} {
		name := o.Format
		if o.WithMessages {
			name += "+messages"
		}
		b.Run(name+"/baseline=2k-customers", func(b *testing.B) { benchExport(b, small, o) })
		b.Run(fmt.Sprintf("%s/%dk-customers", name, large/1000), func(b *testing.B) { benchExport(b, big, o) })
	}
}

func benchExport(b *testing.B, st *sqlite.Store, o export.Options) {
	var peak, customers float64
	start := time.Now()
	for range b.N {
		runtime.GC()
		before := liveHeap()
		stop := sampleHeap()
		sum, err := export.Write(context.Background(), st, io.Discard, o)
		if err != nil {
			b.Fatal(err)
		}
		peak = max(peak, float64(stop()-before)/(1<<20))
		customers += float64(sum.Customers)
	}
	b.ReportMetric(peak, "peak-heap-MB")
	b.ReportMetric(customers/time.Since(start).Seconds(), "customers/s")
}

func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// sampleHeap samples the heap every millisecond until stop, which returns
// the highest figure seen.
func sampleHeap() (stop func() uint64) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var peak uint64
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, liveHeap())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(done); wg.Wait(); return peak }
}

// benchStore is a SQLite store of n customers with full profiles and two
// messages each.
func benchStore(b *testing.B, n int) *sqlite.Store {
	b.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	p := merge.DefaultPolicy()
	batch := &store.Batch{Group: "bench", PolicyHash: p.Hash()}
	for i := range n {
		id := fmt.Sprintf("cus_%07d", i)
		level, gender := int32(i%10), events.GenderMale
		r, _ := merge.Apply(merge.Record{CustomerID: id}, &events.CustomerEvent{EventID: id + "-e", CustomerID: id, Channel: events.ChannelCRM,
			Source: "crm", Op: events.OpUpsert, OccurredAt: t0, IngestedAt: t0, Profile: &events.Profile{
				Name: ptr("客户 " + id), Phone: ptr(fmt.Sprintf("+86138%08d", i)), Email: ptr(id + "@example.com"), Gender: &gender,
				VIPLevel: &level, Tags: []string{"vip", "t" + strconv.Itoa(i%50)}, Address: &events.Address{Country: "CN", City: "上海", Street: "南京路 100 号"},
				Attributes: map[string]string{"industry": "retail", "owner": "agent-" + strconv.Itoa(i%20)}}}, p)
		for j := range 2 {
			text := "您好，我想查询订单 " + id
			m := events.MessageEvent{MessageID: fmt.Sprintf("%s-m%d", id, j), CustomerID: id, Channel: events.ChannelWeb, Source: "web",
				Direction: events.DirectionInbound, SenderType: events.SenderCustomer, ContentType: events.ContentText,
				Text: &text, OccurredAt: t0.Add(time.Duration(j+1) * time.Minute), IngestedAt: t0}
			r, _ = merge.ApplyMessage(r, &m, p)
			batch.Messages = append(batch.Messages, m)
		}
		batch.Records = append(batch.Records, r)
		if len(batch.Records) == 500 || i == n-1 {
			if err := st.Apply(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = &store.Batch{Group: "bench", PolicyHash: p.Hash()}
		}
	}
	return st
}
