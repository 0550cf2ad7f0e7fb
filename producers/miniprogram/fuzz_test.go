package miniprogram_test

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/producers/miniprogram"
)

// FuzzParse: Parse never panics, every error is a *ingest.ValidationError,
// and what it accepts is one deterministic, well-formed message that fits
// the Avro schema.
func FuzzParse(f *testing.F) {
	for _, tc := range parseCases {
		f.Add([]byte(tc.json))
	}
	for _, tc := range badCases {
		f.Add([]byte(tc.json))
	}
	ch := newChannel(miniprogram.AccountID(testAccount))
	codec := newAvroCodec(f)
	r := httptest.NewRequest(http.MethodPost, "/ingest/miniprogram", nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		b, err := ch.Parse(r, body)
		if err != nil {
			if _, ok := err.(*ingest.ValidationError); !ok {
				t.Fatalf("error %v is a %T, not a *ingest.ValidationError", err, err)
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
		codec.roundTrip(t, m)
	})
}
