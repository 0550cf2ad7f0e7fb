package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/httpauth"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/pkg/normalize"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/schemas"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// testChannel is a minimal channel: bearer key "k", a JSON body of
// {"customer_id","phone","msg_id","text","bad"} into one message and,
// with a customer ID, one profile event.
type testChannel struct{}

func (testChannel) Channel() events.Channel { return events.ChannelWeb }

func (testChannel) Authenticate(r *http.Request) error { return httpauth.CheckBearer(r, "k") }

func (testChannel) Parse(_ *http.Request, body []byte) (*ingest.Batch, error) {
	var in struct{ CustomerID, Phone, MsgID, Text, Bad string }
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, normalize.Invalid("", "not JSON: %v", err)
	}
	if in.Bad != "" {
		return nil, normalize.Invalid("bad", "%s", in.Bad)
	}
	phone, err := normalize.Phone("phone", in.Phone)
	if err != nil {
		return nil, err
	}
	ids := []events.Identity{{Kind: "phone", Value: phone, Verified: true}} // as the telephony system vouches for a caller ID
	b := &ingest.Batch{Messages: []*events.MessageEvent{{
		CustomerID: in.CustomerID, SourceMessageID: &in.MsgID, Direction: events.DirectionInbound,
		SenderType: events.SenderCustomer, ContentType: events.ContentText, Text: &in.Text, Identities: ids,
		OccurredAt: time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC),
	}}}
	if in.CustomerID != "" {
		profileID := in.MsgID + "/profile"
		b.Customers = []*events.CustomerEvent{{CustomerID: in.CustomerID, Identities: ids, SourceEventID: &profileID,
			Profile: &events.Profile{Phone: &phone}, OccurredAt: time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)}}
	}
	return b, nil
}

type rig struct {
	k      testenv.Kafka
	serde  *codec.Serde
	server *httptest.Server
	cl     *kgo.Client
	// from is where each topic ended when the test began: the test reads
	// its own records only, not every other test's.
	from map[string]map[int32]kgo.Offset
}

func newRig(t *testing.T, k testenv.Kafka) *rig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cl, err := kafka.NewClient(k.Config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if _, err := kafka.Provision(ctx, kadm.NewClient(cl), kafka.Layout{Partitions: 6}.Topics()); err != nil {
		t.Fatal(err)
	}
	reg, _ := testenv.Registry(t)
	serde, err := codec.New(ctx, reg)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := ingest.NewDirectory(k.Config(), serde, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	go dir.Run(ctx)
	select {
	case <-dir.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("identity directory not ready")
	}
	p := ingest.New(ingest.Config{Client: cl, Serde: serde, Directory: dir, Logger: zaptest.NewLogger(t), ProduceTimeout: 3 * time.Second, MaxBodyBytes: 4096})
	srv := httptest.NewServer(p.Handler(testChannel{}))
	t.Cleanup(srv.Close)
	from := testenv.EndOffsets(t, cl, schemas.CustomerEventsTopic, schemas.CustomerMessagesTopic, schemas.DeadLetterTopic, schemas.IdentitiesTopic)
	return &rig{k: k, serde: serde, server: srv, cl: cl, from: from}
}

func (r *rig) post(t *testing.T, key, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, r.server.URL, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp, out
}

// topicRecords reads the records of a topic written since the test began,
// up to each partition's end when it is called (other tests write to the
// shared topics meanwhile: counting records would stop early on a busy
// partition and miss ours on another).
func (r *rig) topicRecords(t *testing.T, topic string) []*kgo.Record {
	t.Helper()
	ctx := context.Background()
	ends, err := kadm.NewClient(r.cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	behind := map[int32]int64{} // partition → end offset not yet reached
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > r.from[topic][o.Partition].EpochOffset().Offset {
			behind[o.Partition] = o.Offset
		}
	})
	c, err := kafka.NewClient(r.k.Config(), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: r.from[topic]}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(behind) > 0 {
		fs := c.PollFetches(pctx)
		if pctx.Err() != nil {
			t.Fatalf("read %d records of %s; partitions %v not read to their end", len(out), topic, behind)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			end, ok := behind[rec.Partition]
			if !ok || rec.Offset >= end {
				return // read past the end when called
			}
			out = append(out, rec)
			if rec.Offset+1 >= end {
				delete(behind, rec.Partition)
			}
		})
	}
	return out
}

func (r *rig) messagesFor(t *testing.T, customerID string) []events.MessageEvent {
	var out []events.MessageEvent
	for _, rec := range r.topicRecords(t, schemas.CustomerMessagesTopic) {
		var m events.MessageEvent
		if err := r.serde.Decode(context.Background(), rec.Value, &m); err != nil {
			continue // another test shares the topic (the materializer tests write poison records)
		}
		if m.CustomerID == customerID {
			if want := testenv.PartitionFor(string(rec.Key), int32(len(r.from[schemas.CustomerMessagesTopic]))); rec.Partition != want || string(rec.Key) != customerID {
				t.Errorf("message for %s keyed %q on partition %d; want its customer ID on partition %d", customerID, rec.Key, rec.Partition, want)
			}
			out = append(out, m)
		}
	}
	return out
}

func uniquePhone(t *testing.T) string {
	return fmt.Sprintf("+86139%08d", time.Now().UnixNano()%1e8)
}

func TestPipeline(t *testing.T) {
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		r := newRig(t, k)

		t.Run("accepted events are in Kafka, keyed and partitioned by customer ID", func(t *testing.T) {
			cid := testenv.UniqueName(t, "cus")
			resp, body := r.post(t, "k", fmt.Sprintf(`{"CustomerID":%q,"Phone":%q,"MsgID":"m1","Text":"你好"}`, cid, uniquePhone(t)))
			if resp.StatusCode != http.StatusOK || body["accepted"] != float64(2) {
				t.Fatalf("status %d, body %v", resp.StatusCode, body)
			}
			msgs := r.messagesFor(t, cid)
			if len(msgs) != 1 || *msgs[0].Text != "你好" || msgs[0].Channel != events.ChannelWeb || !strings.HasPrefix(msgs[0].Source, "producer/web@") {
				t.Fatalf("messages in Kafka: %+v", msgs)
			}
			if got := body["messages"].([]any)[0]; got != msgs[0].MessageID {
				t.Fatalf("answered message ID %v, Kafka has %s", got, msgs[0].MessageID)
			}
		})

		t.Run("an identity linked once resolves later events to the same customer", func(t *testing.T) {
			cid, phone := testenv.UniqueName(t, "cus"), uniquePhone(t)
			if resp, body := r.post(t, "k", fmt.Sprintf(`{"CustomerID":%q,"Phone":%q,"MsgID":"link-1","Text":"a"}`, cid, phone)); resp.StatusCode != 200 {
				t.Fatalf("%d %v", resp.StatusCode, body)
			}
			if resp, body := r.post(t, "k", fmt.Sprintf(`{"Phone":%q,"MsgID":"link-2","Text":"b"}`, phone)); resp.StatusCode != 200 {
				t.Fatalf("%d %v", resp.StatusCode, body)
			}
			if got := len(r.messagesFor(t, cid)); got != 2 {
				t.Fatalf("customer %s has %d messages, want 2 (the second found through the phone number)", cid, got)
			}
		})

		t.Run("a request whose events show two customers suggests the merge once", func(t *testing.T) {
			phone := uniquePhone(t)
			caller := ingest.CustomerIDFor(events.Identity{Kind: "phone", Value: phone})
			if resp, body := r.post(t, "k", fmt.Sprintf(`{"Phone":%q,"MsgID":"sug-1","Text":"a caller"}`, phone)); resp.StatusCode != 200 {
				t.Fatalf("%d %v", resp.StatusCode, body)
			}
			// A named customer with that number: its profile event and its
			// message both show the caller's number.
			cid := testenv.UniqueName(t, "cus")
			if resp, body := r.post(t, "k", fmt.Sprintf(`{"CustomerID":%q,"Phone":%q,"MsgID":"sug-2","Text":"named"}`, cid, phone)); resp.StatusCode != 200 {
				t.Fatalf("%d %v", resp.StatusCode, body)
			}
			var suggestions []events.CustomerEvent
			for _, rec := range r.topicRecords(t, schemas.CustomerEventsTopic) {
				var ev events.CustomerEvent
				if r.serde.Decode(context.Background(), rec.Value, &ev) == nil && ev.Op == events.OpSuggestMerge &&
					ev.Merge.SurvivorID == min(cid, caller) && ev.Merge.AbsorbedID == max(cid, caller) {
					if string(rec.Key) != ev.Merge.SurvivorID {
						t.Errorf("suggestion keyed %q, want the survivor %s", rec.Key, ev.Merge.SurvivorID)
					}
					suggestions = append(suggestions, ev)
				}
			}
			if len(suggestions) != 1 || suggestions[0].Channel != events.ChannelWeb || len(suggestions[0].Merge.Evidence) != 1 {
				t.Fatalf("suggestions of %s and %s: %+v, want one with the phone as evidence", cid, caller, suggestions)
			}
		})

		t.Run("an unknown identity gets a derived customer ID", func(t *testing.T) {
			phone := uniquePhone(t)
			if resp, body := r.post(t, "k", fmt.Sprintf(`{"Phone":%q,"MsgID":"new-1","Text":"c"}`, phone)); resp.StatusCode != 200 {
				t.Fatalf("%d %v", resp.StatusCode, body)
			}
			want := ingest.CustomerIDFor(events.Identity{Kind: "phone", Value: phone})
			if got := len(r.messagesFor(t, want)); got != 1 {
				t.Fatalf("derived customer %s has %d messages, want 1", want, got)
			}
		})

		t.Run("a re-sent delivery is answered without producing again", func(t *testing.T) {
			cid := testenv.UniqueName(t, "cus")
			payload := fmt.Sprintf(`{"CustomerID":%q,"Phone":%q,"MsgID":"resend-1","Text":"again"}`, cid, uniquePhone(t))
			_, first := r.post(t, "k", payload)
			resp, second := r.post(t, "k", payload)
			if resp.StatusCode != 200 || fmt.Sprint(first["messages"]) != fmt.Sprint(second["messages"]) {
				t.Fatalf("re-send answered %d %v, first %v", resp.StatusCode, second, first)
			}
			if got := len(r.messagesFor(t, cid)); got != 1 {
				t.Fatalf("%d messages after a re-send, want 1", got)
			}
		})

		t.Run("bad input: 400 naming the field, raw bytes in the dead-letter topic", func(t *testing.T) {
			payload := fmt.Sprintf(`{"Phone":"12","MsgID":%q}`, testenv.UniqueName(t, "m"))
			resp, body := r.post(t, "k", payload)
			if resp.StatusCode != http.StatusBadRequest || body["field"] != "phone" || body["dead_letter_id"] == nil {
				t.Fatalf("status %d, body %v", resp.StatusCode, body)
			}
			var found bool
			for _, rec := range r.topicRecords(t, schemas.DeadLetterTopic) {
				var dl events.DeadLetter
				if err := r.serde.Decode(context.Background(), rec.Value, &dl); err != nil {
					continue // another test shares the topic (the materializer tests write poison records)
				}
				if dl.ID == body["dead_letter_id"] {
					found = true
					if !bytes.Equal(dl.Payload, []byte(payload)) || *dl.Field != "phone" || dl.Stage != "ingest" || dl.Headers["Authorization"] != "" {
						t.Fatalf("dead letter %+v", dl)
					}
				}
			}
			if !found {
				t.Fatal("dead letter not in the topic")
			}
		})

		t.Run("wrong key: 401", func(t *testing.T) {
			if resp, _ := r.post(t, "nope", `{}`); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d", resp.StatusCode)
			}
		})

		t.Run("over the size limit: 413", func(t *testing.T) {
			resp, body := r.post(t, "k", `{"Text":"`+strings.Repeat("x", 5000)+`"}`)
			if resp.StatusCode != http.StatusRequestEntityTooLarge || body["dead_letter_id"] == nil {
				t.Fatalf("status %d, body %v", resp.StatusCode, body)
			}
		})
	})
}
