package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omnisync/omnisync/pkg/events"
)

// Live push at scale: OMNISYNC_BENCH_LIVE_CONNS (default 10,000) SSE
// connections held by another process (this test binary, as
// TestLiveBenchClient: a process may hold 20,000 descriptors here), 1% of
// them following every customer (review queue, dashboard) and the others one
// customer each (an open customer), while changes are published at 500/s
// for 10 s. It reports the delivery latency from the publication (what the
// state-topic follower does for a record the materializer committed) to
// the client reading the frame, p50 and p99 over every delivery, and the
// server's RSS per idle connection. Kafka is not in the loop: the state
// topic's own latency is the materializer's to measure.
func BenchmarkLive(b *testing.B) {
	conns := 10_000
	if v := os.Getenv("OMNISYNC_BENCH_LIVE_CONNS"); v != "" {
		conns, _ = strconv.Atoi(v)
	}
	const rate, seconds = 500, 10
	all := max(conns/100, 1)
	l := &Live{ClientBuffer: 256, Heartbeat: 15 * time.Second, clients: map[*liveClient]struct{}{},
		byCustomer: map[string]map[*liveClient]struct{}{}, seen: map[string]seenState{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: Handler(Config{Live: l, AdminToken: "bench-token"}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // closed below
	defer srv.Close()

	runtime.GC()
	debug.FreeOSMemory()
	before, goroutines := rss(b), runtime.NumGoroutine()
	child := exec.Command(os.Args[0], "-test.run=^TestLiveBenchClient$")
	child.Env = append(os.Environ(), "OMNISYNC_LIVE_BENCH_CLIENT=1", "OMNISYNC_LIVE_BENCH_URL="+ln.Addr().String(),
		fmt.Sprintf("OMNISYNC_LIVE_BENCH_CONNS=%d", conns), fmt.Sprintf("OMNISYNC_LIVE_BENCH_ALL=%d", all))
	child.Stderr = os.Stderr
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	defer child.Process.Kill() //nolint:errcheck // ends with the benchmark
	out := bufio.NewScanner(stdout)
	expect := func(prefix string) string {
		for out.Scan() {
			if line := out.Text(); strings.HasPrefix(line, prefix) {
				return strings.TrimPrefix(line, prefix)
			}
		}
		b.Fatalf("the client process ended before %q: %v", prefix, out.Err())
		return ""
	}
	expect("connected")
	for l.Clients() < conns {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second)
	runtime.GC()
	debug.FreeOSMemory()
	idle := rss(b) - before
	perConn := float64(runtime.NumGoroutine()-goroutines) / float64(conns)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.Logf("idle: %.1f goroutines a connection; stacks %d KiB, heap %d KiB in use", perConn, ms.StackInuse>>10, ms.HeapInuse>>10)
	if path := os.Getenv("OMNISYNC_BENCH_LIVE_HEAP"); path != "" { // what an idle connection holds
		if f, err := os.Create(path); err == nil {
			_ = pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	b.ResetTimer()

	t0 := time.Now().Add(200 * time.Millisecond)
	fmt.Fprintf(stdin, "%d\n", t0.UnixNano())
	filtered := conns - all
	for i := range rate * seconds {
		time.Sleep(time.Until(t0.Add(time.Duration(i) * time.Second / rate)))
		customer := fmt.Sprintf("cus_%d", i%max(filtered, 1))
		l.publish(fmt.Sprintf("0-%d", i), &events.CustomerState{CustomerID: customer, Version: int64(i + 1)}, time.Now())
	}
	time.Sleep(2 * time.Second)
	b.StopTimer()
	fmt.Fprintln(stdin, "done")
	var res struct {
		P50, P99   float64
		Deliveries int
	}
	if err := json.Unmarshal([]byte(expect("result ")), &res); err != nil {
		b.Fatal(err)
	}
	want := rate * seconds * (1 + all)
	if filtered == 0 {
		want = rate * seconds * all
	}
	if res.Deliveries < want {
		b.Logf("%d deliveries of %d: clients that fell more than %d events behind were dropped (told to resync)", res.Deliveries, want, l.ClientBuffer)
	}
	b.ReportMetric(100*float64(res.Deliveries)/float64(want), "delivered-%")
	b.ReportMetric(res.P50, "p50-ms")
	b.ReportMetric(res.P99, "p99-ms")
	b.ReportMetric(float64(idle)/float64(conns)/1024, "KiB/idle-conn")
	b.ReportMetric(perConn, "goroutines/idle-conn")
	b.ReportMetric(float64(res.Deliveries)/seconds, "deliveries/s")
}

// rss is the process's resident set in bytes.
func rss(b *testing.B) int64 {
	s, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		b.Skipf("no /proc/self/statm to read the RSS from: %v", err)
	}
	f := strings.Fields(string(s))
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// TestLiveBenchClient is BenchmarkLive's client process: it opens the
// connections, reports "connected", reads the start time of the schedule
// on stdin and, until "done", times every frame against it.
func TestLiveBenchClient(t *testing.T) {
	if os.Getenv("OMNISYNC_LIVE_BENCH_CLIENT") != "1" {
		t.Skip("the client process of BenchmarkLive; runs only when the benchmark starts it")
	}
	addr := os.Getenv("OMNISYNC_LIVE_BENCH_URL")
	conns, _ := strconv.Atoi(os.Getenv("OMNISYNC_LIVE_BENCH_CONNS"))
	all, _ := strconv.Atoi(os.Getenv("OMNISYNC_LIVE_BENCH_ALL"))
	var t0 atomic.Int64
	var mu sync.Mutex
	var latencies []float64
	var ready sync.WaitGroup
	sem := make(chan struct{}, 100)
	for i := range conns {
		ready.Add(1)
		sem <- struct{}{}
		go func() {
			query := ""
			if i >= all {
				query = fmt.Sprintf("?customer=cus_%d", i-all)
			}
			var c net.Conn
			var err error
			for try := 0; ; try++ {
				if c, err = net.Dial("tcp", addr); err == nil {
					break
				}
				if try == 20 {
					t.Errorf("dial: %v", err)
					<-sem
					ready.Done()
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			fmt.Fprintf(c, "GET /api/v1/live%s HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer bench-token\r\n\r\n", query)
			r := bufio.NewReaderSize(c, 512)
			var mine []float64
			signalled := false
			for {
				line, err := r.ReadSlice('\n')
				if err != nil && err != bufio.ErrBufferFull {
					break
				}
				if !signalled && strings.HasPrefix(string(line), ": connected") {
					signalled = true
					<-sem
					ready.Done()
				}
				if seq, ok := strings.CutPrefix(string(line), "id: 0-"); ok {
					n, _ := strconv.Atoi(strings.TrimSpace(seq))
					sent := t0.Load() + int64(n)*int64(time.Second)/500
					mine = append(mine, float64(time.Now().UnixNano()-sent)/1e6)
					if len(mine) >= 64 {
						mu.Lock()
						latencies = append(latencies, mine...)
						mu.Unlock()
						mine = mine[:0]
					}
				}
				if t0.Load() < 0 {
					break
				}
				if len(mine) > 0 && r.Buffered() == 0 {
					mu.Lock()
					latencies = append(latencies, mine...)
					mu.Unlock()
					mine = mine[:0]
				}
			}
		}()
	}
	ready.Wait()
	fmt.Println("connected")
	in := bufio.NewScanner(os.Stdin)
	if !in.Scan() {
		t.Fatal("no start time on stdin")
	}
	start, _ := strconv.ParseInt(in.Text(), 10, 64)
	t0.Store(start)
	for in.Scan() && in.Text() != "done" {
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[min(len(latencies)-1, int(p*float64(len(latencies))))]
	}
	b, _ := json.Marshal(map[string]any{"P50": pct(0.5), "P99": pct(0.99), "Deliveries": len(latencies)})
	fmt.Printf("result %s\n", b)
}
