package chatjson_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/omnisync/omnisync/pkg/normalize"
	"github.com/omnisync/omnisync/producers/chatjson"
	"github.com/omnisync/omnisync/producers/ingest"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func build(t *testing.T, events string) (*ingest.Batch, error) {
	t.Helper()
	var list []chatjson.Event
	if err := chatjson.Decode([]byte(events), &list); err != nil {
		return nil, err
	}
	return chatjson.Build(list, chatjson.Context{SenderID: "v1", Now: now})
}

func TestBuildValid(t *testing.T) {
	b, err := build(t, `[
	 {"type":"profile","id":"p1","occurred_at":"2026-11-22T08:30:00+08:00","profile":{"name":" 李娜 ","phone":"13800138000","email":"Li.Na@Example.COM","gender":"female","birthday":"1990-05-17","vip_level":2,"tags":["vip"],"id_number":"110101199005170021","attributes":{"order_no":"SO-1"}},"clear":["attributes.coupon"]},
	 {"type":"message","id":"m1","occurred_at":"2026-11-22T08:31:00Z","text":"hi","tags":["pre-sale"],"metadata":{"page":"/cart"}},
	 {"type":"message","id":"m2","occurred_at":"2026-11-22T08:32:00Z","direction":"outbound","sender":{"type":"agent","id":"a-1"},"content_type":"file","attachments":[{"url":"https://x.example/a.pdf","mime_type":"application/pdf","size_bytes":10,"thumbnail_url":"https://x.example/t.png"}]}
	]`)
	if err != nil {
		t.Fatal(err)
	}
	p := b.Customers[0].Profile
	if *p.Name != "李娜" || *p.Phone != "+8613800138000" || *p.Email != "li.na@example.com" || *p.Gender != "FEMALE" || p.Birthday.Format(time.DateOnly) != "1990-05-17" {
		t.Fatalf("profile not normalised: %+v", p)
	}
	if got := b.Customers[0].Identities; len(got) != 2 || got[0].Kind != "phone" || got[1].Kind != "email" {
		t.Fatalf("identities %+v", got)
	}
	if b.Customers[0].OccurredAt != time.Date(2026, 11, 22, 0, 30, 0, 0, time.UTC) || *b.Customers[0].SourceEventID != "p1" {
		t.Fatalf("time or source ID: %v %v", b.Customers[0].OccurredAt, *b.Customers[0].SourceEventID)
	}
	if m := b.Messages[0]; m.SenderID != "v1" || m.SenderType != "CUSTOMER" || m.Direction != "INBOUND" || m.ContentType != "TEXT" || m.Metadata["page"] != "/cart" {
		t.Fatalf("message %+v", m)
	}
	if m := b.Messages[1]; m.SenderType != "AGENT" || m.SenderID != "a-1" || m.Direction != "OUTBOUND" || m.ContentType != "FILE" || *m.Attachments[0].ThumbnailURL != "https://x.example/t.png" {
		t.Fatalf("message %+v", m)
	}
}

func TestBuildInvalid(t *testing.T) {
	ok := `"id":"x","occurred_at":"2026-11-22T08:00:00Z"`
	for _, tt := range []struct{ events, field, reason string }{
		{`{`, "", "malformed JSON"},
		{`[]`, "events", "no events"},
		{`[{"type":"profile",` + ok + `,"profile":{"phone":"12"}}]`, "events[0].profile.phone", "not a valid phone number"},
		{`[{"type":"profile",` + ok + `,"profile":{"email":"nope"}}]`, "events[0].profile.email", "not a valid e-mail"},
		{`[{"type":"profile",` + ok + `,"profile":{"gender":"x"}}]`, "events[0].profile.gender", "want male"},
		{`[{"type":"profile",` + ok + `,"profile":{"birthday":"2999-01-01"}}]`, "events[0].profile.birthday", "past date"},
		{`[{"type":"profile",` + ok + `,"profile":{"vip_level":1000}}]`, "events[0].profile.vip_level", "0 to 100"},
		{`[{"type":"profile",` + ok + `,"profile":{"nickname":"x"}}]`, "nickname", "unknown field"},
		{`[{"type":"profile",` + ok + `,"clear":["password"]}]`, "events[0].clear[0]", "not a profile field"},
		{`[{"type":"profile",` + ok + `}]`, "events[0].profile", "needs profile or clear"},
		{`[{"type":"message",` + ok + `}]`, "events[0].text", "needs text"},
		{`[{"type":"message",` + ok + `,"text":"` + strings.Repeat("长", 4001) + `"}]`, "events[0].text", "at most 4000"},
		{`[{"type":"message",` + ok + `,"content_type":"image","attachments":[{"url":"javascript:alert(1)"}]}]`, "events[0].attachments[0].url", "not an http(s) URL"},
		{`[{"type":"message",` + ok + `,"text":"x","direction":"sideways"}]`, "events[0].direction", "want inbound"},
		{`[{"type":"message",` + ok + `,"text":"x","content_type":"hologram"}]`, "events[0].content_type", "want text"},
		{`[{"type":"message",` + ok + `,"text":"x","sender":{"type":"alien"}}]`, "events[0].sender.type", "want customer"},
		{`[{"type":"message","id":"x","occurred_at":"yesterday","text":"x"}]`, "events[0].occurred_at", "RFC 3339"},
		{`[{"type":"message","id":"x","occurred_at":"2030-01-01T00:00:00Z","text":"x"}]`, "events[0].occurred_at", "in the future"},
		{`[{"type":"message","id":"","occurred_at":"2026-11-22T08:00:00Z","text":"x"}]`, "events[0].id", "required"},
		{`[{"type":"message",` + ok + `,"text":"a"},{"type":"message",` + ok + `,"text":"b"}]`, "events[1].id", "appears twice"},
		{`[{"type":"order",` + ok + `}]`, "events[0].type", "want profile or message"},
		{`[{"type":"message",` + ok + `,"text":"a\u0000b"}]`, "events[0].text", "NUL"},
		{`[{"type":"message",` + ok + `,"text":"x","id":5}]`, "id", "want string"},
	} {
		_, err := build(t, tt.events)
		var ve *normalize.ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("%s: got %v, want a ValidationError", tt.events[:min(len(tt.events), 60)], err)
			continue
		}
		if ve.Field != tt.field || !strings.Contains(ve.Reason, tt.reason) {
			t.Errorf("%.60s: got %q: %q, want %q: …%s…", tt.events, ve.Field, ve.Reason, tt.field, tt.reason)
		}
	}
}

func TestTooManyEvents(t *testing.T) {
	list := make([]chatjson.Event, chatjson.MaxEvents+1)
	_, err := chatjson.Build(list, chatjson.Context{Now: now})
	var ve *normalize.ValidationError
	if !errors.As(err, &ve) || ve.Field != "events" {
		t.Fatalf("got %v", err)
	}
}
