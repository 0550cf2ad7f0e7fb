package deadletter_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/deadletter"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// kafkaBatchMaxBytes is franz-go's default kgo.ProducerBatchMaxBytes, the
// smallest default limit a record meets on its way (Kafka's
// message.max.bytes is 1,048,588).
const kafkaBatchMaxBytes = 1_000_012

func serde(t *testing.T) *codec.Serde {
	t.Helper()
	reg, _ := testenv.Registry(t)
	s, err := codec.New(context.Background(), reg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// worstCase is a dead letter whose every field is far over its bound.
func worstCase() events.DeadLetter {
	huge := func(c string, n int) string { return strings.Repeat(c, n) }
	headers := map[string]string{}
	for i := range 64 {
		headers[fmt.Sprintf("%03d%s", i, huge("k", 64<<10))] = huge("v", 64<<10)
	}
	field, topic := huge("f", 1<<20), huge("t", 1<<20)
	part, off := int32(1<<31-1), int64(1<<63-1)
	return events.DeadLetter{
		ID: huge("i", 1<<20), Stage: huge("s", 1<<20), Component: huge("c", 1<<20),
		Reason: huge("界", 1<<20), Field: &field, ContentType: huge("x", 1<<20),
		Payload: bytes.Repeat([]byte{0xff}, 10<<20), Headers: headers,
		Topic: &topic, Partition: &part, Offset: &off, FailedAt: time.Now(),
	}
}

// recordBytes bounds the size a record takes in a record batch of its
// own: the batch header (61 bytes), the record's varints and attributes
// (at most 5 bytes each), key, value and headers.
func recordBytes(r *kgo.Record) int {
	n := 61 + 6*5 + len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += 2*5 + len(h.Key) + len(h.Value)
	}
	return n
}

func TestWorstCaseRecordFitsKafkasDefaults(t *testing.T) {
	s := serde(t)
	rec, dl, err := deadletter.Record(s, "omnisync.dlq.v1", bytes.Repeat([]byte("k"), 1<<20), worstCase())
	if err != nil {
		t.Fatal(err)
	}
	size := recordBytes(rec)
	t.Logf("worst-case dead-letter record: %d bytes (bound %d, Kafka's smallest default limit %d)", size, deadletter.MaxRecordBytes, kafkaBatchMaxBytes)
	if size > deadletter.MaxRecordBytes || deadletter.MaxRecordBytes*7 > kafkaBatchMaxBytes {
		t.Fatalf("record of %d bytes: want at most %d, a seventh of %d at most", size, deadletter.MaxRecordBytes, kafkaBatchMaxBytes)
	}
	var back events.DeadLetter
	if err := s.Decode(context.Background(), rec.Value, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Payload) != deadletter.MaxPayload || back.PayloadSize != 10<<20 || !back.PayloadTruncated || !bytes.Equal(back.Payload, dl.Payload) {
		t.Fatalf("payload of %d bytes, size %d, truncated %v: want the first %d of %d bytes", len(back.Payload), back.PayloadSize, back.PayloadTruncated, deadletter.MaxPayload, 10<<20)
	}
	if len(back.Headers) != deadletter.MaxHeaders || !utf8.ValidString(back.Reason) || len(back.Reason) > deadletter.MaxText || !strings.HasSuffix(back.Reason, "…") {
		t.Fatalf("%d headers, reason of %d bytes ending %q", len(back.Headers), len(back.Reason), back.Reason[len(back.Reason)-8:])
	}
}

// The worst case goes through a Kafka with default limits; the same input
// kept whole, as dead letters were before, does not: the check above is
// about a limit the cluster really has.
func TestWorstCaseRecordIsProduced(t *testing.T) {
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cl, err := kafka.NewClient(k.Config())
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		topic := testenv.UniqueName(t, "dlq")
		if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, -1, nil, topic); err != nil {
			t.Fatal(err)
		}
		s := serde(t)
		in := worstCase()
		rec, _, err := deadletter.Record(s, topic, []byte("key"), in)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatalf("bounded dead letter refused: %v", err)
		}

		in.Payload = in.Payload[:1<<20] // the old way: the whole 1 MiB body
		in.ID, in.Stage, in.Component, in.Reason, in.ContentType, in.Field, in.Topic, in.Headers = "id", "ingest", "producer/web", "too large", "", nil, nil, nil
		whole, err := s.Encode(&in)
		if err != nil {
			t.Fatal(err)
		}
		err = cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: whole}).FirstErr()
		if !errors.Is(err, kerr.MessageTooLarge) {
			t.Fatalf("a dead letter holding a whole 1 MiB body: %v, want %v", err, kerr.MessageTooLarge)
		}
	})
}

func TestNewKeepsSmallInputWhole(t *testing.T) {
	field := "events[0].text"
	in := events.DeadLetter{Stage: "ingest", Component: "producer/web", Reason: "bad", Field: &field, Payload: []byte(`{"a":1}`), Headers: map[string]string{"path": "/ingest/web"}}
	dl := deadletter.New(in)
	if !bytes.Equal(dl.Payload, in.Payload) || dl.PayloadSize != 7 || dl.PayloadTruncated || dl.ID == "" || dl.FailedAt.IsZero() || *dl.Field != field || dl.Headers["path"] != "/ingest/web" || dl.Reason != "bad" {
		t.Fatalf("%+v", dl)
	}
	if again := deadletter.New(*dl); again.ID != dl.ID || again.PayloadSize != 7 || !again.FailedAt.Equal(dl.FailedAt) {
		t.Fatalf("New is not idempotent: %+v then %+v", dl, again)
	}
}

// A body cut off at the size limit: the caller says how large it was.
func TestNewRecordsTheSizeTheCallerKnows(t *testing.T) {
	dl := deadletter.New(events.DeadLetter{Payload: make([]byte, 1<<20), PayloadSize: 10 << 20})
	if len(dl.Payload) != deadletter.MaxPayload || dl.PayloadSize != 10<<20 || !dl.PayloadTruncated {
		t.Fatalf("payload %d bytes, size %d, truncated %v", len(dl.Payload), dl.PayloadSize, dl.PayloadTruncated)
	}
	dl = deadletter.New(events.DeadLetter{Payload: make([]byte, 10), PayloadSize: 20})
	if len(dl.Payload) != 10 || dl.PayloadSize != 20 || !dl.PayloadTruncated {
		t.Fatalf("payload %d bytes, size %d, truncated %v", len(dl.Payload), dl.PayloadSize, dl.PayloadTruncated)
	}
}

func TestText(t *testing.T) {
	for _, in := range []string{"", "ok", "caf\xe9", strings.Repeat("界", 1000), strings.Repeat("a", deadletter.MaxText), strings.Repeat("a", deadletter.MaxText+1)} {
		out := deadletter.Text(in)
		if !utf8.ValidString(out) || len(out) > deadletter.MaxText {
			t.Errorf("Text(%d bytes) = %d bytes, valid UTF-8 %v", len(in), len(out), utf8.ValidString(out))
		}
		if utf8.ValidString(in) && len(in) <= deadletter.MaxText && out != in {
			t.Errorf("Text changed a short valid text: %q", out)
		}
	}
}

// captured is an Encoder that keeps what it encodes.
type captured struct{ got *events.DeadLetter }

func (c *captured) Encode(v any) ([]byte, error) {
	c.got = v.(*events.DeadLetter)
	return []byte("encoded"), nil
}

func TestConsumedKeepsTheRecordItCameFrom(t *testing.T) {
	var enc captured
	headers := map[string]string{"target": "crm"}
	rec := &kgo.Record{Topic: "customer-events", Partition: 3, Offset: 41, Key: []byte("cus_1"), Value: []byte{0, 1, 2}}
	out, err := deadletter.Consumed(&enc, "dead-letters", rec, events.DeadLetter{Stage: "forward", Component: "forwarder/g", Reason: "refused", Headers: headers})
	if err != nil {
		t.Fatal(err)
	}
	d := enc.got
	if d.Stage != "forward" || d.Component != "forwarder/g" || d.Reason != "refused" || d.ContentType != "application/vnd.kafka.avro" ||
		!bytes.Equal(d.Payload, rec.Value) || d.PayloadSize != 3 || d.PayloadTruncated ||
		d.Topic == nil || *d.Topic != "customer-events" || d.Partition == nil || *d.Partition != 3 || d.Offset == nil || *d.Offset != 41 {
		t.Errorf("dead letter = %+v", d)
	}
	if len(d.Headers) != 2 || d.Headers["key"] != "cus_1" || d.Headers["target"] != "crm" {
		t.Errorf("headers = %v, want key and target", d.Headers)
	}
	if len(headers) != 1 {
		t.Errorf("Consumed changed the caller's headers: %v", headers)
	}
	if out.Topic != "dead-letters" || string(out.Key) != "cus_1" || string(out.Value) != "encoded" {
		t.Errorf("record = topic %q key %q value %q", out.Topic, out.Key, out.Value)
	}
	var hs []string
	for _, h := range out.Headers {
		hs = append(hs, h.Key+"="+string(h.Value))
	}
	if got, want := strings.Join(hs, " "), "topic=customer-events partition=3 offset=41 reason=refused"; got != want {
		t.Errorf("record headers %q, want %q", got, want)
	}
}
