// Package deadletter builds the records of the dead-letter topic: the one
// way every stage (the producers, the materializer, the forwarder) writes a
// dead letter, with Record for any input and Consumed for a record read
// from Kafka. It bounds what a dead letter keeps, so that one always fits
// in a Kafka record however large the rejected input was: a dead letter
// refused by Kafka would turn bad input into an endless 503 or a stuck
// consumer.
package deadletter

import (
	"maps"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/segmentio/ksuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/omnisync/omnisync/pkg/events"
)

// Bounds on what a dead letter keeps.
//
// MaxPayload, 64 KiB, shows what the input was (a batch or an event is a
// few KiB) and, with every other field bounded by MaxText and MaxHeaders,
// keeps a dead-letter record (key, Avro value and headers) under
// MaxRecordBytes, 128 KiB: less than a seventh of the smallest default
// limit on its way, franz-go's 1,000,012-byte record batch
// (kgo.ProducerBatchMaxBytes, checked before compression), itself under
// Kafka's message.max.bytes and max.message.bytes of 1,048,588.
const (
	MaxPayload     = 64 << 10
	MaxText        = 1 << 10 // bytes of the reason, the field, each header key and value, the record key
	MaxHeaders     = 16
	MaxRecordBytes = 128 << 10
)

// New returns d bounded: its payload cut to the first MaxPayload bytes,
// with PayloadSize the size of the whole input (len(d.Payload), or
// d.PayloadSize when the caller knows the input was larger than what it
// holds, as for a request body cut off at the size limit) and
// PayloadTruncated set when payload holds less than that; its texts cut to
// MaxText bytes of valid UTF-8 and its headers to MaxHeaders (by name). An
// empty ID gets a new ksuid and a zero FailedAt the current time. New is
// idempotent.
func New(d events.DeadLetter) *events.DeadLetter {
	d.PayloadSize = max(d.PayloadSize, int64(len(d.Payload)))
	if len(d.Payload) > MaxPayload {
		d.Payload = d.Payload[:MaxPayload:MaxPayload]
	}
	d.PayloadTruncated = d.PayloadTruncated || d.PayloadSize > int64(len(d.Payload))
	if d.ID == "" {
		d.ID = ksuid.New().String()
	}
	if d.FailedAt.IsZero() {
		d.FailedAt = time.Now()
	}
	d.FailedAt = d.FailedAt.UTC()
	for _, s := range []*string{&d.ID, &d.Stage, &d.Component, &d.Reason, &d.ContentType} {
		*s = Text(*s)
	}
	for _, s := range []**string{&d.Field, &d.Topic} {
		if *s != nil {
			v := Text(**s)
			*s = &v
		}
	}
	if d.Headers != nil {
		names := make([]string, 0, len(d.Headers))
		for k := range d.Headers {
			names = append(names, k)
		}
		sort.Strings(names)
		headers := make(map[string]string, min(len(names), MaxHeaders))
		for _, k := range names[:min(len(names), MaxHeaders)] {
			headers[Text(k)] = Text(d.Headers[k])
		}
		d.Headers = headers
	}
	return &d
}

// Encoder encodes a record of package events; *codec.Serde is one.
type Encoder interface {
	Encode(v any) ([]byte, error)
}

// Record returns the record of dl for the dead-letter topic: dl bounded
// (see New) and encoded, key cut to MaxText bytes, with the headers reason
// and, for a record read from Kafka, topic, partition and offset. It also
// returns the bounded dead letter, whose ID and Reason the caller reports.
func Record(enc Encoder, topic string, key []byte, dl events.DeadLetter) (*kgo.Record, *events.DeadLetter, error) {
	d := New(dl)
	value, err := enc.Encode(d)
	if err != nil {
		return nil, nil, err
	}
	if len(key) > MaxText {
		key = key[:MaxText:MaxText]
	}
	rec := &kgo.Record{Topic: topic, Key: key, Value: value}
	if d.Topic != nil {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: "topic", Value: []byte(*d.Topic)})
	}
	if d.Partition != nil {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: "partition", Value: []byte(strconv.Itoa(int(*d.Partition)))})
	}
	if d.Offset != nil {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: "offset", Value: []byte(strconv.FormatInt(*d.Offset, 10))})
	}
	rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: "reason", Value: []byte(d.Reason)})
	return rec, d, nil
}

// Consumed returns the record for the dead-letter topic of rec, a record
// read from Kafka that a consumer cannot process: dl (its Stage, Component,
// Reason and any Headers) with rec's value as the payload, content type
// application/vnd.kafka.avro, rec's topic, partition and offset, and rec's
// key as the header "key"; keyed by rec's key and bounded as by Record.
func Consumed(enc Encoder, topic string, rec *kgo.Record, dl events.DeadLetter) (*kgo.Record, error) {
	headers := make(map[string]string, len(dl.Headers)+1)
	maps.Copy(headers, dl.Headers)
	headers["key"] = string(rec.Key)
	from, part, off := rec.Topic, rec.Partition, rec.Offset
	dl.ContentType, dl.Payload, dl.Headers = "application/vnd.kafka.avro", rec.Value, headers
	dl.Topic, dl.Partition, dl.Offset = &from, &part, &off
	out, _, err := Record(enc, topic, rec.Key, dl)
	return out, err
}

// Text returns s as valid UTF-8 of at most MaxText bytes: invalid bytes
// become U+FFFD, and a longer text is cut at a character boundary and
// ends with "…". Dead letters keep their texts for people; the payload
// keeps the input's bytes.
func Text(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= MaxText {
		return s
	}
	const ellipsis = "…"
	cut := MaxText - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}
