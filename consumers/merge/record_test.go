package merge_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/linkedin/goavro/v2"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/pkg/avro"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/schemas"
)

func TestStampAfter(t *testing.T) {
	tests := []struct {
		name string
		s, o merge.Stamp
		want bool
	}{
		{"later time", merge.Stamp{t0.Add(time.Millisecond), "a"}, merge.Stamp{t0, "b"}, true},
		{"earlier time", merge.Stamp{t0, "b"}, merge.Stamp{t0.Add(time.Millisecond), "a"}, false},
		{"same time, higher ID", merge.Stamp{t0, "b"}, merge.Stamp{t0, "a"}, true},
		{"same time, lower ID", merge.Stamp{t0, "a"}, merge.Stamp{t0, "b"}, false},
		{"equal", merge.Stamp{t0, "a"}, merge.Stamp{t0, "a"}, false},
		{"same instant in another zone", merge.Stamp{t0.In(time.FixedZone("CST", 8*3600)), "b"}, merge.Stamp{t0, "a"}, true},
		{"anything after zero", merge.Stamp{t0, ""}, merge.Stamp{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.s.After(tt.o); got != tt.want {
				t.Errorf("%v.After(%v) = %v, want %v", tt.s, tt.o, got, tt.want)
			}
		})
	}
}

// richRecord has every part a record can have: fields and cleared fields,
// identities, open and closed conflicts, a tombstone and a last contact.
func richRecord(t testing.TB) merge.Record {
	r := applyAll(t, nil,
		upsert("e0", -time.Hour, web, set("name", "gone"), ident("web_visitor", "v0")),
		remove("d0", -time.Minute),
		upsert("e1", 0, crm, profile(sampleProfile()), ident("crm", "42")),
		upsert("e2", time.Hour, wechat, set("phone", "+2"), set("email", "x@y.cn"), cleared("tags"), ident("wechat_openid", "o1")),
		resolve("r1", 2*time.Hour, "email", "e2", events.ChoiceKeepCurrent, nil),
	)
	r, _ = merge.ApplyMessage(r, message("m1", 3*time.Hour, wechat, events.Identity{Kind: "wechat_openid", Scope: "wx1", Value: "o1"}), nil)
	return r
}

func TestRecordJSONRoundTrip(t *testing.T) {
	for name, r := range map[string]merge.Record{"zero": {}, "rich": richRecord(t)} {
		t.Run(name, func(t *testing.T) {
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			var back merge.Record
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if back.CanonicalHash() != r.CanonicalHash() {
				t.Fatalf("hash changed in a JSON round trip:\n%s", b)
			}
			if diff := cmp.Diff(r.State(), back.State()); diff != "" {
				t.Errorf("state changed in a JSON round trip (-before +after):\n%s", diff)
			}
			// A reloaded record goes on exactly like the one kept in memory.
			next := upsert("e9", 4*time.Hour, crm, set("phone", "+9"), set("name", "Wang"))
			a, _ := merge.Apply(r, next, nil)
			c, _ := merge.Apply(back, next, nil)
			if a.CanonicalHash() != c.CanonicalHash() {
				t.Error("reloaded record diverges from the original")
			}
		})
	}
	var r merge.Record
	if err := json.Unmarshal([]byte(`{"customer_id":"x","surprise":1}`), &r); err == nil {
		t.Error("unknown key accepted")
	}
}

func TestCanonicalHash(t *testing.T) {
	base := richRecord(t)
	h := base.CanonicalHash()
	if len(h) != 64 {
		t.Fatalf("hash %q is not hex SHA-256", h)
	}
	mutations := map[string]func(*merge.Record){
		"version":         func(r *merge.Record) { r.Version++ },
		"field value":     func(r *merge.Record) { g := r.Fields["name"]; g.Value = `"x"`; r.Fields["name"] = g },
		"field stamp":     func(r *merge.Record) { g := r.Fields["name"]; g.Stamp.EventID = "z"; r.Fields["name"] = g },
		"field source":    func(r *merge.Record) { g := r.Fields["name"]; g.Source = "z"; r.Fields["name"] = g },
		"extra field":     func(r *merge.Record) { r.Fields["attributes.x"] = merge.Register{Value: "null"} },
		"identity":        func(r *merge.Record) { r.Identities = r.Identities[1:] },
		"conflict status": func(r *merge.Record) { r.Conflicts[0].Status = events.ConflictSetValue },
		"resolver":        func(r *merge.Record) { r.Conflicts[0].ResolvedBy = "someone" },
		"needs review":    func(r *merge.Record) { r.NeedsReview = !r.NeedsReview },
		"tombstone":       func(r *merge.Record) { r.Tombstone = nil },
		"last contact":    func(r *merge.Record) { r.LastContact = &merge.Stamp{At: t0, EventID: "m0"} },
		"contact channel": func(r *merge.Record) { r.LastContactChannel = phone },
		"updated at":      func(r *merge.Record) { r.UpdatedAt = r.UpdatedAt.Add(time.Millisecond) },
		"policy":          func(r *merge.Record) { r.PolicyHash = "other" },
		"customer":        func(r *merge.Record) { r.CustomerID = "cus_2" },
	}
	for name, mutate := range mutations {
		t.Run(name, func(t *testing.T) {
			var r merge.Record
			b, _ := json.Marshal(base)
			if err := json.Unmarshal(b, &r); err != nil { // a deep copy
				t.Fatal(err)
			}
			mutate(&r)
			if r.CanonicalHash() == h {
				t.Errorf("changing the %s does not change the hash", name)
			}
		})
	}
	if (merge.Record{Fields: map[string]merge.Register{}}).CanonicalHash() != (merge.Record{}).CanonicalHash() {
		t.Error("an empty map and a nil map hash differently")
	}
}

func TestState(t *testing.T) {
	r := applyAll(t, nil,
		upsert("e1", 0, crm, set("phone", "+1"), set("name", "Li"), ident("crm", "42")),
		upsert("e2", time.Hour, wechat, set("phone", "+2"), cleared("name")),
	)
	r, _ = merge.ApplyMessage(r, message("m1", 2*time.Hour, phone), nil)
	contact := t0.Add(2 * time.Hour)
	want := events.CustomerState{
		CustomerID: cust,
		Version:    3,
		Fields: map[string]events.Register{
			"phone": {ValueJSON: `"+1"`, OccurredAt: t0, EventID: "e1", Channel: crm, Source: "crm-1"},
			"name":  {ValueJSON: "null", OccurredAt: t0.Add(time.Hour), EventID: "e2", Channel: wechat, Source: "wechat-1"},
		},
		Identities: []events.Identity{{Kind: "crm", Value: "42"}},
		Conflicts: []events.Conflict{{
			ID: merge.ConflictID(cust, "phone", "e2"), Field: "phone", CurrentJSON: `"+1"`, CandidateJSON: `"+2"`,
			CandidateEventID: "e2", CandidateChannel: wechat, CandidateSource: "wechat-1",
			DetectedAt: t0.Add(time.Hour), Status: events.ConflictOpen,
		}},
		NeedsReview:        true,
		LastContactAt:      &contact,
		LastContactChannel: phone,
		UpdatedAt:          contact,
		PolicyHash:         merge.DefaultPolicy().Hash(),
		AbsorbedIDs:        []string{},
	}
	if diff := cmp.Diff(want, r.State()); diff != "" {
		t.Errorf("State() (-want +got):\n%s", diff)
	}

	deleted := applyAll(t, nil, upsert("e1", 0, crm, set("name", "Li")), remove("d1", time.Hour)).State()
	wantDeleted := events.CustomerState{
		CustomerID: cust, Version: 2, Deleted: true,
		Fields: map[string]events.Register{}, Identities: []events.Identity{}, Conflicts: []events.Conflict{},
		LastContactChannel: events.ChannelUnknown, UpdatedAt: t0.Add(time.Hour), PolicyHash: merge.DefaultPolicy().Hash(),
		AbsorbedIDs: []string{},
	}
	if diff := cmp.Diff(wantDeleted, deleted); diff != "" {
		t.Errorf("State() of a deleted customer (-want +got):\n%s", diff)
	}

	// The merge: the absorbed customer names its survivor, the survivor
	// its absorbed customers.
	req := &events.CustomerEvent{EventID: "m1", CustomerID: "cus_b", Channel: events.ChannelAgent, Op: events.OpMerge,
		OccurredAt: t0, IngestedAt: t0, Merge: &events.Merge{SurvivorID: "cus_a", AbsorbedID: "cus_b"}}
	frozen, o := merge.Apply(merge.Record{}, req, nil)
	if st := frozen.State(); st.MergedInto == nil || *st.MergedInto != "cus_a" || len(o.Emit) != 1 {
		t.Fatalf("State() of an absorbed customer: merged_into %v (%d emitted)", st.MergedInto, len(o.Emit))
	}
	survivor, _ := merge.Apply(merge.Record{}, &o.Emit[0], nil)
	if st := survivor.State(); st.MergedInto != nil || !slices.Equal(st.AbsorbedIDs, []string{"cus_b"}) {
		t.Errorf("State() of the survivor: merged_into %v, absorbed %v; want none and [cus_b]", st.MergedInto, st.AbsorbedIDs)
	}
}

// TestStateEncodes checks State() against the real customer_state schema:
// it encodes to Avro and decodes back unchanged.
func TestStateEncodes(t *testing.T) {
	text := schemas.Current(schemas.CustomerState)
	codec, err := goavro.NewCodec(text)
	if err != nil {
		t.Fatal(err)
	}
	schema, err := avro.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]merge.Record{"zero": {}, "rich": richRecord(t)} {
		t.Run(name, func(t *testing.T) {
			state := r.State()
			native, err := avro.ToNative(schema, state)
			if err != nil {
				t.Fatal(err)
			}
			bin, err := codec.BinaryFromNative(nil, native)
			if err != nil {
				t.Fatal(err)
			}
			decoded, _, err := codec.NativeFromBinary(bin)
			if err != nil {
				t.Fatal(err)
			}
			var back events.CustomerState
			if err := avro.FromNative(schema, decoded, &back); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(state, back, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
				t.Errorf("Avro round trip (-state +decoded):\n%s", diff)
			}
		})
	}
}
