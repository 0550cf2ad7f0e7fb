package merge_test

import (
	"strings"
	"testing"
	"time"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/pkg/events"
)

// Builders of the events the tests apply.

// t0 is the time the tests' events are stamped relative to.
var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// cust is the customer of the tests' events.
const cust = "cus_1"

type option func(*events.CustomerEvent)

// set sets a string field: name, phone, email, id_number or attributes.<key>.
func set(field, value string) option {
	return func(e *events.CustomerEvent) {
		if e.Profile == nil {
			e.Profile = &events.Profile{}
		}
		p := e.Profile
		switch field {
		case "name":
			p.Name = &value
		case "phone":
			p.Phone = &value
		case "email":
			p.Email = &value
		case "id_number":
			p.IDNumber = &value
		default:
			key, ok := strings.CutPrefix(field, "attributes.")
			if !ok {
				panic("set: not a string field: " + field)
			}
			if p.Attributes == nil {
				p.Attributes = map[string]string{}
			}
			p.Attributes[key] = value
		}
	}
}

// profile sets the event's whole profile.
func profile(p events.Profile) option {
	return func(e *events.CustomerEvent) { e.Profile = &p }
}

// cleared clears fields.
func cleared(fields ...string) option {
	return func(e *events.CustomerEvent) { e.Clears = append(e.Clears, fields...) }
}

// from sets the event's source (by default "<channel>-1", lower case).
func from(source string) option {
	return func(e *events.CustomerEvent) { e.Source = source }
}

// ident adds an identity.
func ident(kind, value string) option {
	return func(e *events.CustomerEvent) {
		e.Identities = append(e.Identities, events.Identity{Kind: kind, Value: value})
	}
}

// forCustomer sets the event's customer.
func forCustomer(id string) option {
	return func(e *events.CustomerEvent) { e.CustomerID = id }
}

func event(op events.Op, id string, at time.Duration, ch events.Channel, opts ...option) *events.CustomerEvent {
	e := &events.CustomerEvent{
		EventID: id, CustomerID: cust, Channel: ch, Source: strings.ToLower(string(ch)) + "-1",
		Op: op, OccurredAt: t0.Add(at), IngestedAt: t0.Add(at),
	}
	for _, o := range opts {
		o(e)
	}
	return e
}

func upsert(id string, at time.Duration, ch events.Channel, opts ...option) *events.CustomerEvent {
	return event(events.OpUpsert, id, at, ch, opts...)
}

func remove(id string, at time.Duration, opts ...option) *events.CustomerEvent {
	return event(events.OpDelete, id, at, events.ChannelAgent, opts...)
}

// resolve resolves the conflict that candidate event opened on field.
func resolve(id string, at time.Duration, field, candidate string, choice events.ResolutionChoice, value *string) *events.CustomerEvent {
	e := event(events.OpResolve, id, at, events.ChannelAgent, from("console"))
	e.Resolution = &events.Resolution{
		ConflictID: merge.ConflictID(cust, field, candidate), Field: field,
		Choice: choice, Value: value, ResolvedBy: "agent-7",
	}
	return e
}

func message(id string, at time.Duration, ch events.Channel, ids ...events.Identity) *events.MessageEvent {
	return &events.MessageEvent{
		MessageID: id, CustomerID: cust, ConversationID: "conv-1", Channel: ch, Source: "src",
		Direction: events.DirectionInbound, SenderType: events.SenderCustomer, ContentType: events.ContentText,
		Identities: ids, OccurredAt: t0.Add(at), IngestedAt: t0.Add(at),
	}
}

func ptr[T any](v T) *T { return &v }

// applyAll applies evs in order to a fresh record, failing on an ignored event.
func applyAll(t testing.TB, p *merge.Policy, evs ...*events.CustomerEvent) merge.Record {
	t.Helper()
	var r merge.Record
	for _, e := range evs {
		var out merge.Outcome
		r, out = merge.Apply(r, e, p)
		if out.Ignored != "" {
			t.Fatalf("given event %s ignored: %s", e.EventID, out.Ignored)
		}
	}
	return r
}

// openConflicts counts the record's open conflicts.
func openConflicts(r merge.Record) int {
	n := 0
	for _, c := range r.Conflicts {
		if c.Open() {
			n++
		}
	}
	return n
}

// checkApply applies ev to r and checks the invariants every Apply keeps:
// the input is untouched, the version grows by one exactly on a change,
// NeedsReview says whether a conflict is open.
func checkApply(t testing.TB, r merge.Record, ev *events.CustomerEvent, p *merge.Policy) (merge.Record, merge.Outcome) {
	t.Helper()
	before := r.CanonicalHash()
	next, out := merge.Apply(r, ev, p)
	if r.CanonicalHash() != before {
		t.Fatalf("Apply modified its input record")
	}
	checkInvariants(t, r, next, out, false)
	return next, out
}

// checkInvariants checks what every fold keeps: the version grows by one
// exactly when the record changed, NeedsReview says whether a conflict is
// open. msg says prev→next was the fold of a message, which counts in the
// version whatever it changed, and when ignored as older than the
// tombstone changes nothing else.
func checkInvariants(t testing.TB, prev, next merge.Record, out merge.Outcome, msg bool) {
	t.Helper()
	// The content changed, not just the bookkeeping that follows a change.
	content := next
	content.Version, content.UpdatedAt, content.PolicyHash = prev.Version, prev.UpdatedAt, prev.PolicyHash
	if content.Own != nil && prev.Own != nil {
		// A survivor's own record counts a message in its version too.
		own := *content.Own
		own.Version, own.UpdatedAt, own.PolicyHash = prev.Own.Version, prev.Own.UpdatedAt, prev.Own.PolicyHash
		content.Own = &own
	}
	changed := prev.CanonicalHash() != content.CanonicalHash()
	counted := msg && (out.Ignored == "" || out.Ignored == merge.ReasonBeforeTombstone)
	switch {
	case counted && !out.Changed:
		t.Fatalf("a message (ignored: %q) did not count in the version", out.Ignored)
	case !counted && out.Changed != changed:
		t.Fatalf("Outcome.Changed = %v, but the content changed: %v", out.Changed, changed)
	case out.Changed && next.Version != prev.Version+1:
		t.Fatalf("version %d → %d on a change", prev.Version, next.Version)
	case !out.Changed && next.Version != prev.Version:
		t.Fatalf("version %d → %d without a change", prev.Version, next.Version)
	case out.Ignored != "" && changed:
		t.Fatalf("ignored (%s) but changed", out.Ignored)
	case out.Ignored != "" && out.Changed && !counted:
		t.Fatalf("ignored (%s) but counted", out.Ignored)
	case next.NeedsReview != (openConflicts(next) > 0):
		t.Fatalf("NeedsReview = %v with %d open conflicts", next.NeedsReview, openConflicts(next))
	}
}
