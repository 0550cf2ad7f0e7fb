package producers_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/httpauth"
	"github.com/omnisync/omnisync/pkg/normalize"
	"github.com/omnisync/omnisync/producers/app"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/producers/phone"
	"github.com/omnisync/omnisync/producers/web"
)

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func bearer(key string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	if key != "" {
		r.Header.Set("Authorization", "Bearer "+key)
	}
	return r
}

func TestBearerChannelsAuthenticate(t *testing.T) {
	for _, ch := range []ingest.Channel{web.New(ingest.KeyCredential{Key: "k"}), app.New(ingest.KeyCredential{Key: "k"}), phone.New(ingest.KeyCredential{Key: "k"})} {
		if err := ch.Authenticate(bearer("k")); err != nil {
			t.Errorf("%s: right key refused: %v", ch.Channel(), err)
		}
		for _, key := range []string{"", "K", "kk"} {
			if err := ch.Authenticate(bearer(key)); !errors.Is(err, httpauth.ErrUnauthorized) {
				t.Errorf("%s: key %q: %v", ch.Channel(), key, err)
			}
		}
	}
	if err := web.New(ingest.KeyCredential{}).Authenticate(bearer("")); err == nil {
		t.Error("an unconfigured key must refuse everything")
	}
}

func TestWebBatch(t *testing.T) {
	b, err := web.New(ingest.KeyCredential{Key: "k"}).Parse(nil, read(t, "web/testdata/batch.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Customers) != 1 || len(b.Messages) != 2 {
		t.Fatalf("batch %d customers %d messages", len(b.Customers), len(b.Messages))
	}
	ids := b.Customers[0].Identities
	if len(ids) != 3 || ids[0] != (events.Identity{Kind: "web_visitor", Value: "v-7f3a9c21"}) || ids[1].Value != "+8613800138000" || ids[2].Value != "li.na@example.com" {
		t.Fatalf("identities %+v", ids)
	}
	if b.Messages[0].SenderID != "v-7f3a9c21" || b.Messages[1].ContentType != events.ContentImage {
		t.Fatalf("messages %+v", b.Messages)
	}
	again, _ := web.New(ingest.KeyCredential{Key: "k"}).Parse(nil, read(t, "web/testdata/batch.json"))
	if !reflect.DeepEqual(b, again) {
		t.Fatal("the same payload parsed twice differs: retries would not be absorbed")
	}
	for body, field := range map[string]string{
		`{"events":[]}`: "visitor_id",
		`{"visitor_id":"v","events":[{"type":"message","id":"1","occurred_at":"2026-11-22T08:00:00Z","text":"x"}],"extra":1}`: "extra",
	} {
		_, err := web.New(ingest.KeyCredential{}).Parse(nil, []byte(body))
		var ve *normalize.ValidationError
		if !errors.As(err, &ve) || ve.Field != field {
			t.Errorf("%s: got %v, want field %s", body, err, field)
		}
	}
}

func TestAppBatch(t *testing.T) {
	b, err := app.New(ingest.KeyCredential{}).Parse(nil, read(t, "app/testdata/batch.json"))
	if err != nil {
		t.Fatal(err)
	}
	ids := b.Messages[0].Identities
	if len(ids) != 2 || ids[0].Kind != "device" || ids[1] != (events.Identity{Kind: "app_user", Value: "u-20331"}) {
		t.Fatalf("identities %+v", ids)
	}
	if m := b.Messages[0]; m.SenderID != "u-20331" || m.Metadata["app_version"] != "5.2.1" || m.Metadata["platform"] != "ios" {
		t.Fatalf("message %+v", m)
	}
	if p := b.Customers[0].Profile; *p.VIPLevel != 3 || p.Attributes["last_app_version"] != "5.2.1" || *p.Phone != "+8613900139000" {
		t.Fatalf("profile %+v", p)
	}
	for body, field := range map[string]string{
		`{"app_version":"1","platform":"ios","events":[]}`:                                                              "device_id",
		`{"device_id":"d","app_version":"1","platform":"symbian","events":[]}`:                                          "platform",
		`{"device_id":"d","platform":"ios","events":[]}`:                                                                "app_version",
		`{"device_id":"d","app_version":"1","platform":"ios","user_id":"` + strings.Repeat("u", 200) + `","events":[]}`: "user_id",
	} {
		_, err := app.New(ingest.KeyCredential{}).Parse(nil, []byte(body))
		var ve *normalize.ValidationError
		if !errors.As(err, &ve) || ve.Field != field {
			t.Errorf("%.60s: got %v, want field %s", body, err, field)
		}
	}
}

func TestPhoneTranscript(t *testing.T) {
	b, err := phone.New(ingest.KeyCredential{}).Parse(nil, read(t, "phone/testdata/transcript.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Messages) != 3 || len(b.Customers) != 0 {
		t.Fatalf("%d messages, %d customer events", len(b.Messages), len(b.Customers))
	}
	agent, caller := b.Messages[0], b.Messages[1]
	if caller.SenderType != events.SenderCustomer || caller.Direction != events.DirectionInbound || caller.SenderID != "+8613800138000" ||
		caller.Transcript.Segment != 1 || caller.Transcript.StartMS != 4200 || *caller.SourceMessageID != "call-20261122-0007#1" ||
		caller.ConversationID != "call:call-20261122-0007" || caller.ContentType != events.ContentTranscript {
		t.Fatalf("caller segment %+v %+v", caller, caller.Transcript)
	}
	if agent.SenderType != events.SenderAgent || agent.Direction != events.DirectionOutbound || agent.SenderID != "agent-17" {
		t.Fatalf("agent segment %+v", agent)
	}
	if want := agent.OccurredAt.Add(4200e6); !caller.OccurredAt.Equal(want) {
		t.Fatalf("segment time %v, want started_at + start_ms = %v", caller.OccurredAt, want)
	}
	for _, m := range b.Messages {
		if len(m.Identities) != 1 || m.Identities[0] != (events.Identity{Kind: "phone", Value: "+8613800138000", Verified: true}) {
			t.Fatalf("identities %+v", m.Identities)
		}
	}
	base := `"call_id":"c1","caller":"13800138000","callee":"4008001234","agent_id":"a","started_at":"2026-11-22T10:00:00Z","ended_at":"2026-11-22T10:01:00Z"`
	for _, tt := range []struct{ body, field string }{
		{`{"direction":"inbound",` + base + `,"segments":[]}`, "segments"},
		{`{"direction":"sideways",` + base + `,"segments":[{"speaker":"agent","start_ms":0,"end_ms":1,"text":"x"}]}`, "direction"},
		{`{"direction":"inbound",` + base + `,"segments":[{"speaker":"agent","start_ms":5,"end_ms":1,"text":"x"}]}`, "segments[0].end_ms"},
		{`{"direction":"inbound",` + base + `,"segments":[{"speaker":"agent","start_ms":5,"end_ms":6,"text":"x"},{"speaker":"caller","start_ms":1,"end_ms":2,"text":"y"}]}`, "segments[1].start_ms"},
		{`{"direction":"inbound",` + base + `,"segments":[{"speaker":"agent","start_ms":0,"end_ms":1,"text":"x","confidence":1.5}]}`, "segments[0].confidence"},
		{`{"direction":"inbound",` + base + `,"segments":[{"speaker":"robot","start_ms":0,"end_ms":1,"text":"x"}]}`, "segments[0].speaker"},
		{`{"direction":"inbound",` + base + `,"segments":[{"speaker":"agent","start_ms":0,"end_ms":999999,"text":"x"}]}`, "segments[0].end_ms"},
		{`{"direction":"outbound","call_id":"c1","caller":"4008001234","callee":"12","agent_id":"a","started_at":"2026-11-22T10:00:00Z","ended_at":"2026-11-22T10:01:00Z","segments":[{"speaker":"agent","start_ms":0,"end_ms":1,"text":"x"}]}`, "callee"},
		{`{"direction":"inbound",` + strings.Replace(base, `"2026-11-22T10:01:00Z"`, `"2026-11-22T09:00:00Z"`, 1) + `,"segments":[{"speaker":"agent","start_ms":0,"end_ms":1,"text":"x"}]}`, "ended_at"},
	} {
		_, err := phone.New(ingest.KeyCredential{}).Parse(nil, []byte(tt.body))
		var ve *normalize.ValidationError
		if !errors.As(err, &ve) || ve.Field != tt.field {
			t.Errorf("%.80s: got %v, want field %s", tt.body, err, tt.field)
		}
	}
}

// FuzzBearerChannelsParse: any body parses or fails with a
// *normalize.ValidationError, never a panic, on the web, app and phone
// channels alike.
func FuzzBearerChannelsParse(f *testing.F) {
	for _, path := range []string{"web/testdata/batch.json", "app/testdata/batch.json", "phone/testdata/transcript.json"} {
		seed, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(seed)
	}
	f.Add([]byte("{}"))
	f.Add([]byte(`{"events":[{"type":"message"}]}`))
	cred := ingest.KeyCredential{Key: "k"}
	channels := []ingest.Channel{web.New(cred), app.New(cred), phone.New(cred)}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, ch := range channels {
			_, err := ch.Parse(nil, body)
			var ve *normalize.ValidationError
			if err != nil && !errors.As(err, &ve) {
				t.Fatalf("%s: error is not a ValidationError: %v", ch.Channel(), err)
			}
		}
	})
}
