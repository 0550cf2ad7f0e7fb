package codec_test

import (
	"context"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/linkedin/goavro/v2"

	"github.com/omnisync/omnisync/pkg/avro"
	"github.com/omnisync/omnisync/pkg/avro/avrotest"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/schemas"
)

// checkFull reports whether next may follow prev under FULL compatibility:
// each reads what the other writes.
func checkFull(prev, next string) error {
	if err := avro.CanRead(next, prev); err != nil {
		return err
	}
	return avro.CanRead(prev, next)
}

// Every released version of every schema is FULL compatible with the current
// one, and the current one is released: a schema change must add a new
// history/<name>/v<N>.avsc and pass this test.
func TestSchemaHistoryIsFullCompatible(t *testing.T) {
	for _, name := range schemas.All {
		history, err := schemas.History(name)
		if err != nil {
			t.Fatal(err)
		}
		if len(history) == 0 {
			t.Fatalf("%s has no released version in schemas/history", name)
		}
		current := schemas.Current(name)
		if history[len(history)-1] != current {
			t.Errorf("%s.avsc differs from its newest released version: copy it to schemas/history/%s/v%d.avsc", name, name, len(history)+1)
		}
		for i, old := range history {
			if err := checkFull(old, current); err != nil {
				t.Errorf("%s: v%d and the current schema are not FULL compatible: %v", name, i+1, err)
			}
		}
	}
}

// The check above fails for a change that is not FULL compatible.
func TestFullCompatibilityCheckCatchesBreakingChanges(t *testing.T) {
	v0, err := os.ReadFile("testdata/customer_event_v0.avsc")
	if err != nil {
		t.Fatal(err)
	}
	breaking := map[string]string{
		"field added without default": `{"type":"record","name":"CustomerEvent","namespace":"io.omnisync.v1","fields":[{"name":"event_id","type":"string"},{"name":"tenant","type":"string"}]}`,
		"field type changed":          `{"type":"record","name":"CustomerEvent","namespace":"io.omnisync.v1","fields":[{"name":"event_id","type":"long"}]}`,
	}
	for what, next := range breaking {
		if err := checkFull(`{"type":"record","name":"CustomerEvent","namespace":"io.omnisync.v1","fields":[{"name":"event_id","type":"string"}]}`, next); err == nil {
			t.Errorf("%s: passed the FULL check", what)
		}
	}
	// v0 → current is compatible in both directions, since every field
	// either side adds has a default.
	if err := checkFull(string(v0), schemas.Current(schemas.CustomerEvent)); err != nil {
		t.Errorf("v0 → current: %v", err)
	}
}

// registerRaw registers a schema under a test subject and returns a function
// that encodes native values with it in the wire format.
func registerRaw(t *testing.T, s interface {
	Register(context.Context, string, string) (int, error)
}, subject, text string) func(native any) []byte {
	t.Helper()
	id, err := s.Register(context.Background(), subject, text)
	if err != nil {
		t.Fatal(err)
	}
	c, err := goavro.NewCodec(text)
	if err != nil {
		t.Fatal(err)
	}
	return func(native any) []byte {
		b, err := c.BinaryFromNative(codec.AppendHeader(nil, id), native)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

// A record written with an older schema decodes with today's types: fields
// match by name, new fields take their defaults, dropped fields are skipped.
func TestDecodeOlderVersion(t *testing.T) {
	s, reg, _ := newSerde(t)
	v0, err := os.ReadFile("testdata/customer_event_v0.avsc")
	if err != nil {
		t.Fatal(err)
	}
	encode := registerRaw(t, reg, "evolution-test-value", string(v0))
	b := encode(map[string]any{
		"event_id": "e-1", "customer_id": "cus_9", "channel": "WECHAT", "source": "legacy",
		"source_event_id": map[string]any{"string": "msg-1"}, "op": "UPSERT",
		"occurred_at": t0, "ingested_at": t0,
		"identities": []any{map[string]any{"kind": "wechat_openid", "value": "o6_x"}},
		"profile": map[string]any{"io.omnisync.v1.Profile": map[string]any{
			"name": map[string]any{"string": "Li Na"}, "phone": nil, "email": map[string]any{"string": "li.na@example.com"},
			"legacy_score": int32(9), "attributes": map[string]any{"tier": "gold"},
		}},
	})
	var got events.CustomerEvent
	if err := s.Decode(context.Background(), b, &got); err != nil {
		t.Fatal(err)
	}
	want := events.CustomerEvent{
		EventID: "e-1", CustomerID: "cus_9", Channel: events.ChannelWeChat, Source: "legacy",
		SourceEventID: ptr("msg-1"), Op: events.OpUpsert, OccurredAt: t0, IngestedAt: t0,
		Identities: []events.Identity{{Kind: "wechat_openid", Scope: "", Value: "o6_x"}},
		Profile: &events.Profile{
			Name: ptr("Li Na"), Email: ptr("li.na@example.com"), Attributes: map[string]string{"tier": "gold"},
		},
		Clears: []string{},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("decoded v0 record (-want +got):\n%s", diff)
	}
}

// Random records written with every released version of every schema
// decode with today's code into the same values, field by field.
func TestEveryReleasedVersionDecodes(t *testing.T) {
	s, reg, _ := newSerde(t)
	r := rand.New(rand.NewPCG(7, 11))
	newValue := map[schemas.Name]func() any{
		schemas.CustomerEvent: func() any { return new(events.CustomerEvent) },
		schemas.MessageEvent:  func() any { return new(events.MessageEvent) },
		schemas.CustomerState: func() any { return new(events.CustomerState) },
		schemas.DeadLetter:    func() any { return new(events.DeadLetter) },
		schemas.IdentityLink:  func() any { return new(events.IdentityLink) },
		schemas.AuditEvent:    func() any { return new(events.AuditEvent) },
	}
	for _, name := range schemas.All {
		history, err := schemas.History(name)
		if err != nil {
			t.Fatal(err)
		}
		current, err := avro.Parse(schemas.Current(name))
		if err != nil {
			t.Fatal(err)
		}
		for i, text := range history {
			old, err := avro.Parse(text)
			if err != nil {
				t.Fatal(err)
			}
			resolver, err := avro.Compile(old, current)
			if err != nil {
				t.Fatal(err)
			}
			encode := registerRaw(t, reg, string(name)+"-history-test-value", text)
			for range 50 {
				native := avrotest.Random(old, r)
				v := newValue[name]()
				if err := s.Decode(context.Background(), encode(native), v); err != nil {
					t.Fatalf("%s v%d: %v", name, i+1, err)
				}
				got, err := avro.ToNative(current, v)
				if err != nil {
					t.Fatal(err)
				}
				want, err := resolver.Resolve(native)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(truncateTimes(want), got); diff != "" {
					t.Fatalf("%s v%d (-want +got):\n%s", name, i+1, diff)
				}
			}
		}
	}
}

// truncateTimes drops what timestamp-millis cannot carry; goavro returns UTC.
func truncateTimes(v any) any {
	switch x := v.(type) {
	case time.Time:
		return x.Truncate(time.Millisecond).UTC()
	case map[string]any:
		for k, y := range x {
			x[k] = truncateTimes(y)
		}
	case []any:
		for i, y := range x {
			x[i] = truncateTimes(y)
		}
	}
	return v
}

// Records written with today's schema are read by every released version
// (the other half of FULL): resolved onto the old schema, each is a valid
// record of it that the old schema encodes.
func TestReleasedVersionsReadCurrent(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 17))
	for _, name := range schemas.All {
		history, err := schemas.History(name)
		if err != nil {
			t.Fatal(err)
		}
		text := schemas.Current(name)
		current, err := avro.Parse(text)
		if err != nil {
			t.Fatal(err)
		}
		currentCodec, err := goavro.NewCodec(text)
		if err != nil {
			t.Fatal(err)
		}
		for i, oldText := range history {
			old, err := avro.Parse(oldText)
			if err != nil {
				t.Fatal(err)
			}
			oldCodec, err := goavro.NewCodec(oldText)
			if err != nil {
				t.Fatal(err)
			}
			resolver, err := avro.Compile(current, old)
			if err != nil {
				t.Fatalf("%s: v%d cannot read the current schema: %v", name, i+1, err)
			}
			for range 50 {
				b, err := currentCodec.BinaryFromNative(nil, avrotest.Random(current, r))
				if err != nil {
					t.Fatal(err)
				}
				written, _, err := currentCodec.NativeFromBinary(b)
				if err != nil {
					t.Fatal(err)
				}
				read, err := resolver.Resolve(written)
				if err != nil {
					t.Fatalf("%s: v%d reading a current record: %v", name, i+1, err)
				}
				if _, err := oldCodec.BinaryFromNative(nil, read); err != nil {
					t.Fatalf("%s: what v%d read is not a v%d record: %v", name, i+1, i+1, err)
				}
			}
		}
	}
}

// The merge steps across versions: a reader of v2 (before merges) reads a
// MERGE as op UNKNOWN without its merge, which every fold ignores; today's
// reader reads a v2 event with no merge, and a MERGE back whole.
func TestMergeEventAcrossVersions(t *testing.T) {
	s, reg, _ := newSerde(t)
	history, err := schemas.History(schemas.CustomerEvent)
	if err != nil {
		t.Fatal(err)
	}
	v2 := history[1]
	ev := &events.CustomerEvent{
		EventID: "2JxZ0n4sYGyWkPqQpNQXyFz6a1C", CustomerID: "cus_a", Channel: events.ChannelAgent, Source: "api",
		Op: events.OpMerge, OccurredAt: t0, IngestedAt: t0, Identities: []events.Identity{},
		Clears: []string{},
		Merge: &events.Merge{
			SurvivorID: "cus_s", AbsorbedID: "cus_a", DecidedBy: "agent-7",
			Evidence:     []events.Identity{{Kind: "phone", Value: "+8613800138000", Verified: true}},
			SnapshotJSON: ptr(`{"customer_id":"cus_a"}`),
		},
	}
	b, err := s.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	var back events.CustomerEvent
	if err := s.Decode(context.Background(), b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(*ev, back); diff != "" {
		t.Fatalf("MERGE round trip (-want +got):\n%s", diff)
	}

	// An old reader: resolve the current record onto v2.
	current, err := avro.Parse(schemas.Current(schemas.CustomerEvent))
	if err != nil {
		t.Fatal(err)
	}
	old, err := avro.Parse(v2)
	if err != nil {
		t.Fatal(err)
	}
	resolver, err := avro.Compile(current, old)
	if err != nil {
		t.Fatal(err)
	}
	native, err := avro.ToNative(current, ev)
	if err != nil {
		t.Fatal(err)
	}
	read, err := resolver.Resolve(native)
	if err != nil {
		t.Fatal(err)
	}
	m := read.(map[string]any)
	if m["op"] != "UNKNOWN" {
		t.Errorf("v2 reads op %v, want UNKNOWN (the enum's default)", m["op"])
	}
	if _, ok := m["merge"]; ok {
		t.Error("v2 reads a merge field it does not have")
	}

	// A v2 writer: today's reader sees no merge.
	encode := registerRaw(t, reg, "merge-evolution-test-value", v2)
	oldNative, err := avro.ToNative(old, sampleCustomerEvent())
	if err != nil {
		t.Fatal(err)
	}
	var fromOld events.CustomerEvent
	if err := s.Decode(context.Background(), encode(oldNative), &fromOld); err != nil {
		t.Fatal(err)
	}
	if fromOld.Merge != nil || fromOld.Op != events.OpUpsert {
		t.Errorf("v2 event read as op %s with merge %+v, want UPSERT without merge", fromOld.Op, fromOld.Merge)
	}
}
