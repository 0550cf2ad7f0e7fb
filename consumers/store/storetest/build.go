package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/pkg/events"
)

// Builders of the events, records and batches the suite applies. Records
// are built by the merge contract from events, as the materializer does.

// t0 is the time the suite's events are stamped relative to.
var t0 = time.Date(2026, 5, 4, 8, 0, 0, 0, time.UTC)

// group is the consumer group of the suite's batches.
const group = "storetest"

var policy = merge.DefaultPolicy()

type option func(*events.CustomerEvent)

func name(v string) option  { return func(e *events.CustomerEvent) { profile(e).Name = &v } }
func phone(v string) option { return func(e *events.CustomerEvent) { profile(e).Phone = &v } }
func email(v string) option { return func(e *events.CustomerEvent) { profile(e).Email = &v } }

// full sets every typed field and an attribute.
func full() option {
	return func(e *events.CustomerEvent) {
		p := profile(e)
		g, level, birthday := events.GenderFemale, int32(3), time.Date(1990, 2, 3, 0, 0, 0, 0, time.UTC)
		p.Gender, p.VIPLevel, p.Birthday = &g, &level, &birthday
		p.Address = &events.Address{Country: "CN", Province: "广东", City: "深圳", District: "南山", Street: "科技园 1 号", PostalCode: "518000"}
		p.Tags = []string{"vip", "回头客"}
		p.IDNumber = ptr("110101199002030021")
		p.Attributes = map[string]string{"level": "gold", "order_no": "A-1001"}
	}
}

func cleared(fields ...string) option {
	return func(e *events.CustomerEvent) { e.Clears = append(e.Clears, fields...) }
}

func ident(kind, scope, value string) option {
	return func(e *events.CustomerEvent) {
		e.Identities = append(e.Identities, events.Identity{Kind: kind, Scope: scope, Value: value})
	}
}

func profile(e *events.CustomerEvent) *events.Profile {
	if e.Profile == nil {
		e.Profile = &events.Profile{}
	}
	return e.Profile
}

func event(op events.Op, customer, id string, at time.Duration, ch events.Channel, opts ...option) *events.CustomerEvent {
	e := &events.CustomerEvent{
		EventID: id, CustomerID: customer, Channel: ch, Source: fmt.Sprintf("%s-1", ch), Op: op,
		OccurredAt: t0.Add(at), IngestedAt: t0.Add(at),
	}
	for _, o := range opts {
		o(e)
	}
	return e
}

func upsert(customer, id string, at time.Duration, ch events.Channel, opts ...option) *events.CustomerEvent {
	return event(events.OpUpsert, customer, id, at, ch, opts...)
}

func remove(customer, id string, at time.Duration) *events.CustomerEvent {
	return event(events.OpDelete, customer, id, at, events.ChannelAgent)
}

// resolve closes the conflict the candidate event opened on field.
func resolve(customer, id string, at time.Duration, field, candidate string, choice events.ResolutionChoice, value *string) *events.CustomerEvent {
	e := event(events.OpResolve, customer, id, at, events.ChannelAgent)
	e.Resolution = &events.Resolution{
		ConflictID: merge.ConflictID(customer, field, candidate), Field: field, Choice: choice, Value: value, ResolvedBy: "agent-7",
	}
	return e
}

// message is a text message with every optional part filled in.
func message(customer, id string, at time.Duration, ch events.Channel, text string) events.MessageEvent {
	return events.MessageEvent{
		MessageID: id, CustomerID: customer, ConversationID: "conv-" + customer, Channel: ch, Source: "src-1",
		SourceMessageID: ptr("src-" + id), Direction: events.DirectionInbound, SenderType: events.SenderCustomer,
		SenderID: "sender-" + customer, ContentType: events.ContentText, Text: &text,
		Attachments: []events.Attachment{{URL: "https://cdn.example.com/" + id + ".jpg", MIMEType: "image/jpeg", SizeBytes: 1234, ThumbnailURL: ptr("https://cdn.example.com/t.jpg")}},
		Location:    &events.Location{Latitude: 22.5431, Longitude: 114.0579, PrecisionM: 12.5, Label: "深圳"},
		Transcript:  &events.TranscriptSegment{CallID: "call-1", Segment: 2, Speaker: "customer", StartMS: 100, EndMS: 900, Confidence: 0.87},
		Identities:  []events.Identity{{Kind: "device", Value: "dev-" + customer}},
		Tags:        []string{"greeting"}, Metadata: map[string]string{"k": "v"},
		OccurredAt: t0.Add(at), IngestedAt: t0.Add(at + time.Second),
	}
}

// fold applies events to r like the materializer, failing the test when
// one of them does not change the record.
func fold(t *testing.T, r merge.Record, evs ...*events.CustomerEvent) merge.Record {
	t.Helper()
	for _, e := range evs {
		var o merge.Outcome
		r, o = merge.Apply(r, e, policy)
		if !o.Changed {
			t.Fatalf("building records: event %s changed nothing (%+v)", e.EventID, o)
		}
	}
	return r
}

// foldMessages applies messages to r like the materializer.
func foldMessages(t *testing.T, r merge.Record, ms ...events.MessageEvent) merge.Record {
	t.Helper()
	for i := range ms {
		var o merge.Outcome
		r, o = merge.ApplyMessage(r, &ms[i], policy)
		if o.Ignored != "" {
			t.Fatalf("building records: message %s ignored: %s", ms[i].MessageID, o.Ignored)
		}
	}
	return r
}

// batch is a batch of records and messages with offsets on partition 0.
func batch(recs []merge.Record, msgs ...events.MessageEvent) *store.Batch {
	return &store.Batch{
		Group: group, PolicyHash: policy.Hash(), Records: recs, Messages: msgs,
		Offsets: map[string]map[int32]int64{"omnisync.customer.events.v1": {0: int64(len(recs) + len(msgs))}},
	}
}

func records(rs ...merge.Record) []merge.Record { return rs }

func apply(t *testing.T, s store.Store, b *store.Batch) {
	t.Helper()
	if err := s.Apply(context.Background(), b); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }
