package merge

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/omnisync/omnisync/pkg/events"
)

// Outcome says what applying one event did.
type Outcome struct {
	// Changed is true when the record changed (and its version grew). It
	// is true for every message folded for the customer (ApplyMessage).
	Changed bool
	// Stale counts field writes ignored because their stamp was not newer
	// than the field's register. A resolution's write is never stale.
	Stale int
	// ConflictsOpened and ConflictsResolved count conflicts this event
	// opened and closed.
	ConflictsOpened   int
	ConflictsResolved int
	// UnknownFields counts clears and attributes naming no valid field;
	// they were skipped.
	UnknownFields int
	// Ignored is why the whole event was ignored; empty when it was not.
	// An ignored event changes nothing, but for a message older than the
	// tombstone, which still grows the version (Changed).
	Ignored Reason
	// Emit holds the events this fold asks the materializer to produce,
	// each keyed by its customer ID, in order, acknowledged by Kafka
	// before the batch is committed (docs/design.md, Customer merge): the
	// hand-off of a merged customer's record to its survivor, the release
	// of an unmerged customer, a delete of the customers absorbed into a
	// deleted one. They depend only on the record, the event and the
	// policy, so a batch folded again emits the same events.
	Emit []events.CustomerEvent
}

// Reason is why an event was ignored as a whole.
type Reason string

// The reasons.
const (
	// ReasonMalformed: no event (or message) ID, or no customer ID.
	ReasonMalformed Reason = "malformed event"
	// ReasonOtherCustomer: the event is for another customer than the record.
	ReasonOtherCustomer Reason = "event for another customer"
	// ReasonBeforeTombstone: the event's stamp is not after the tombstone.
	ReasonBeforeTombstone Reason = "older than the tombstone"
	// ReasonUnknownOp: the op is UNKNOWN or not one this package knows.
	ReasonUnknownOp Reason = "unknown op"
	// ReasonNoResolution: a RESOLVE event without a resolution.
	ReasonNoResolution Reason = "resolve without resolution"
	// ReasonUnknownConflict: the record has no conflict with that ID.
	ReasonUnknownConflict Reason = "unknown conflict"
	// ReasonConflictClosed: the conflict was already resolved.
	ReasonConflictClosed Reason = "conflict already closed"
	// ReasonFieldMismatch: the resolution names another field than the conflict's.
	ReasonFieldMismatch Reason = "resolution field does not match the conflict"
	// ReasonUnknownChoice: the resolution's choice is UNKNOWN or not known.
	ReasonUnknownChoice Reason = "unknown resolution choice"
	// ReasonInvalidValue: a SET_VALUE text is not a value of the field.
	ReasonInvalidValue Reason = "invalid resolution value"
	// ReasonBadMerge: a MERGE or UNMERGE without both customers, keyed by
	// neither, without its merge ID, or a hand-off whose snapshot does not
	// decode or is of another customer.
	ReasonBadMerge Reason = "malformed merge"
	// ReasonOtherPolicy: an event a materializer emitted under another policy.
	ReasonOtherPolicy Reason = "emitted under another policy"
	// ReasonAlreadyMerged: a MERGE request for a customer already merged
	// into another by another merge.
	ReasonAlreadyMerged Reason = "customer already merged"
	// ReasonMergeOrder: a MERGE or UNMERGE whose survivor's ID sorts after
	// the absorbed customer's: merges go from the greater ID to the smaller,
	// so they never form a cycle.
	ReasonMergeOrder Reason = "survivor ID after absorbed ID"
	// ReasonSurvivorMerged: an UNMERGE request to a survivor that is
	// itself merged into another; unmerge that first.
	ReasonSurvivorMerged Reason = "survivor is itself merged"
)

// Apply folds one customer event into r under policy p (nil means
// DefaultPolicy) and returns the new record and what happened. r is not
// modified; when nothing changed the returned record is r itself.
//
// UPSERT writes the profile's fields and clears and adds the event's
// identities; DELETE erases the record down to its tombstone; RESOLVE closes
// a conflict (and adds identities); MERGE and UNMERGE are the steps of a
// customer merge (docs/design.md, Customer merge). See the package
// documentation for the rules. The events in Outcome.Emit must be produced
// before the batch holding the result is committed.
func Apply(r Record, ev *events.CustomerEvent, p *Policy) (Record, Outcome) {
	if p == nil {
		p = defaultPolicy
	}
	if ev == nil || ev.EventID == "" || ev.CustomerID == "" {
		return r, Outcome{Ignored: ReasonMalformed}
	}
	if m := ev.Merge; m != nil && m.PolicyHash != "" && m.PolicyHash != p.Hash() {
		return r, Outcome{Ignored: ReasonOtherPolicy}
	}
	if ev.Op == events.OpMerge || ev.Op == events.OpUnmerge {
		return applyMerge(r, ev, p)
	}
	next, out := applyEvent(r, ev, p)
	t := trigger{stampOf(ev.OccurredAt, ev.EventID), ev.IngestedAt, channelOf(ev.Channel), ev.Source}
	return follow(r, next, out, t, p, ev.Op == events.OpDelete, func(own Record) (Record, Outcome) { return applyEvent(own, ev, p) })
}

// applyEvent folds an UPSERT, DELETE or RESOLVE into r, leaving the merge
// bookkeeping to follow.
func applyEvent(r Record, ev *events.CustomerEvent, p *Policy) (Record, Outcome) {
	s := stampOf(ev.OccurredAt, ev.EventID)
	if reason := admit(r, ev.CustomerID, s); reason != "" {
		return r, Outcome{Ignored: reason}
	}
	ed := edit{rec: r, customer: ev.CustomerID, policy: p}
	switch ev.Op {
	case events.OpUpsert:
		ed.upsert(ev, s)
	case events.OpDelete:
		ed.erase(s)
	case events.OpResolve:
		ed.resolve(ev, s)
	case events.OpSuggestMerge:
		ed.suggest(ev)
	default:
		return r, Outcome{Ignored: ReasonUnknownOp}
	}
	return ed.finish(r, s)
}

// ApplyMessage folds one message into r under policy p (nil means
// DefaultPolicy): it records the message's identities as sightings and
// moves the last contact to the message when its stamp (occurred_at,
// message_id) is newer. r is not modified. The message itself is not part
// of the record. Every message for the customer grows the version by one,
// also one older than the tombstone, which is otherwise ignored
// (Outcome.Ignored says so): whether a message changes the rest of the
// record depends on the order of the two topics, how many messages there
// were does not. A message that changes a merged customer's record emits
// its hand-off (Outcome.Emit), as Apply does.
func ApplyMessage(r Record, m *events.MessageEvent, p *Policy) (Record, Outcome) {
	if p == nil {
		p = defaultPolicy
	}
	if m == nil || m.MessageID == "" || m.CustomerID == "" {
		return r, Outcome{Ignored: ReasonMalformed}
	}
	next, out := applyMessage(r, m, p)
	t := trigger{stampOf(m.OccurredAt, m.MessageID), m.IngestedAt, channelOf(m.Channel), m.Source}
	return follow(r, next, out, t, p, false, func(own Record) (Record, Outcome) { return applyMessage(own, m, p) })
}

// applyMessage folds a message into r, leaving the merge bookkeeping to
// follow.
func applyMessage(r Record, m *events.MessageEvent, p *Policy) (Record, Outcome) {
	s := stampOf(m.OccurredAt, m.MessageID)
	reason := admit(r, m.CustomerID, s)
	if reason != "" && reason != ReasonBeforeTombstone {
		return r, Outcome{Ignored: reason}
	}
	ed := edit{rec: r, customer: m.CustomerID, policy: p}
	if reason == "" {
		ed.addSightings(m.Identities, s)
		if ch := channelOf(m.Channel); r.LastContact == nil || s.After(*r.LastContact) ||
			sameStamp(s, *r.LastContact) && ch > r.LastContactChannel {
			// Of two messages with one stamp, the greater channel wins,
			// whichever came first.
			ed.rec.LastContact, ed.rec.LastContactChannel = &s, ch
		}
	}
	ed.changed = true // every message counts, also one the tombstone erased
	next, out := ed.finish(r, s)
	out.Ignored = reason
	return next, out
}

// admit returns why an event for customer stamped s must be ignored by r,
// or "" if it may be applied.
func admit(r Record, customer string, s Stamp) Reason {
	switch {
	case r.CustomerID != "" && r.CustomerID != customer:
		return ReasonOtherCustomer
	case r.Tombstone != nil && !s.After(*r.Tombstone):
		return ReasonBeforeTombstone
	}
	return ""
}

// ConflictID returns the ID of the conflict a write by event eventID to
// field of customer opens.
func ConflictID(customerID, field, eventID string) string {
	h := sha256.New()
	for _, part := range []string{customerID, field, eventID} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// channelOf returns ch, or UNKNOWN when ch is not a channel of package
// events, so that every record encodes with the state schema.
func channelOf(ch events.Channel) events.Channel {
	if knownChannel(ch) {
		return ch
	}
	return events.ChannelUnknown
}

// edit is a copy-on-write change of one record by one event: rec starts as
// a shallow copy of the input and each map or slice is copied before its
// first change, so the input record is never modified.
type edit struct {
	rec      Record
	customer string
	policy   *Policy
	out      Outcome

	changed       bool
	ownFields     bool
	ownIdentities bool
	ownSightings  bool
	ownConflicts  bool
}

// finish returns the edited record, versioned and stamped, or the input
// record when nothing changed or the event was ignored.
func (ed *edit) finish(in Record, s Stamp) (Record, Outcome) {
	if ed.out.Ignored != "" || !ed.changed {
		return in, ed.out
	}
	r := ed.rec
	r.CustomerID = ed.customer
	if r.Version == 0 || s.At.After(r.UpdatedAt) {
		r.UpdatedAt = s.At
	}
	r.Version++
	r.PolicyHash = ed.policy.Hash()
	r.NeedsReview = slices.ContainsFunc(r.Conflicts, Conflict.Open)
	ed.out.Changed = true
	return r, ed.out
}

// ignore marks the whole event ignored for reason.
func (ed *edit) ignore(reason Reason) { ed.out.Ignored = reason }

// upsert applies the writes and identities of an UPSERT.
func (ed *edit) upsert(ev *events.CustomerEvent, s Stamp) {
	ed.addIdentities(ev.Identities)
	ws, unknown := profileWrites(ev.Profile, ev.Clears)
	ed.out.UnknownFields = unknown
	for _, w := range ws {
		ed.write(w.field, Register{Value: w.value, Stamp: s, Channel: channelOf(ev.Channel), Source: ev.Source})
	}
}

// write applies one field write of an UPSERT: last writer wins, except
// that a key field may hold the write back as a conflict.
func (ed *edit) write(field string, in Register) {
	cur, ok := ed.rec.Fields[field]
	if ok && !in.Stamp.After(cur.Stamp) {
		ed.out.Stale++
		return
	}
	if !ok || !ed.policy.IsKeyField(field) {
		ed.setField(field, in)
		return
	}
	var id string
	if len(ed.rec.Conflicts) > 0 {
		// A write once held back as a conflict is decided by its
		// resolution only: re-delivered, it is absorbed.
		id = ConflictID(ed.customer, field, in.Stamp.EventID)
		if ed.conflictIndex(id) >= 0 {
			return
		}
	}
	if ed.overrides(field, cur, in) {
		ed.setField(field, in)
		return
	}
	if ed.settled(field, cur.Value, in.Value) {
		return // this value already awaits review, or an agent kept the current one over it
	}
	if id == "" {
		id = ConflictID(ed.customer, field, in.Stamp.EventID)
	}
	ed.addConflict(Conflict{
		ID: id, Field: field, Current: cur.Value, Candidate: in.Value,
		CandidateEventID: in.Stamp.EventID, CandidateChannel: in.Channel, CandidateSource: in.Source,
		DetectedAt: in.Stamp.At, Status: events.ConflictOpen,
	})
	ed.out.ConflictsOpened++
}

// overrides reports whether a newer write in to key field may replace cur.
func (ed *edit) overrides(field string, cur, in Register) bool {
	switch {
	case cur.Value == null, cur.Value == in.Value:
		return true
	case cur.Channel == in.Channel && cur.Source == in.Source:
		return true
	}
	curRank, inRank := ed.policy.rank(field, cur.Channel), ed.policy.rank(field, in.Channel)
	if inRank != curRank {
		return inRank < curRank
	}
	return in.Stamp.At.Sub(cur.Stamp.At) >= ed.policy.ConflictWindow()
}

// settled reports whether a conflict on field between the same current and
// candidate values is open or was decided for the current value, so a new
// event proposing the candidate again needs no new review.
func (ed *edit) settled(field, current, candidate string) bool {
	return slices.ContainsFunc(ed.rec.Conflicts, func(c Conflict) bool {
		return c.Field == field && c.Current == current && c.Candidate == candidate &&
			(c.Status == events.ConflictOpen || c.Status == events.ConflictKeptCurrent)
	})
}

// erase applies a DELETE already known to be newer than the tombstone:
// everything customer events brought goes, and of what messages brought
// only what is newer than the delete stays (eraseMessages).
func (ed *edit) erase(s Stamp) {
	ed.rec.Fields, ed.ownFields = nil, true
	ed.rec.Identities, ed.ownIdentities = nil, true
	ed.rec.Conflicts, ed.ownConflicts = nil, true
	ed.rec.eraseMessages(s)
	ed.ownSightings = true
	ed.rec.Tombstone = &s
	ed.changed = true
}

// eraseMessages drops from r what messages not after s brought: the
// sightings (and verifications) and last contact not newer than s. What is
// left is what the messages after s alone give, so a delete and a message
// give the same record in either order.
func (r *Record) eraseMessages(s Stamp) {
	if r.LastContact != nil && !r.LastContact.After(s) {
		r.LastContact, r.LastContactChannel = nil, ""
	}
	var kept []Sighting
	for _, x := range r.Sightings {
		if !x.Seen.After(s) {
			continue
		}
		if x.Verified != nil && !x.Verified.After(s) {
			x.Verified = nil
		}
		kept = append(kept, x)
	}
	r.Sightings = kept
}

// resolve applies a RESOLVE event.
func (ed *edit) resolve(ev *events.CustomerEvent, s Stamp) {
	res := ev.Resolution
	if res == nil {
		ed.ignore(ReasonNoResolution)
		return
	}
	i := ed.conflictIndex(res.ConflictID)
	if i < 0 {
		ed.ignore(ReasonUnknownConflict)
		return
	}
	c := ed.rec.Conflicts[i]
	switch {
	case !c.Open():
		ed.ignore(ReasonConflictClosed)
		return
	case res.Field != "" && res.Field != c.Field:
		ed.ignore(ReasonFieldMismatch)
		return
	}
	var value string
	switch {
	case c.Field == SuggestionField && res.Choice == events.ChoiceSetValue:
		ed.ignore(ReasonInvalidValue) // a suggestion is confirmed or rejected
		return
	case res.Choice == events.ChoiceKeepCurrent:
		c.Status = events.ConflictKeptCurrent
	case res.Choice == events.ChoiceTakeCandidate:
		c.Status, value = events.ConflictTookCandidate, c.Candidate
	case res.Choice == events.ChoiceSetValue:
		v, err := ParseValue(c.Field, res.Value)
		if err != nil {
			ed.ignore(ReasonInvalidValue)
			return
		}
		c.Status, value = events.ConflictSetValue, v
	default:
		ed.ignore(ReasonUnknownChoice)
		return
	}
	if c.Status != events.ConflictKeptCurrent && c.Field != SuggestionField {
		ed.setField(c.Field, Register{Value: value, Stamp: ed.resolutionStamp(c.Field, s), Channel: channelOf(ev.Channel), Source: ev.Source})
	}
	c.ResolvedBy, c.ResolvedAt = res.ResolvedBy, s.At
	ed.ownConflictsCopy()
	ed.rec.Conflicts[i] = c
	ed.out.ConflictsResolved++
	ed.addIdentities(ev.Identities)
	ed.changed = true
}

// resolutionStamp returns the stamp a resolution stamped s writes field
// with: s when it is after the field's register, else one millisecond after
// the register's time with s's event ID. A resolution therefore always takes
// effect, also over a value whose channel's clock runs ahead, and the stamp
// depends only on the record and the event, so a replay writes the same.
func (ed *edit) resolutionStamp(field string, s Stamp) Stamp {
	cur, ok := ed.rec.Fields[field]
	if !ok || s.After(cur.Stamp) {
		return s
	}
	return Stamp{At: cur.Stamp.At.Add(time.Millisecond), EventID: s.EventID}
}

// setField sets field's register.
func (ed *edit) setField(field string, g Register) {
	if !ed.ownFields {
		ed.rec.Fields = maps.Clone(ed.rec.Fields)
		ed.ownFields = true
	}
	if ed.rec.Fields == nil {
		ed.rec.Fields = map[string]Register{}
	}
	ed.rec.Fields[field] = g
	ed.changed = true
}

// addIdentities adds ids to the record's identity set, sorted by kind,
// scope and value. An identity once seen verified stays verified, whatever
// order the events come in.
func (ed *edit) addIdentities(ids []events.Identity) {
	for _, id := range ids {
		i, found := slices.BinarySearchFunc(ed.rec.Identities, id, compareIdentity)
		if found && (ed.rec.Identities[i].Verified || !id.Verified) {
			continue
		}
		if !ed.ownIdentities {
			ed.rec.Identities = slices.Clone(ed.rec.Identities)
			ed.ownIdentities = true
		}
		if found {
			ed.rec.Identities[i].Verified = true
		} else {
			ed.rec.Identities = slices.Insert(ed.rec.Identities, i, id)
		}
		ed.changed = true
	}
}

// addSightings records that a message stamped s carried ids.
func (ed *edit) addSightings(ids []events.Identity, s Stamp) {
	for _, id := range ids {
		ed.addSighting(Sighting{Kind: id.Kind, Scope: id.Scope, Value: id.Value, Seen: s, Verified: verifiedAt(id, s)})
	}
}

// addSighting merges x into the record's sightings: the newer of the two
// stamps of each kind.
func (ed *edit) addSighting(x Sighting) {
	i, found := slices.BinarySearchFunc(ed.rec.Sightings, x, compareSighting)
	next := x
	if found {
		cur := ed.rec.Sightings[i]
		next = cur
		if x.Seen.After(cur.Seen) {
			next.Seen = x.Seen
		}
		if x.Verified != nil && (cur.Verified == nil || x.Verified.After(*cur.Verified)) {
			next.Verified = x.Verified
		}
		if next == cur {
			return
		}
	}
	if !ed.ownSightings {
		ed.rec.Sightings = slices.Clone(ed.rec.Sightings)
		ed.ownSightings = true
	}
	if found {
		ed.rec.Sightings[i] = next
	} else {
		ed.rec.Sightings = slices.Insert(ed.rec.Sightings, i, next)
	}
	ed.changed = true
}

// verifiedAt returns &s when id is verified, else nil.
func verifiedAt(id events.Identity, s Stamp) *Stamp {
	if id.Verified {
		return &s
	}
	return nil
}

func compareSighting(a, b Sighting) int {
	return compareIdentity(events.Identity{Kind: a.Kind, Scope: a.Scope, Value: a.Value}, events.Identity{Kind: b.Kind, Scope: b.Scope, Value: b.Value})
}

func compareIdentity(a, b events.Identity) int {
	if c := strings.Compare(a.Kind, b.Kind); c != 0 {
		return c
	}
	if c := strings.Compare(a.Scope, b.Scope); c != 0 {
		return c
	}
	return strings.Compare(a.Value, b.Value)
}

// conflictIndex returns the index of the conflict with id, or -1.
func (ed *edit) conflictIndex(id string) int {
	return slices.IndexFunc(ed.rec.Conflicts, func(c Conflict) bool { return c.ID == id })
}

// addConflict inserts c in (DetectedAt, ID) order.
func (ed *edit) addConflict(c Conflict) {
	ed.ownConflictsCopy()
	i, _ := slices.BinarySearchFunc(ed.rec.Conflicts, c, compareConflict)
	ed.rec.Conflicts = slices.Insert(ed.rec.Conflicts, i, c)
	ed.changed = true
}

func compareConflict(a, b Conflict) int {
	if c := a.DetectedAt.Compare(b.DetectedAt); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

// ownConflictsCopy makes rec.Conflicts the edit's own copy.
func (ed *edit) ownConflictsCopy() {
	if !ed.ownConflicts {
		ed.rec.Conflicts = slices.Clone(ed.rec.Conflicts)
		ed.ownConflicts = true
	}
}
