package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/httpauth"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/pkg/normalize"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/schemas"
)

// benchChannel takes a JSON array of {customer_id, id, text} chat lines.
type benchChannel struct{}

func (benchChannel) Channel() events.Channel            { return events.ChannelWeb }
func (benchChannel) Authenticate(r *http.Request) error { return httpauth.CheckBearer(r, "k") }
func (benchChannel) Parse(_ *http.Request, body []byte) (*ingest.Batch, error) {
	var lines []struct{ CustomerID, ID, Text string }
	if err := json.Unmarshal(body, &lines); err != nil {
		return nil, normalize.Invalid("", "%v", err)
	}
	b := &ingest.Batch{}
	for _, l := range lines {
		b.Messages = append(b.Messages, &events.MessageEvent{CustomerID: l.CustomerID, SourceMessageID: &l.ID,
			Direction: events.DirectionInbound, SenderType: events.SenderCustomer, ContentType: events.ContentText, Text: &l.Text})
	}
	return b, nil
}

// BenchmarkIngest measures events/s through the HTTP ingest path (parse,
// resolve, encode, produce with acks=all, answer) with 8 concurrent clients
// posting 20 chat lines each, beside kcat producing the same number of
// already-encoded records to the same broker with acks=all and idempotence.
func BenchmarkIngest(b *testing.B) {
	k := testenv.AnyKafka(b)
	kcat := testenv.Kcat(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
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
	go dir.Run(ctx)
	<-dir.Ready()
	p := ingest.New(ingest.Config{Client: cl, Serde: serde, Directory: dir})
	srv := httptest.NewServer(p.Handler(benchChannel{}))
	defer srv.Close()

	const perRequest, clients = 20, 8
	run := 0
	body := func(req int) []byte {
		lines := make([]map[string]string, perRequest)
		for i := range lines {
			lines[i] = map[string]string{"CustomerID": fmt.Sprintf("cus_bench_%04d", (req*perRequest+i)%1000),
				"ID": fmt.Sprintf("bench-%d-%d-%d", run, req, i), "Text": "您好，我的订单什么时候发货？"}
		}
		out, _ := json.Marshal(lines)
		return out
	}

	b.Run(k.Backend+"/baseline=kcat", func(b *testing.B) {
		var input bytes.Buffer
		const delim = "\x1e<omnisync-record>\x1e"
		n := 0
		for i := range 2000 {
			m := &events.MessageEvent{MessageID: fmt.Sprintf("kcat-%d", i), CustomerID: fmt.Sprintf("cus_bench_%04d", i%1000),
				Channel: events.ChannelWeb, Source: "bench", ContentType: events.ContentText, OccurredAt: time.Now(), IngestedAt: time.Now()}
			v, err := serde.Encode(m)
			if err != nil {
				b.Fatal(err)
			}
			if bytes.Contains(v, []byte(delim)) || bytes.Contains(v, []byte("\t")) {
				continue
			}
			fmt.Fprintf(&input, "%s\t%s%s", m.CustomerID, v, delim)
			n++
		}
		var events int
		start := time.Now()
		for b.Loop() {
			cmd := exec.Command(kcat, "-P", "-b", strings.Join(k.Brokers, ","), "-t", schemas.CustomerMessagesTopic,
				"-K", "\t", "-D", delim, "-X", "acks=all", "-X", "enable.idempotence=true", "-X", "partitioner=murmur2_random")
			cmd.Stdin = bytes.NewReader(input.Bytes())
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("kcat: %v\n%s", err, out)
			}
			events += n
		}
		b.ReportMetric(float64(events)/time.Since(start).Seconds(), "events/s")
	})

	b.Run(k.Backend+"/omnisync-http", func(b *testing.B) {
		var events int
		start := time.Now()
		for b.Loop() {
			run++
			var wg sync.WaitGroup
			const requests = 100 // 2000 events per iteration, like the baseline
			work := make(chan int, requests)
			for i := range requests {
				work <- i
			}
			close(work)
			for range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range work {
						req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body(i)))
						req.Header.Set("Authorization", "Bearer k")
						resp, err := http.DefaultClient.Do(req)
						if err != nil {
							b.Error(err)
							return
						}
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							b.Errorf("status %d", resp.StatusCode)
						}
					}
				}()
			}
			wg.Wait()
			events += requests * perRequest
		}
		b.ReportMetric(float64(events)/time.Since(start).Seconds(), "events/s")
	})
}

// BenchmarkIngestConcurrent measures the HTTP ingest path with 32
// concurrent clients posting requests of 1 and of 100 chat lines, on the
// embedded broker (kfake, as `omnisync dev` runs) and on the real Kafka
// (OMNISYNC_TEST_KAFKA). It reports events/s and the request latency p50
// and p99, beside a raw franz-go client (acks=all) producing the same
// records from 32 goroutines with ProduceSync: one record per call for
// batch=1 (each record acknowledged before the next), 100 per call for
// batch=100 (the records of a call in flight together). At batch=100 kcat
// (librdkafka, acks=all, idempotent) also produces them all asynchronously,
// and http-only posts the same requests to a handler that only reads them.
func BenchmarkIngestConcurrent(b *testing.B) {
	backends := []testenv.Kafka{testenv.Embedded(b, "")}
	if os.Getenv("OMNISYNC_TEST_KAFKA") != "" {
		backends = append(backends, testenv.RealKafka(b))
	}
	for _, k := range backends {
		benchIngestConcurrent(b, k)
	}
}

func benchIngestConcurrent(b *testing.B, k testenv.Kafka) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
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
	go dir.Run(ctx)
	<-dir.Ready()
	p := ingest.New(ingest.Config{Client: cl, Serde: serde, Directory: dir})
	srv := httptest.NewServer(p.Handler(benchChannel{}))
	defer srv.Close()
	noop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
	}))
	defer noop.Close()
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	raw, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()

	const clients = 32
	run := time.Now().UnixNano() // request IDs differ between runs
	for _, batch := range []int{1, 100} {
		requests := 20 // per client and round
		if batch == 100 {
			requests = 2
		}
		perRound := clients * requests * batch
		// The records the HTTP path writes, encoded once for the baselines.
		records := make([]*kgo.Record, perRound)
		for i := range records {
			m := &events.MessageEvent{MessageID: fmt.Sprintf("raw-%d-%d", run, i), CustomerID: fmt.Sprintf("cus_bench_%04d", i%1000),
				Channel: events.ChannelWeb, Source: "producer/web@bench", Direction: events.DirectionInbound, SenderType: events.SenderCustomer,
				ContentType: events.ContentText, Text: ptr("您好，我的订单什么时候发货？"), OccurredAt: time.Now(), IngestedAt: time.Now()}
			v, err := serde.Encode(m)
			if err != nil {
				b.Fatal(err)
			}
			records[i] = &kgo.Record{Topic: schemas.CustomerMessagesTopic, Key: []byte(m.CustomerID), Value: v}
		}
		name := fmt.Sprintf("%s/batch=%d/", k.Backend, batch)

		b.Run(name+"baseline=franz-go", func(b *testing.B) {
			runClients(b, clients, requests, batch, func(client, req int) error {
				start := (client*requests + req) * batch
				recs := make([]*kgo.Record, batch)
				for i := range recs { // a fresh copy: a produced record is not reused
					r := *records[start+i]
					recs[i] = &r
				}
				return raw.ProduceSync(ctx, recs...).FirstErr()
			})
		})

		// post sends one request of batch chat lines to url.
		var seq atomic.Int64
		post := func(url string, client int) error {
			id := seq.Add(1)
			lines := make([]map[string]string, batch)
			for i := range lines {
				lines[i] = map[string]string{"CustomerID": fmt.Sprintf("cus_bench_%04d", (client*batch+i)%1000),
					"ID": fmt.Sprintf("c-%d-%d-%d", run, id, i), "Text": "您好，我的订单什么时候发货？"}
			}
			body, _ := json.Marshal(lines)
			r, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
			r.Header.Set("Authorization", "Bearer k")
			resp, err := httpc.Do(r)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		}
		b.Run(name+"omnisync-http", func(b *testing.B) {
			runClients(b, clients, requests, batch, func(client, _ int) error { return post(srv.URL, client) })
		})
		// The same requests to a handler that only reads the body: what
		// HTTP itself costs on this machine, the floor of omnisync-http.
		b.Run(name+"http-only", func(b *testing.B) {
			runClients(b, clients, requests, batch, func(client, _ int) error { return post(noop.URL, client) })
		})

		if batch == 100 {
			b.Run(name+"librdkafka-kcat-async", func(b *testing.B) {
				kcat := testenv.Kcat(b)
				var input bytes.Buffer
				const delim = "\x1e<omnisync-record>\x1e"
				n := 0
				for _, r := range records {
					if bytes.Contains(r.Value, []byte(delim)) || bytes.Contains(r.Value, []byte("\t")) {
						continue
					}
					fmt.Fprintf(&input, "%s\t%s%s", r.Key, r.Value, delim)
					n++
				}
				var events int
				start := time.Now()
				for b.Loop() {
					cmd := exec.Command(kcat, "-P", "-b", strings.Join(k.Brokers, ","), "-t", schemas.CustomerMessagesTopic,
						"-K", "\t", "-D", delim, "-X", "acks=all", "-X", "enable.idempotence=true", "-X", "partitioner=murmur2_random")
					cmd.Stdin = bytes.NewReader(input.Bytes())
					if out, err := cmd.CombinedOutput(); err != nil {
						b.Fatalf("kcat: %v\n%s", err, out)
					}
					events += n
				}
				b.ReportMetric(float64(events)/time.Since(start).Seconds(), "events/s")
			})
		}
	}
}

// runClients runs rounds of clients goroutines, each calling do requests
// times, and reports events/s, the p50 and p99 of do's latency, and the
// process's CPU time per event (clients, server and an embedded broker
// together).
func runClients(b *testing.B, clients, requests, batch int, do func(client, req int) error) {
	var mu sync.Mutex
	var lat []time.Duration
	var events int
	start, cpu0 := time.Now(), cpuTime()
	for b.Loop() {
		var wg sync.WaitGroup
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for req := range requests {
					t0 := time.Now()
					if err := do(c, req); err != nil {
						b.Error(err)
						return
					}
					d := time.Since(t0)
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		events += clients * requests * batch
	}
	b.ReportMetric(float64(events)/time.Since(start).Seconds(), "events/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/1e3/float64(events), "cpu-µs/event")
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2])/1e6, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100])/1e6, "p99-ms")
	}
}

func ptr[T any](v T) *T { return &v }

// cpuTime returns the CPU time the process (clients, server and the
// embedded broker alike) has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
