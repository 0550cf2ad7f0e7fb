package materializer_test

import (
	"bytes"
	"context"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/deadletter"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/schemas"
)

// bigPoison is the size of the largest poison record, whole.
const bigPoison = 999_850

// Garbage bytes and records with an unknown schema ID go to the dead-letter
// topic with their topic, partition and offset; the events after them are
// applied.
func TestPoisonRecordsGoToDeadLetters(t *testing.T) {
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		r := newRig(t, k)
		st := openSQLite(t, filepath.Join(t.TempDir(), "store.db"))
		group := testenv.UniqueName(t, "group")
		r.startAtEnd(t, st, group)
		from := testenv.EndOffsets(t, r.cl, schemas.DeadLetterTopic)
		cid := customers(t, 1)[0]
		// Valid Avro that no store can hold: JSON and SQL have no NaN.
		nan, err := r.serde.Encode(&events.MessageEvent{
			MessageID: cid + "-nan", CustomerID: cid, Channel: events.ChannelWeChat, Source: "test",
			Direction: events.DirectionInbound, SenderType: events.SenderCustomer, ContentType: events.ContentLocation,
			Location: &events.Location{Latitude: math.NaN(), Longitude: math.Inf(1)}, OccurredAt: base, IngestedAt: time.Now(),
		})
		if err != nil {
			t.Fatal(err)
		}
		poison := []*kgo.Record{
			{Topic: schemas.CustomerEventsTopic, Key: []byte(cid), Value: []byte("not avro at all")},
			{Topic: schemas.CustomerEventsTopic, Key: []byte(cid), Value: append(codec.AppendHeader(nil, 999999), 2, 'x')},
			{Topic: schemas.CustomerMessagesTopic, Key: []byte(cid), Value: []byte{0}},
			{Topic: schemas.CustomerMessagesTopic, Key: []byte(cid), Value: nan},
			// As large as a record can be under franz-go's default
			// 1,000,012-byte batch: kept whole, with the reason and
			// origin around it, its dead letter would be too large.
			{Topic: schemas.CustomerMessagesTopic, Key: []byte(cid), Value: bytes.Repeat([]byte{0xff}, bigPoison)},
		}
		if err := r.cl.ProduceSync(context.Background(), poison...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		name := "after the poison"
		r.produce(t, &events.CustomerEvent{EventID: cid + "-ok", CustomerID: cid, Channel: events.ChannelCRM, Source: "test",
			Op: events.OpUpsert, OccurredAt: base, IngestedAt: time.Now(), Profile: &events.Profile{Name: &name}})

		runMaterializer(t, r, group, st)
		waitCaughtUp(t, st, group, r.endOffsets(t), 60*time.Second)
		got, err := st.Load(context.Background(), []string{cid})
		if err != nil {
			t.Fatal(err)
		}
		if reg, ok := got[cid].Fields["name"]; !ok || reg.Value != `"after the poison"` {
			t.Fatalf("the event after the poison records was not applied: %+v", got[cid])
		}

		// Each poison record is in the dead-letter topic with where it came from.
		c, err := kafka.NewClient(k.Config(), kgo.ConsumePartitions(from))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		found := 0
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for found < len(poison) && ctx.Err() == nil {
			c.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
				var dl events.DeadLetter
				if err := r.serde.Decode(ctx, rec.Value, &dl); err != nil || dl.Stage != "materialize" || string(rec.Key) != cid {
					return
				}
				if dl.Topic == nil || dl.Offset == nil || dl.Partition == nil || dl.Reason == "" {
					t.Errorf("dead letter without its origin: %+v", dl)
				}
				if dl.Component == "materializer/"+group {
					found++
				}
				if len(dl.Payload) > deadletter.MaxPayload || dl.PayloadSize > int64(len(dl.Payload)) != dl.PayloadTruncated || (dl.PayloadSize == bigPoison) != dl.PayloadTruncated {
					t.Errorf("dead letter keeps %d bytes of %d, truncated %v", len(dl.Payload), dl.PayloadSize, dl.PayloadTruncated)
				}
			})
		}
		if found != len(poison) {
			t.Fatalf("%d of %d poison records in the dead-letter topic", found, len(poison))
		}
	})
}
