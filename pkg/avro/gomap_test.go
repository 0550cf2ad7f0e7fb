package avro_test

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/omnisync/omnisync/pkg/avro"
	"github.com/omnisync/omnisync/pkg/avro/avrotest"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/schemas"
)

// Every schema's random native values survive native → Go → native, so the
// Go types cover every field of the current schemas with the right types.
func TestGoTypesCoverSchemas(t *testing.T) {
	types := map[schemas.Name]func() any{
		schemas.CustomerEvent: func() any { return new(events.CustomerEvent) },
		schemas.MessageEvent:  func() any { return new(events.MessageEvent) },
		schemas.CustomerState: func() any { return new(events.CustomerState) },
		schemas.DeadLetter:    func() any { return new(events.DeadLetter) },
		schemas.IdentityLink:  func() any { return new(events.IdentityLink) },
		schemas.AuditEvent:    func() any { return new(events.AuditEvent) },
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, name := range schemas.All {
		s, err := avro.Parse(schemas.Current(name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for range 300 {
			native := avrotest.Random(s, r)
			v := types[name]()
			if err := avro.FromNative(s, native, v); err != nil {
				t.Fatalf("%s: FromNative: %v", name, err)
			}
			back, err := avro.ToNative(s, v)
			if err != nil {
				t.Fatalf("%s: ToNative: %v", name, err)
			}
			if diff := cmp.Diff(native, back); diff != "" {
				t.Fatalf("%s: round trip differs (-native +back):\n%s", name, diff)
			}
		}
	}
}

func TestToNativeErrors(t *testing.T) {
	s, err := avro.Parse(schemas.Current(schemas.CustomerEvent))
	if err != nil {
		t.Fatal(err)
	}
	bad := &events.CustomerEvent{Channel: "FAX", Op: events.OpUpsert, OccurredAt: time.Now()}
	if _, err := avro.ToNative(s, bad); err == nil {
		t.Fatal("want an error for an unknown enum symbol")
	}
	// An empty enum takes the enum's default.
	ok := &events.CustomerEvent{OccurredAt: time.Now(), IngestedAt: time.Now()}
	native, err := avro.ToNative(s, ok)
	if err != nil {
		t.Fatal(err)
	}
	if got := native.(map[string]any)["channel"]; got != "UNKNOWN" {
		t.Fatalf("empty channel encoded as %v, want UNKNOWN", got)
	}
	if _, err := avro.ToNative(s, struct{ X int }{}); err == nil || reflect.TypeOf(err) == nil {
		t.Fatal("want an error for a struct without the schema's fields")
	}
}
