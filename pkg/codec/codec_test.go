package codec_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/registry"
	"github.com/omnisync/omnisync/schemas"
)

// newSerde returns a Serde backed by an in-process Confluent-compatible
// registry (franz-go's srfake), reached over HTTP like a real one.
func newSerde(t testing.TB) (*codec.Serde, *registry.Client, string) {
	t.Helper()
	fake := srfake.New()
	t.Cleanup(fake.Close)
	reg, err := registry.New([]string{fake.URL()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := codec.New(context.Background(), reg)
	if err != nil {
		t.Fatal(err)
	}
	return s, reg, fake.URL()
}

func ptr[T any](v T) *T { return &v }

var t0 = time.Date(2026, 11, 22, 8, 30, 15, 123e6, time.UTC)

func sampleCustomerEvent() *events.CustomerEvent {
	return &events.CustomerEvent{
		EventID:       "2JxZ0n4sYGyWkPqQpNQXyFz6a1B",
		CustomerID:    "cus_01",
		Channel:       events.ChannelApp,
		Source:        "producer/app@host-1",
		SourceEventID: ptr("app-change-77"),
		Op:            events.OpUpsert,
		OccurredAt:    t0,
		IngestedAt:    t0.Add(40 * time.Millisecond),
		Identities: []events.Identity{
			{Kind: "app_user", Value: "u-889"},
			{Kind: "wechat_openid", Scope: "wx8f3a", Value: "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"},
		},
		Profile: &events.Profile{
			Name:       ptr("王小明"),
			Phone:      ptr("+8613800138000"),
			Email:      ptr("xiaoming@example.com"),
			Gender:     ptr(events.GenderMale),
			Birthday:   ptr(time.Date(1990, 5, 17, 0, 0, 0, 0, time.UTC)),
			Address:    &events.Address{Country: "CN", Province: "广东", City: "深圳", Street: "科技园 1 号"},
			VIPLevel:   ptr(int32(3)),
			Tags:       []string{"vip", "repeat-buyer"},
			Attributes: map[string]string{"order_no": "SO-2026-0001"},
		},
		Clears: []string{"id_number"},
	}
}

func sampleMessageEvent() *events.MessageEvent {
	return &events.MessageEvent{
		MessageID:       "2JxZ0n4sYGyWkPqQpNQXyFz6a1C",
		CustomerID:      "cus_01",
		ConversationID:  "call-7781",
		Channel:         events.ChannelPhone,
		Source:          "producer/phone@host-2",
		SourceMessageID: ptr("call-7781#3"),
		Direction:       events.DirectionInbound,
		SenderType:      events.SenderCustomer,
		SenderID:        "+8613800138000",
		ContentType:     events.ContentTranscript,
		Text:            ptr("我想查询一下订单"),
		Attachments:     []events.Attachment{{URL: "https://cdn.example.com/r/7781.wav", MIMEType: "audio/wav", SizeBytes: 88200}},
		Transcript:      &events.TranscriptSegment{CallID: "call-7781", Segment: 3, Speaker: "caller", StartMS: 12000, EndMS: 15500, Confidence: 0.92},
		Identities:      []events.Identity{{Kind: "phone", Value: "+8613800138000"}},
		Tags:            []string{},
		Metadata:        map[string]string{"agent_id": "a-17"},
		OccurredAt:      t0,
		IngestedAt:      t0.Add(time.Second),
	}
}

func sampleState() *events.CustomerState {
	return &events.CustomerState{
		CustomerID: "cus_01",
		Version:    7,
		Fields: map[string]events.Register{
			"phone": {ValueJSON: `"+8613800138000"`, OccurredAt: t0, EventID: "e1", Channel: events.ChannelCRM, Source: "crm/main"},
		},
		Identities: []events.Identity{{Kind: "phone", Value: "+8613800138000"}},
		Conflicts: []events.Conflict{{
			ID: "c1", Field: "phone", CurrentJSON: `"+8613800138000"`, CandidateJSON: `"+8613900139000"`,
			CandidateEventID: "e2", CandidateChannel: events.ChannelWeChat, CandidateSource: "producer/wechat", DetectedAt: t0, Status: events.ConflictOpen,
		}},
		NeedsReview:        true,
		LastContactAt:      ptr(t0),
		LastContactChannel: events.ChannelPhone,
		UpdatedAt:          t0,
		PolicyHash:         "sha256:abc",
		MergedInto:         ptr("cus_00"),
		AbsorbedIDs:        []string{"cus_02", "cus_03"},
	}
}

func sampleDeadLetter() *events.DeadLetter {
	return &events.DeadLetter{
		ID: "2JxZ0n4sYGyWkPqQpNQXyFz6a1D", Stage: "ingest", Component: "producer/web", Reason: "phone: not a valid E.164 number",
		Field: ptr("phone"), ContentType: "application/json", Payload: []byte(`{"phone":"12"}`),
		Headers: map[string]string{"User-Agent": "widget/2.1"}, FailedAt: t0,
	}
}

func sampleAudit() *events.AuditEvent {
	return &events.AuditEvent{
		EventID: "2JxZ0n4sYGyWkPqQpNQXyFz6a1E", OccurredAt: t0, Actor: "ana", ActorRole: "agent", Action: "conflict.resolve",
		CustomerID: "cus_9", Target: "659ef6372b4d58e8bbaeca03f10a001e", Details: map[string]string{"choice": "KEEP_CURRENT"}, Source: "api@host",
	}
}

func TestRoundTrip(t *testing.T) {
	s, _, _ := newSerde(t)
	ctx := context.Background()
	for _, tc := range []struct {
		in, out any
	}{
		{sampleCustomerEvent(), new(events.CustomerEvent)},
		{sampleMessageEvent(), new(events.MessageEvent)},
		{sampleState(), new(events.CustomerState)},
		{sampleDeadLetter(), new(events.DeadLetter)},
		{sampleAudit(), new(events.AuditEvent)},
	} {
		b, err := s.Encode(tc.in)
		if err != nil {
			t.Fatalf("encoding %T: %v", tc.in, err)
		}
		if b[0] != 0 {
			t.Fatalf("%T: magic byte %d", tc.in, b[0])
		}
		if err := s.Decode(ctx, b, tc.out); err != nil {
			t.Fatalf("decoding %T: %v", tc.in, err)
		}
		if diff := cmp.Diff(tc.in, tc.out); diff != "" {
			t.Fatalf("%T round trip (-in +out):\n%s", tc.in, diff)
		}
	}
}

func TestSchemaIDsComeFromRegistry(t *testing.T) {
	s, reg, _ := newSerde(t)
	b, err := s.Encode(sampleCustomerEvent())
	if err != nil {
		t.Fatal(err)
	}
	id, _, err := codec.ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	text, err := reg.SchemaByID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if text != schemas.Current(schemas.CustomerEvent) {
		t.Fatalf("schema ID %d in the header is not the registered CustomerEvent schema", id)
	}
	if id != s.SchemaID(schemas.CustomerEvent) {
		t.Fatalf("header ID %d, SchemaID %d", id, s.SchemaID(schemas.CustomerEvent))
	}
}

func TestDecodeMalformed(t *testing.T) {
	s, _, _ := newSerde(t)
	ctx := context.Background()
	good, err := s.Encode(sampleCustomerEvent())
	if err != nil {
		t.Fatal(err)
	}
	msgID := s.SchemaID(schemas.MessageEvent)
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, codec.ErrShortHeader},
		{"short header", []byte{0, 0, 1}, codec.ErrShortHeader},
		{"wrong magic", append([]byte{1}, good[1:]...), codec.ErrBadMagic},
		{"unknown schema ID", append(codec.AppendHeader(nil, 987654), good[5:]...), codec.ErrUnknownSchema},
		{"truncated body", good[:len(good)-3], codec.ErrTruncated},
		{"header only", good[:5], codec.ErrTruncated},
		{"trailing bytes", append(append([]byte{}, good...), 0x02, 0x00), codec.ErrTrailingBytes},
		{"record of another schema", append(codec.AppendHeader(nil, msgID), good[5:]...), codec.ErrIncompatible},
		{"huge array length", append(codec.AppendHeader(nil, s.SchemaID(schemas.CustomerEvent)), 0x02, 'a', 0x02, 'b', 0x02, 0x02, 's', 0x02, 0x02, 0x02, 0x02, 0x02, 0xfe, 0xff, 0xff, 0xff, 0x0f), codec.ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ev events.CustomerEvent
			err := s.Decode(ctx, tt.in, &ev)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			var de *codec.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("got %T, want *codec.DecodeError", err)
			}
		})
	}
}

func TestEncodeRejectsInvalid(t *testing.T) {
	s, _, _ := newSerde(t)
	if _, err := s.Encode(events.CustomerEvent{}); err == nil {
		t.Fatal("a non-pointer must be rejected")
	}
	ev := sampleCustomerEvent()
	ev.Op = "SPLIT"
	if _, err := s.Encode(ev); err == nil {
		t.Fatal("an unknown op must be rejected")
	}
}
