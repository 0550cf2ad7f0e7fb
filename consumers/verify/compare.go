package verify

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/pkg/events"
)

// Report is the outcome of a verification.
type Report struct {
	// Agree is how many customers both sides hold identically.
	Agree int
	// Differ is every customer that differs, in customer-ID order.
	Differ []Difference
	// Sides names the two sides compared: "store" and "log" for
	// AgainstLog, "first" and "second" for Stores.
	Sides [2]string
	// Repaired is how many of the differing customers AgainstLog
	// re-materialized from the log (Config.Repair).
	Repaired int
}

// OK reports whether the two sides agree on every customer.
func (r *Report) OK() bool { return len(r.Differ) == 0 }

// Summary is the report's one-line summary.
func (r *Report) Summary() string {
	return fmt.Sprintf("%d customers agree, %d differ (%s vs %s)", r.Agree, len(r.Differ), r.Sides[0], r.Sides[1])
}

// Difference is one customer that differs and what differs.
type Difference struct {
	CustomerID string
	// Parts names what differs, e.g. `missing in the store`,
	// `field "name"`, `version 4 (store) vs 5 (log)`, `conflict <id>`,
	// `identities`, `tombstone`, `message <id> missing in the store`.
	Parts []string
}

// String is the customer ID and what differs, on one line.
func (d Difference) String() string { return d.CustomerID + ": " + strings.Join(d.Parts, "; ") }

// customer is one customer as a side holds it.
type customer struct {
	record   *merge.Record // nil: the side does not hold the customer
	messages []events.MessageEvent
}

// Stores compares two stores customer by customer, reading each a page at
// a time (memory does not grow with the stores).
func Stores(ctx context.Context, a, b store.Scanner) (*Report, error) {
	rep := &Report{Sides: [2]string{"first", "second"}}
	if err := compare(ctx, a, b, rep, nil); err != nil {
		return nil, err
	}
	return rep, nil
}

// compare walks both scans in customer-ID order and fills rep. note, when
// not nil, adds to the parts of a customer only the first side holds.
func compare(ctx context.Context, a, b store.Scanner, rep *Report, note func(id string) string) error {
	nextA, errA, stopA := pull(ctx, a)
	defer stopA()
	nextB, errB, stopB := pull(ctx, b)
	defer stopB()
	ca, okA := nextA()
	cb, okB := nextB()
	for okA || okB {
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case okA && (!okB || ca.record.CustomerID < cb.record.CustomerID):
			rep.differ(ca.record.CustomerID, ca, customer{}, note)
			ca, okA = nextA()
		case okB && (!okA || cb.record.CustomerID < ca.record.CustomerID):
			rep.differ(cb.record.CustomerID, customer{}, cb, note)
			cb, okB = nextB()
		default:
			if CustomerHash(*ca.record, ca.messages) == CustomerHash(*cb.record, cb.messages) {
				rep.Agree++
			} else {
				rep.differ(ca.record.CustomerID, ca, cb, note)
			}
			ca, okA = nextA()
			cb, okB = nextB()
		}
	}
	return errors.Join(errA(), errB())
}

// pull turns a store's Scan into an iterator; err is the scan's error once
// next has returned false.
func pull(ctx context.Context, s store.Scanner) (next func() (customer, bool), err func() error, stop func()) {
	var scanErr error
	seq := func(yield func(customer) bool) {
		stopped := errors.New("stopped")
		scanErr = s.Scan(ctx, func(r merge.Record, ms []events.MessageEvent) error {
			if !yield(customer{&r, ms}) {
				return stopped
			}
			return nil
		})
		if errors.Is(scanErr, stopped) {
			scanErr = nil
		}
	}
	next, stop = iter.Pull(seq)
	return next, func() error { return scanErr }, stop
}

// differ records that the customer differs between a and b and what.
func (rep *Report) differ(id string, a, b customer, note func(string) string) {
	d := Difference{CustomerID: id, Parts: parts(rep.Sides, a, b)}
	if a.record != nil && b.record == nil && note != nil {
		if n := note(id); n != "" {
			d.Parts = append(d.Parts, n)
		}
	}
	rep.Differ = append(rep.Differ, d)
}

// parts names what differs between two versions of a customer.
func parts(sides [2]string, a, b customer) []string {
	switch {
	case a.record == nil:
		return []string{"missing in the " + sides[0]}
	case b.record == nil:
		return []string{"missing in the " + sides[1]}
	}
	ra, rb := *a.record, *b.record
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	if ra.Version != rb.Version {
		add("version %d (%s) vs %d (%s)", ra.Version, sides[0], rb.Version, sides[1])
	}
	if stamp(ra.Tombstone) != stamp(rb.Tombstone) {
		add("tombstone %s (%s) vs %s (%s)", stamp(ra.Tombstone), sides[0], stamp(rb.Tombstone), sides[1])
	}
	for _, f := range slices.Sorted(maps.Keys(union(ra.Fields, rb.Fields))) {
		ga, okA := ra.Fields[f]
		gb, okB := rb.Fields[f]
		switch {
		case !okA:
			add("field %q missing in the %s", f, sides[0])
		case !okB:
			add("field %q missing in the %s", f, sides[1])
		case ga.Value != gb.Value || ga.Channel != gb.Channel || ga.Source != gb.Source || stamp(&ga.Stamp) != stamp(&gb.Stamp):
			add("field %q", f)
		}
	}
	ca, cb := conflicts(ra), conflicts(rb)
	for _, id := range slices.Sorted(maps.Keys(union(ca, cb))) {
		x, okA := ca[id]
		y, okB := cb[id]
		switch {
		case !okA:
			add("conflict %s missing in the %s", id, sides[0])
		case !okB:
			add("conflict %s missing in the %s", id, sides[1])
		case !x.Equal(y):
			add("conflict %s", id)
		}
	}
	if !slices.Equal(ra.AllIdentities(), rb.AllIdentities()) {
		add("identities")
	}
	if !slices.EqualFunc(ra.Sightings, rb.Sightings, sameSighting) {
		add("sightings")
	}
	if ra.NeedsReview != rb.NeedsReview {
		add("needs_review")
	}
	if stamp(ra.LastContact) != stamp(rb.LastContact) || ra.LastContactChannel != rb.LastContactChannel {
		add("last contact")
	}
	if !ra.UpdatedAt.Equal(rb.UpdatedAt) {
		add("updated_at")
	}
	if ra.PolicyHash != rb.PolicyHash {
		add("policy hash")
	}
	ma, mb := byMessageID(a.messages), byMessageID(b.messages)
	for _, id := range slices.Sorted(maps.Keys(union(ma, mb))) {
		x, okA := ma[id]
		y, okB := mb[id]
		switch {
		case !okA:
			add("message %s missing in the %s", id, sides[0])
		case !okB:
			add("message %s missing in the %s", id, sides[1])
		case string(x) != string(y):
			add("message %s", id)
		}
	}
	if len(out) == 0 { // the canonical encodings differ in a way not named above
		add("record")
	}
	return out
}

// comparableConflict is a conflict with its times as UTC milliseconds.
type comparableConflict merge.Conflict

func (c comparableConflict) Equal(o comparableConflict) bool {
	return c.ID == o.ID && c.Field == o.Field && c.Current == o.Current && c.Candidate == o.Candidate &&
		c.CandidateEventID == o.CandidateEventID && c.CandidateChannel == o.CandidateChannel &&
		c.CandidateSource == o.CandidateSource && c.DetectedAt.Equal(o.DetectedAt) && c.Status == o.Status &&
		c.ResolvedBy == o.ResolvedBy && c.ResolvedAt.Equal(o.ResolvedAt)
}

func conflicts(r merge.Record) map[string]comparableConflict {
	out := make(map[string]comparableConflict, len(r.Conflicts))
	for _, c := range r.Conflicts {
		out[c.ID] = comparableConflict(c)
	}
	return out
}

func byMessageID(ms []events.MessageEvent) map[string][]byte {
	out := make(map[string][]byte, len(ms))
	for _, m := range ms {
		out[m.MessageID] = canonicalMessage(m)
	}
	return out
}

func stamp(s *merge.Stamp) string {
	if s == nil {
		return "none"
	}
	return fmt.Sprintf("%s/%s", s.At.UTC().Format("2006-01-02T15:04:05.000Z"), s.EventID)
}

func union[V any](a, b map[string]V) map[string]bool {
	out := make(map[string]bool, len(a)+len(b))
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

func sameSighting(a, b merge.Sighting) bool {
	return a.Kind == b.Kind && a.Scope == b.Scope && a.Value == b.Value && stamp(&a.Seen) == stamp(&b.Seen) && stamp(a.Verified) == stamp(b.Verified)
}
