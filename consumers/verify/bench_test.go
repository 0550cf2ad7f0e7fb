package verify_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/consumers/store/sqlite"
	"github.com/omnisync/omnisync/consumers/verify"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/schemas"
)

// BenchmarkVerifyMemory shows that verify's memory does not grow with the
// log: the same number of customers (OMNISYNC_BENCH_VERIFY_CUSTOMERS,
// default 50,000) with a log of 100k events (the baseline) and of
// OMNISYNC_BENCH_VERIFY_EVENTS events (default 1,000,000), each
// materialized into SQLite on the real Kafka and then verified against the
// log. It reports the peak heap in use and the peak RSS during
// verify.AgainstLog, the mean live heap over its run, and its seconds;
// benchratio prints the large log's figures beside the baseline's. With
// OMNISYNC_BENCH_VERIFY_PPROF=DIR it writes a heap profile to DIR every
// 10 s of each verification. (It produces its logs to the shared topics:
// other tests that start meanwhile fold them too.)
func BenchmarkVerifyMemory(b *testing.B) {
	large, customers := benchEnv(b, "OMNISYNC_BENCH_VERIFY_EVENTS", 1_000_000), benchEnv(b, "OMNISYNC_BENCH_VERIFY_CUSTOMERS", 50_000)
	r := newRig(b)
	b.Run("baseline=100k-events", func(b *testing.B) { benchVerify(b, r, customers, 100_000) })
	b.Run(fmt.Sprintf("%dk-events", large/1000), func(b *testing.B) { benchVerify(b, r, customers, large) })
}

// benchEnv is the positive number in the environment variable name, else def.
func benchEnv(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

func benchVerify(b *testing.B, r *rig, customers, n int) {
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "omnisync.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	group := testenv.UniqueName(b, "bench")
	start := r.ends(b)
	if err := st.Apply(ctx, &store.Batch{Group: group, Offsets: start}); err != nil {
		b.Fatal(err)
	}
	prefix := testenv.UniqueName(b, "cus")
	r.produceLog(b, prefix, customers, n)
	r.materialize(b, group, st, time.Duration(n/100)*time.Second+time.Minute)
	cfg := verify.Config{Kafka: r.k.Config(), Serde: r.serde, Group: group, From: start, TempDir: b.TempDir(), Logger: benchLogger(b)}

	var peakHeap, peakLive, meanLive, peakRSS float64
	for b.Loop() {
		b.StopTimer()
		runtime.GC()
		debug.FreeOSMemory()
		resetPeakRSS(b)
		b.StartTimer()
		stop := sampleHeap()
		stopProfiles := heapProfiles(b, n)
		rep, err := verify.AgainstLog(ctx, cfg, st)
		stopProfiles()
		heap, live, mean := stop()
		if err != nil {
			b.Fatal(err)
		}
		// Other tests' customers on the shared topics may differ (a delete
		// and a message racing across the topics, docs/design.md, Verify).
		for _, d := range rep.Differ {
			if strings.HasPrefix(d.CustomerID, prefix) {
				b.Fatalf("%s: %s; want every customer of the benchmark to agree", rep.Summary(), d)
			}
			b.Logf("another test's customer differs: %s", d)
		}
		if rep.Agree == 0 {
			b.Fatalf("%s: want the benchmark's customers to agree", rep.Summary())
		}
		peakHeap, peakLive, meanLive, peakRSS = max(peakHeap, heap), max(peakLive, live), max(meanLive, mean), max(peakRSS, peakRSSBytes(b))
	}
	b.ReportMetric(peakHeap/(1<<20), "peak-heap-MB")
	b.ReportMetric(peakLive/(1<<20), "peak-live-heap-MB")
	b.ReportMetric(meanLive/(1<<20), "mean-live-heap-MB")
	b.ReportMetric(peakRSS/(1<<20), "peak-rss-MB")
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/verify")
	b.ReportMetric(float64(n), "events")
	b.ReportMetric(recordBytes(b, st), "record-B")
}

// recordBytes is the mean size of the store's records' JSON: with the
// customers fixed, records grow with the events per customer (conflicts,
// identities), and so does what a batch of the fold loads.
func recordBytes(b *testing.B, st *sqlite.Store) float64 {
	var total, n int
	err := st.Scan(ctx, func(r merge.Record, _ []events.MessageEvent) error {
		doc, err := r.MarshalJSON()
		total, n = total+len(doc), n+1
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return float64(total) / float64(max(n, 1))
}

// heapProfiles writes a heap profile every 10 s to
// $OMNISYNC_BENCH_VERIFY_PPROF until stop, when that is set.
func heapProfiles(b *testing.B, n int) (stop func()) {
	dir := os.Getenv("OMNISYNC_BENCH_VERIFY_PPROF")
	if dir == "" {
		return func() {}
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			f, err := os.Create(filepath.Join(dir, fmt.Sprintf("heap-%dk-%03d.pb.gz", n/1000, i)))
			if err != nil {
				b.Error(err)
				return
			}
			if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
				b.Error(err)
			}
			f.Close()
		}
	}()
	return func() { close(done); <-finished }
}

// produceLog produces n events over the customers: 80% profile upserts
// (some key-field conflicts), 20% messages, in batches.
func (r *rig) produceLog(b *testing.B, prefix string, customers, n int) {
	rng := rand.New(rand.NewPCG(1, 2))
	var recs []*kgo.Record
	flush := func() {
		if err := r.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			b.Fatal(err)
		}
		recs = recs[:0]
	}
	channels := []events.Channel{events.ChannelCRM, events.ChannelApp, events.ChannelWeb, events.ChannelWeChat, events.ChannelPhone}
	for i := range n {
		id := fmt.Sprintf("%s_%05d", prefix, rng.IntN(customers))
		at := base.Add(time.Duration(i) * time.Second)
		var v any
		topic := schemas.CustomerEventsTopic
		if rng.IntN(5) == 0 {
			v = message(id, fmt.Sprintf("%s-m%07d", id, i), time.Duration(i)*time.Second, strings.Repeat("x", 40))
			topic = schemas.CustomerMessagesTopic
		} else {
			ev := upsert(id, fmt.Sprintf("%s-e%07d", id, i), time.Duration(i)*time.Second, channels[rng.IntN(len(channels))],
				fmt.Sprintf("name-%d", rng.IntN(50)), fmt.Sprintf("+86138%08d", rng.IntN(3)))
			ev.OccurredAt, ev.IngestedAt = at, at
			v = ev
		}
		value, err := r.serde.Encode(v)
		if err != nil {
			b.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(id), Value: value})
		if len(recs) == 10_000 {
			flush()
		}
	}
	flush()
}

// sampleHeap samples the heap every 5 ms until stop, which returns the
// peak heap in use (objects, live or not yet collected, and fragments),
// the peak live heap (as marked by the last GC) and the mean live heap
// over the samples, in bytes.
func sampleHeap() (stop func() (inUse, live, meanLive float64)) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/gc/heap/live:bytes"}}
	var peak, peakLive, sumLive, samples float64
	var mu sync.Mutex
	done := make(chan struct{})
	finished := make(chan struct{})
	read := func() {
		metrics.Read(sample)
		inUse := float64(sample[0].Value.Uint64() + sample[1].Value.Uint64())
		mu.Lock()
		live := float64(sample[2].Value.Uint64())
		peak, peakLive = max(peak, inUse), max(peakLive, live)
		sumLive, samples = sumLive+live, samples+1
		mu.Unlock()
	}
	go func() {
		defer close(finished)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				read()
			}
		}
	}()
	return func() (float64, float64, float64) {
		close(done)
		<-finished
		read()
		mu.Lock()
		defer mu.Unlock()
		return peak, peakLive, sumLive / samples
	}
}

// resetPeakRSS resets the kernel's peak RSS of the process (Linux).
func resetPeakRSS(b *testing.B) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Logf("NOTE: cannot reset the peak RSS (%v); peak-rss-MB is the process's peak so far", err)
	}
}

// peakRSSBytes is the process's peak RSS (VmHWM) in bytes, 0 where unknown.
func peakRSSBytes(b *testing.B) float64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Logf("NOTE: no /proc/self/status: %v", err)
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err == nil {
				return kb * 1024
			}
		}
	}
	return 0
}

// benchLogger logs verify's phases with OMNISYNC_BENCH_VERIFY_LOG=1.
func benchLogger(b *testing.B) *zap.Logger {
	if os.Getenv("OMNISYNC_BENCH_VERIFY_LOG") == "" {
		return zap.NewNop()
	}
	return zaptest.NewLogger(b)
}
