package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
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
