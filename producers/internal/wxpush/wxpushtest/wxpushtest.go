// Package wxpushtest holds the checks the WeChat push channels' tests
// share: what Parse makes of a push (Parser, Invalid) and that it fits the
// Avro schema, fuzzing Parse, safe mode and the replay check (Pusher).
package wxpushtest

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/linkedin/goavro/v2"

	"github.com/omnisync/omnisync/pkg/avro"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/normalize"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/schemas"
)

// AvroCodec checks that parsed messages fit the message_event schema.
type AvroCodec struct {
	schema *avro.Schema
	codec  *goavro.Codec
}

// NewAvroCodec compiles the current message_event schema.
func NewAvroCodec(t testing.TB) *AvroCodec {
	t.Helper()
	text := schemas.Current(schemas.MessageEvent)
	s, err := avro.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	c, err := goavro.NewCodec(text)
	if err != nil {
		t.Fatal(err)
	}
	return &AvroCodec{schema: s, codec: c}
}

// RoundTrip encodes m as the pipeline would (after filling in its IDs)
// and decodes it back, failing unless it comes back equal.
func (a *AvroCodec) RoundTrip(t testing.TB, m *events.MessageEvent) {
	t.Helper()
	in := *m
	in.MessageID = ingest.EventID(in.Channel, ingest.SenderKey(in.CustomerID, in.Identities), *in.SourceMessageID, in.OccurredAt)
	in.CustomerID, in.Source = "cus_test", "producer/"+strings.ToLower(string(in.Channel))+"@test"
	in.IngestedAt = time.UnixMilli(1_763_800_060_000).UTC()
	native, err := avro.ToNative(a.schema, &in)
	if err != nil {
		t.Fatalf("to Avro: %v", err)
	}
	bin, err := a.codec.BinaryFromNative(nil, native)
	if err != nil {
		t.Fatalf("encoding: %v", err)
	}
	back, _, err := a.codec.NativeFromBinary(bin)
	if err != nil {
		t.Fatalf("decoding: %v", err)
	}
	var out events.MessageEvent
	if err := avro.FromNative(a.schema, back, &out); err != nil {
		t.Fatalf("from Avro: %v", err)
	}
	if diff := cmp.Diff(&in, &out, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Avro round trip (-in +out):\n%s", diff)
	}
}

// FuzzParse fuzzes a push channel's Parse from the seed bodies: it never
// panics, every error is a *normalize.ValidationError, and what it accepts is
// one deterministic, well-formed message that fits the Avro schema.
func FuzzParse(f *testing.F, ch ingest.Channel, path string, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	codec := NewAvroCodec(f)
	r := httptest.NewRequest(http.MethodPost, path, nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		b, err := ch.Parse(r, body)
		if err != nil {
			if _, ok := err.(*normalize.ValidationError); !ok {
				t.Fatalf("error %v is a %T, not a *normalize.ValidationError", err, err)
			}
			if b != nil {
				t.Fatal("a batch with an error")
			}
			return
		}
		if len(b.Customers) != 0 || len(b.Messages) != 1 {
			t.Fatalf("%d customer events, %d messages", len(b.Customers), len(b.Messages))
		}
		m := b.Messages[0]
		if m.SourceMessageID == nil || *m.SourceMessageID == "" || m.SenderID == "" || len(m.Identities) == 0 || m.Identities[0].Value != m.SenderID {
			t.Fatalf("incomplete message %+v", m)
		}
		if m.Text != nil && !utf8.ValidString(*m.Text) {
			t.Fatalf("text %q is not UTF-8", *m.Text)
		}
		for k, v := range m.Metadata {
			if k == "" || !utf8.ValidString(k) || !utf8.ValidString(v) {
				t.Fatalf("metadata %q=%q", k, v)
			}
		}
		again, err := ch.Parse(r, body)
		if err != nil || !reflect.DeepEqual(b, again) {
			t.Fatalf("second parse differs: %v", err)
		}
		codec.RoundTrip(t, m)
	})
}
