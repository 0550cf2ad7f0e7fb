package wxpushtest

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/normalize"
	"github.com/omnisync/omnisync/producers/ingest"
)

// Parser checks what a push channel's Parse makes of a push.
type Parser struct {
	Ch    ingest.Channel
	Later ingest.Channel // the same channel, its clock 15 s on: WeChat re-sending the push
	Path  string         // e.g. /ingest/wechat
	Codec *AvroCodec
}

// Parse checks that body maps to one message, want, which fits the Avro
// schema; and that its re-send, parsed by Later, is the identical batch,
// source message ID included, so the pipeline derives the same message
// ID.
func (p Parser) Parse(t *testing.T, body string, want *events.MessageEvent) {
	t.Helper()
	b, err := p.Ch.Parse(httptest.NewRequest(http.MethodPost, p.Path, nil), []byte(body))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(b.Customers) != 0 || len(b.Messages) != 1 {
		t.Fatalf("batch has %d customer events and %d messages, want 0 and 1", len(b.Customers), len(b.Messages))
	}
	if diff := cmp.Diff(want, b.Messages[0]); diff != "" {
		t.Errorf("message (-want +got):\n%s", diff)
	}
	p.Codec.RoundTrip(t, b.Messages[0])

	again, err := p.Later.Parse(nil, []byte(body))
	if err != nil {
		t.Fatalf("re-send: %v", err)
	}
	if diff := cmp.Diff(b, again); diff != "" {
		t.Errorf("re-send parsed differently (-first +again):\n%s", diff)
	}
	m, r := b.Messages[0], again.Messages[0]
	if m.SourceMessageID == nil || *m.SourceMessageID == "" {
		t.Fatal("no source message ID")
	}
	ch := p.Ch.Channel()
	if ingest.EventID(ch, ingest.SenderKey(m.CustomerID, m.Identities), *m.SourceMessageID, m.OccurredAt) != ingest.EventID(ch, ingest.SenderKey(r.CustomerID, r.Identities), *r.SourceMessageID, r.OccurredAt) {
		t.Error("re-send gets another message ID")
	}
}

// Invalid checks that ch refuses body as bad input: a
// *normalize.ValidationError naming field, its reason containing wantIn.
func Invalid(t *testing.T, ch ingest.Channel, body, field, wantIn string) {
	t.Helper()
	b, err := ch.Parse(nil, []byte(body))
	if err == nil {
		t.Fatalf("accepted: %+v", b.Messages[0])
	}
	var invalid *normalize.ValidationError
	if !errors.As(err, &invalid) {
		t.Fatalf("error %v (%T) is not a *normalize.ValidationError", err, err)
	}
	if invalid.Field != field {
		t.Errorf("field = %q, want %q (%v)", invalid.Field, field, err)
	}
	if !strings.Contains(invalid.Reason, wantIn) {
		t.Errorf("reason %q does not contain %q", invalid.Reason, wantIn)
	}
}
