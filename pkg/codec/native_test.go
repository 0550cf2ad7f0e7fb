package codec

import (
	"bytes"
	"math/rand/v2"
	"os"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/linkedin/goavro/v2"

	"github.com/omnisync/omnisync/internal/avrogen"
	"github.com/omnisync/omnisync/pkg/avro"
	"github.com/omnisync/omnisync/pkg/avro/avrotest"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/schemas"
)

// native_gen.go is what the generator writes from today's schemas and Go
// types: a schema or events change needs `go generate ./pkg/codec`.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	want, err := avrogen.Generate(avrogen.Config{Package: "codec", EventsDir: "../events", SchemasDir: "../../schemas", Command: "internal/tools/avrogen"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("native_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("native_gen.go is stale: run go generate ./pkg/codec")
	}
}

// The generated conversions agree with package avro's reflective mapping,
// which follows the Avro specification's rules, on random values of every
// schema, both ways.
func TestGeneratedMatchesReflection(t *testing.T) {
	newRecord := map[schemas.Name]func() any{
		schemas.CustomerEvent: func() any { return new(events.CustomerEvent) },
		schemas.MessageEvent:  func() any { return new(events.MessageEvent) },
		schemas.CustomerState: func() any { return new(events.CustomerState) },
		schemas.DeadLetter:    func() any { return new(events.DeadLetter) },
		schemas.IdentityLink:  func() any { return new(events.IdentityLink) },
		schemas.AuditEvent:    func() any { return new(events.AuditEvent) },
	}
	r := rand.New(rand.NewPCG(3, 5))
	for _, name := range schemas.All {
		if newRecord[name] == nil {
			t.Fatalf("add the Go type of %s to newRecord", name)
		}
		s, err := avro.Parse(schemas.Current(name))
		if err != nil {
			t.Fatal(err)
		}
		for range 300 {
			native := avrotest.Random(s, r)
			want, got := newRecord[name](), newRecord[name]()
			if err := avro.FromNative(s, native, want); err != nil {
				t.Fatalf("%s: reflective FromNative: %v", name, err)
			}
			if err := fromNative(native, got); err != nil {
				t.Fatalf("%s: fromNative: %v", name, err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("%s: fromNative differs from reflection (-reflection +generated):\n%s", name, diff)
			}
			wantNative, err := avro.ToNative(s, got)
			if err != nil {
				t.Fatalf("%s: reflective ToNative: %v", name, err)
			}
			sc := scratchPool.Get().(*scratch)
			gotNative, err := toNative(sc, got)
			if err != nil {
				t.Fatalf("%s: toNative: %v", name, err)
			}
			if diff := cmp.Diff(wantNative, gotNative); diff != "" {
				t.Fatalf("%s: toNative differs from reflection (-reflection +generated):\n%s", name, diff)
			}
			sc.release()
		}
	}
}

// Invalid values fail as they do with reflection, naming the path.
func TestGeneratedErrors(t *testing.T) {
	sc := new(scratch)
	bad := &events.CustomerEvent{Channel: "FAX"}
	if _, err := toNative(sc, bad); err == nil || err.Error() != `avro: channel: "FAX" is not a symbol of enum io.omnisync.v1.Channel` {
		t.Fatalf("unknown enum symbol: got %v", err)
	}
	badGender := events.Gender("X")
	if _, err := toNative(sc, &events.CustomerEvent{Profile: &events.Profile{Gender: &badGender}}); err == nil || err.Error() != `avro: profile.gender: "X" is not a symbol of enum io.omnisync.v1.Gender` {
		t.Fatalf("nested unknown enum symbol: got %v", err)
	}
	if _, err := toNative(sc, (*events.CustomerEvent)(nil)); err == nil {
		t.Fatal("a nil record must be rejected")
	}
	if _, err := toNative(sc, events.CustomerEvent{}); err == nil {
		t.Fatal("a non-pointer must be rejected")
	}
	var ev events.CustomerEvent
	err := fromNative(map[string]any{"event_id": int64(1)}, &ev)
	if err == nil || err.Error() != "avro: event_id: cannot store int64 as string" {
		t.Fatalf("wrong native type: got %v", err)
	}
	err = fromNative(map[string]any{"event_id": "e", "customer_id": "c", "channel": "WEB", "source": "s",
		"source_event_id": map[string]any{"long": int64(1)}}, &ev)
	if err == nil || err.Error() != "avro: source_event_id: union has no branch long" {
		t.Fatalf("wrong union branch: got %v", err)
	}
}

// The generated binary encoders write the bytes goavro writes for the
// native value of the same record, on random values of every schema;
// where a value holds a map of several entries (goavro writes them in Go's
// random map order) both decode to the same native value instead.
func TestBinaryMatchesGoavro(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 9))
	for _, name := range schemas.All {
		s, err := avro.Parse(schemas.Current(name))
		if err != nil {
			t.Fatal(err)
		}
		c, err := goavro.NewCodec(schemas.Current(name))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 500 {
			v := newOf(t, name)
			if err := fromNative(avrotest.Random(s, r), v); err != nil {
				t.Fatalf("%s: fromNative: %v", name, err)
			}
			native, err := toNative(new(scratch), v)
			if err != nil {
				t.Fatalf("%s: toNative: %v", name, err)
			}
			want, err := c.BinaryFromNative(nil, native)
			if err != nil {
				t.Fatalf("%s: goavro: %v", name, err)
			}
			got, ok, err := appendBinary([]byte("header"), v)
			if !ok || err != nil {
				t.Fatalf("%s: appendBinary: ok %v, %v", name, ok, err)
			}
			got = bytes.TrimPrefix(got, []byte("header"))
			if bytes.Equal(got, want) {
				continue
			}
			if !hasSeveralEntries(reflect.ValueOf(v)) {
				t.Fatalf("%s, value %d: binary encoding differs from goavro's:\n got %x\nwant %x", name, i, got, want)
			}
			gotNative, rest, err := c.NativeFromBinary(got)
			if err != nil || len(rest) != 0 {
				t.Fatalf("%s, value %d: goavro cannot decode the binary encoding: %v (%d bytes left)", name, i, err, len(rest))
			}
			if diff := cmp.Diff(native, gotNative); diff != "" {
				t.Fatalf("%s, value %d: binary encoding decodes to another value (-want +got):\n%s", name, i, diff)
			}
		}
	}
}

// The binary encoders refuse what toNative refuses, with its errors.
func TestBinaryErrors(t *testing.T) {
	badGender := events.Gender("X")
	for _, v := range []any{&events.CustomerEvent{Channel: "FAX"}, &events.CustomerEvent{Profile: &events.Profile{Gender: &badGender}}} {
		_, want := toNative(new(scratch), v)
		_, ok, got := appendBinary(nil, v)
		if want == nil || !ok || got == nil || got.Error() != want.Error() {
			t.Fatalf("%#v: appendBinary gave %v (handled %v), toNative %v", v, got, ok, want)
		}
	}
	if _, ok, err := appendBinary(nil, (*events.CustomerEvent)(nil)); !ok || err == nil {
		t.Fatal("a nil record must be rejected")
	}
	if _, ok, _ := appendBinary(nil, events.CustomerEvent{}); ok {
		t.Fatal("a non-pointer must not be encoded")
	}
}

func newOf(t *testing.T, name schemas.Name) any {
	switch name {
	case schemas.CustomerEvent:
		return new(events.CustomerEvent)
	case schemas.MessageEvent:
		return new(events.MessageEvent)
	case schemas.CustomerState:
		return new(events.CustomerState)
	case schemas.DeadLetter:
		return new(events.DeadLetter)
	case schemas.IdentityLink:
		return new(events.IdentityLink)
	case schemas.AuditEvent:
		return new(events.AuditEvent)
	}
	t.Fatalf("add the Go type of %s to newOf", name)
	return nil
}

// hasSeveralEntries reports whether v holds a map of more than one entry.
func hasSeveralEntries(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		return !v.IsNil() && hasSeveralEntries(v.Elem())
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() && hasSeveralEntries(v.Field(i)) {
				return true
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if hasSeveralEntries(v.Index(i)) {
				return true
			}
		}
	case reflect.Map:
		return v.Len() > 1
	}
	return false
}
