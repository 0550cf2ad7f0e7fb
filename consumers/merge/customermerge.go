package merge

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"strconv"
	"time"

	"github.com/segmentio/ksuid"

	"github.com/omnisync/omnisync/pkg/events"
)

// The customer merge (docs/design.md, Customer merge). A MERGE request is
// keyed by the absorbed customer A: it freezes A and emits the hand-off, a
// MERGE keyed by the survivor S carrying A's record, which S absorbs. An
// UNMERGE request is keyed by S: S goes back to its own record and emits
// the release, an UNMERGE keyed by A, which unfreezes A. Every change of a
// frozen record emits a new hand-off, so A's late events reach S.

// trigger is the event or message whose fold emits events: emitted events
// take its time, ingestion time, channel and source.
type trigger struct {
	stamp    Stamp
	ingested time.Time
	channel  events.Channel
	source   string
}

// follow completes the fold of an UPSERT, DELETE, RESOLVE or message whose
// result on the record itself is next: a survivor's own record gets the
// same fold (ownFold), a deleted survivor erases its absorbed snapshots and
// deletes the absorbed customers, and a frozen record that changed hands
// itself off to its survivor.
func follow(prev, next Record, out Outcome, t trigger, p *Policy, isDelete bool, ownFold func(Record) (Record, Outcome)) (Record, Outcome) {
	if prev.Own != nil {
		own, o := ownFold(*prev.Own)
		if o.Changed {
			if !out.Changed {
				next = prev
				bump(&next, t.stamp, p)
				out = Outcome{Changed: true, Stale: out.Stale}
			}
			next.Own = &own
		}
	}
	if !out.Changed {
		return next, out
	}
	if isDelete && len(next.Absorbed) > 0 && next.Tombstone != nil && sameStamp(*next.Tombstone, t.stamp) {
		next.Absorbed = erasedSnapshots(next.Absorbed, t.stamp)
		for _, a := range next.Absorbed {
			out.Emit = append(out.Emit, deleteOf(a, next.CustomerID, t, p))
		}
	}
	if next.MergedInto != nil {
		out.Emit = append(out.Emit, handOff(next, t, p, nil, ""))
	}
	return next, out
}

// bump does the bookkeeping of a change by an event stamped s, as
// edit.finish does.
func bump(r *Record, s Stamp, p *Policy) {
	if r.Version == 0 || s.At.After(r.UpdatedAt) {
		r.UpdatedAt = s.At
	}
	r.Version++
	r.PolicyHash = p.Hash()
	r.NeedsReview = slices.ContainsFunc(r.Conflicts, Conflict.Open)
}

// applyMerge folds a MERGE or UNMERGE.
func applyMerge(r Record, ev *events.CustomerEvent, p *Policy) (Record, Outcome) {
	m := ev.Merge
	if m == nil || m.SurvivorID == "" || m.AbsorbedID == "" || m.SurvivorID == m.AbsorbedID {
		return r, Outcome{Ignored: ReasonBadMerge}
	}
	if m.SurvivorID > m.AbsorbedID {
		// Merges go from the greater customer ID to the smaller, so chains
		// of merges never loop and what they emit comes to an end.
		return r, Outcome{Ignored: ReasonMergeOrder}
	}
	if r.CustomerID != "" && r.CustomerID != ev.CustomerID {
		return r, Outcome{Ignored: ReasonOtherCustomer}
	}
	s := stampOf(ev.OccurredAt, ev.EventID)
	t := trigger{s, ev.IngestedAt, channelOf(ev.Channel), ev.Source}
	emitted := m.PolicyHash != ""
	ed := edit{rec: r, customer: ev.CustomerID, policy: p}
	switch {
	case ev.Op == events.OpMerge && !emitted && ev.CustomerID == m.AbsorbedID:
		id := m.MergeID
		if id == "" {
			id = ev.EventID
		}
		return ed.freeze(r, id, m, t)
	case m.MergeID == "":
		return r, Outcome{Ignored: ReasonBadMerge}
	case ev.Op == events.OpMerge && emitted && ev.CustomerID == m.SurvivorID && m.SnapshotJSON != nil:
		var a Record
		if err := a.UnmarshalJSON([]byte(*m.SnapshotJSON)); err != nil || a.CustomerID != m.AbsorbedID {
			return r, Outcome{Ignored: ReasonBadMerge}
		}
		return ed.absorbHandOff(r, m, a.public(), t)
	case ev.Op == events.OpUnmerge && !emitted && ev.CustomerID == m.SurvivorID:
		return ed.split(r, m, t)
	case ev.Op == events.OpUnmerge && emitted && ev.CustomerID == m.AbsorbedID:
		return ed.release(r, m.MergeID, s)
	}
	return r, Outcome{Ignored: ReasonBadMerge}
}

// freeze folds a MERGE request into the absorbed customer's record.
func (ed *edit) freeze(r Record, mergeID string, m *events.Merge, t trigger) (Record, Outcome) {
	if reason := admit(r, ed.customer, t.stamp); reason != "" {
		return r, Outcome{Ignored: reason}
	}
	switch {
	case slices.Contains(r.EndedMerges, mergeID):
		return r, Outcome{} // a late copy of an unmerged merge's request
	case r.MergedInto != nil && r.MergedInto.MergeID == mergeID:
		return r, Outcome{} // re-delivered
	case r.MergedInto != nil:
		return r, Outcome{Ignored: ReasonAlreadyMerged}
	}
	ed.rec.MergedInto = &MergeRef{MergeID: mergeID, CustomerID: m.SurvivorID, At: t.stamp}
	ed.changed = true
	next, out := ed.finish(r, t.stamp)
	out.Emit = []events.CustomerEvent{handOff(next, t, ed.policy, m.Evidence, m.DecidedBy)}
	return next, out
}

// absorbHandOff folds a hand-off of absorbed record a into the survivor.
func (ed *edit) absorbHandOff(r Record, m *events.Merge, a Record, t trigger) (Record, Outcome) {
	if slices.Contains(r.EndedMerges, m.MergeID) {
		return r, Outcome{} // a hand-off of an unmerged merge: late, or re-emitted
	}
	i := slices.IndexFunc(r.Absorbed, func(x Absorption) bool { return x.MergeID == m.MergeID })
	var prev *Record
	switch {
	case i >= 0 && r.Absorbed[i].CustomerID != a.CustomerID:
		return r, Outcome{Ignored: ReasonBadMerge}
	case i >= 0 && a.Version <= r.Absorbed[i].Snapshot.Version:
		return r, Outcome{} // this snapshot or a newer one was absorbed
	case i >= 0:
		prev = &r.Absorbed[i].Snapshot
	case slices.ContainsFunc(r.Absorbed, func(x Absorption) bool { return x.CustomerID == a.CustomerID }):
		return r, Outcome{Ignored: ReasonBadMerge} // absorbed by another merge
	}
	if r.Own == nil {
		own := r.public()
		own.CustomerID = ed.customer
		ed.rec.Own = &own
	}
	ed.rec.Absorbed = slices.Clone(r.Absorbed)
	if prev != nil && a.Tombstone != nil && (prev.Tombstone == nil || a.Tombstone.After(*prev.Tombstone)) &&
		(r.Tombstone == nil || a.Tombstone.After(*r.Tombstone)) {
		// A was deleted after the merge: the person asked to be erased.
		ed.eraseAll(*a.Tombstone)
		for _, x := range ed.rec.Absorbed {
			if x.MergeID != m.MergeID {
				ed.out.Emit = append(ed.out.Emit, deleteOf(x, ed.customer, trigger{*a.Tombstone, t.ingested, t.channel, t.source}, ed.policy))
			}
		}
		prev = &ed.rec.Absorbed[i].Snapshot
	}
	ed.absorb(a, prev)
	if i >= 0 {
		ed.rec.Absorbed[i].Snapshot = a
	} else {
		ed.rec.Absorbed = append(ed.rec.Absorbed, Absorption{MergeID: m.MergeID, CustomerID: a.CustomerID, At: t.stamp, Snapshot: a,
			Evidence: slices.Clone(m.Evidence), DecidedBy: m.DecidedBy})
	}
	ed.changed = true
	emit := ed.out.Emit
	next, out := ed.finish(r, t.stamp)
	out.Emit = emit
	if next.MergedInto != nil {
		out.Emit = append(out.Emit, handOff(next, t, ed.policy, nil, ""))
	}
	return next, out
}

// Absorb folds the record of absorbed customer a into survivor s as a
// merge does, under policy p (nil means DefaultPolicy): field by field, the
// two registers in stamp order with the ordinary last-write-wins and
// conflict rules (a key field's disagreement opens a conflict on s);
// identities and sightings unioned; a's conflicts carried over; the newer
// last contact.
// It returns the record content a merge gives; bookkeeping (version, the
// absorbed snapshots, the survivor's own record) is Apply's.
func Absorb(s, a Record, p *Policy) Record {
	if p == nil {
		p = defaultPolicy
	}
	return absorbInto(s, a, s.CustomerID, p)
}

// absorbInto is Absorb into the record of customer.
func absorbInto(s, a Record, customer string, p *Policy) Record {
	ed := edit{rec: s, customer: customer, policy: p}
	ed.absorb(a.public(), nil)
	ed.rec.NeedsReview = slices.ContainsFunc(ed.rec.Conflicts, Conflict.Open)
	return ed.rec
}

// absorb folds a into the edited record: what changed in a since prev
// (everything when prev is nil).
func (ed *edit) absorb(a Record, prev *Record) {
	t := ed.rec.Tombstone
	live := func(s Stamp) bool { return t == nil || s.After(*t) }
	for _, f := range sortedKeys(a.Fields) {
		g := a.Fields[f]
		if pg, ok := prev.field(f); ok && sameRegister(pg, g) || !live(g.Stamp) {
			continue
		}
		ed.absorbWrite(f, g)
	}
	for _, id := range a.Identities {
		if prev == nil || !slices.Contains(prev.Identities, id) {
			ed.addIdentities([]events.Identity{id})
		}
	}
	for _, x := range a.Sightings {
		if !live(x.Seen) {
			continue
		}
		if x.Verified != nil && !live(*x.Verified) {
			x.Verified = nil
		}
		ed.addSighting(x)
	}
	for _, c := range a.Conflicts {
		if prev != nil && slices.ContainsFunc(prev.Conflicts, func(x Conflict) bool { return sameConflict(x, c) }) ||
			!live(Stamp{c.DetectedAt, c.CandidateEventID}) {
			continue
		}
		switch i := ed.conflictIndex(c.ID); {
		case i < 0:
			ed.addConflict(c)
		case ed.rec.Conflicts[i].Open() && !c.Open():
			ed.ownConflictsCopy()
			ed.rec.Conflicts[i] = c
			ed.changed = true
		}
	}
	if lc := a.LastContact; lc != nil && live(*lc) && (ed.rec.LastContact == nil || lc.After(*ed.rec.LastContact)) {
		ed.rec.LastContact, ed.rec.LastContactChannel = lc, a.LastContactChannel
		ed.changed = true
	}
}

// field returns the register of field f in r, which may be nil.
func (r *Record) field(f string) (Register, bool) {
	if r == nil {
		return Register{}, false
	}
	g, ok := r.Fields[f]
	return g, ok
}

// absorbWrite folds register g of an absorbed record into field f: the
// two registers in stamp order, the older as the current value and the
// newer as a write to it.
func (ed *edit) absorbWrite(f string, g Register) {
	cur, ok := ed.rec.Fields[f]
	switch {
	case !ok:
		ed.setField(f, g)
	case sameStamp(g.Stamp, cur.Stamp):
		// The same write reached both customers.
	case g.Stamp.After(cur.Stamp):
		ed.write(f, g)
	case !ed.policy.IsKeyField(f) || ed.overrides(f, g, cur):
		ed.out.Stale++ // the survivor's newer write wins over g
	default:
		// The survivor's newer value would have been held back by g: g
		// stays and the survivor's value awaits review.
		id := ConflictID(ed.customer, f, cur.Stamp.EventID)
		if ed.conflictIndex(id) >= 0 {
			return
		}
		ed.setField(f, g)
		if ed.settled(f, g.Value, cur.Value) {
			return
		}
		ed.addConflict(Conflict{
			ID: id, Field: f, Current: g.Value, Candidate: cur.Value,
			CandidateEventID: cur.Stamp.EventID, CandidateChannel: cur.Channel, CandidateSource: cur.Source,
			DetectedAt: cur.Stamp.At, Status: events.ConflictOpen,
		})
		ed.out.ConflictsOpened++
	}
}

// eraseAll erases the edited survivor at s, as a DELETE does: the merged
// record, its own record and every absorbed snapshot.
func (ed *edit) eraseAll(s Stamp) {
	ed.erase(s)
	if ed.rec.Own != nil {
		own := erased(*ed.rec.Own, s)
		ed.rec.Own = &own
	}
	ed.rec.Absorbed = erasedSnapshots(ed.rec.Absorbed, s)
}

// erased returns r's content erased at s, as a DELETE leaves it.
func erased(r Record, s Stamp) Record {
	r.Fields, r.Identities, r.Conflicts, r.NeedsReview = nil, nil, nil, false
	r.eraseMessages(s)
	if r.Tombstone == nil || s.After(*r.Tombstone) {
		r.Tombstone = &s
	}
	return r
}

// erasedSnapshots returns a copy of as with every snapshot erased at s.
func erasedSnapshots(as []Absorption, s Stamp) []Absorption {
	out := slices.Clone(as)
	for i := range out {
		out[i].Snapshot = erased(out[i].Snapshot, s)
	}
	return out
}

// split folds an UNMERGE request into the survivor.
func (ed *edit) split(r Record, m *events.Merge, t trigger) (Record, Outcome) {
	switch {
	case r.MergedInto != nil:
		return r, Outcome{Ignored: ReasonSurvivorMerged}
	case slices.Contains(r.EndedMerges, m.MergeID):
		return r, Outcome{} // re-delivered
	}
	i := slices.IndexFunc(r.Absorbed, func(x Absorption) bool { return x.MergeID == m.MergeID })
	if i >= 0 && r.Absorbed[i].CustomerID != m.AbsorbedID {
		return r, Outcome{Ignored: ReasonBadMerge}
	}
	ed.rec.EndedMerges = insertSorted(r.EndedMerges, m.MergeID)
	if i >= 0 {
		rest := slices.Delete(slices.Clone(r.Absorbed), i, i+1)
		content := *r.Own
		for _, x := range rest {
			content = absorbInto(content, x.Snapshot, ed.customer, ed.policy)
		}
		ed.rec.Fields, ed.rec.Identities, ed.rec.Sightings, ed.rec.Conflicts = content.Fields, content.Identities, content.Sightings, content.Conflicts
		ed.rec.Tombstone, ed.rec.LastContact, ed.rec.LastContactChannel = content.Tombstone, content.LastContact, content.LastContactChannel
		ed.ownFields, ed.ownIdentities, ed.ownSightings, ed.ownConflicts = false, false, false, false
		ed.rec.Absorbed = rest
		if len(rest) == 0 {
			ed.rec.Absorbed, ed.rec.Own = nil, nil
		}
	}
	// A merge not (yet) absorbed is ended too: its hand-off, if it comes,
	// is ignored, and the absorbed customer is released either way.
	ed.changed = true
	next, out := ed.finish(r, t.stamp)
	out.Emit = []events.CustomerEvent{{
		EventID:    emittedID(m.MergeID, "release", 0, ed.policy, t.stamp.At),
		CustomerID: m.AbsorbedID, Channel: t.channel, Source: t.source, Op: events.OpUnmerge,
		OccurredAt: t.stamp.At, IngestedAt: instant(t.ingested),
		Merge: &events.Merge{MergeID: m.MergeID, SurvivorID: m.SurvivorID, AbsorbedID: m.AbsorbedID, DecidedBy: m.DecidedBy, PolicyHash: ed.policy.Hash()},
	}}
	return next, out
}

// release folds a release into the absorbed customer: it is unfrozen.
func (ed *edit) release(r Record, mergeID string, s Stamp) (Record, Outcome) {
	if slices.Contains(r.EndedMerges, mergeID) {
		return r, Outcome{} // re-emitted
	}
	ed.rec.EndedMerges = insertSorted(r.EndedMerges, mergeID)
	if r.MergedInto != nil && r.MergedInto.MergeID == mergeID {
		ed.rec.MergedInto = nil
	}
	ed.changed = true
	return ed.finish(r, s)
}

// handOff returns the hand-off of frozen record r to its survivor.
func handOff(r Record, t trigger, p *Policy, evidence []events.Identity, decidedBy string) events.CustomerEvent {
	b, _ := r.public().MarshalJSON() // cannot fail
	snapshot := string(b)
	ref := r.MergedInto
	return events.CustomerEvent{
		EventID:    emittedID(ref.MergeID, "absorb", r.Version, p, t.stamp.At),
		CustomerID: ref.CustomerID, Channel: t.channel, Source: t.source, Op: events.OpMerge,
		OccurredAt: t.stamp.At, IngestedAt: instant(t.ingested),
		Merge: &events.Merge{
			MergeID: ref.MergeID, SurvivorID: ref.CustomerID, AbsorbedID: r.CustomerID,
			Evidence: evidence, DecidedBy: decidedBy, SnapshotJSON: &snapshot, PolicyHash: p.Hash(),
		},
	}
}

// deleteOf returns the DELETE that erases absorbed customer a along with
// survivor: the same stamp as the survivor's delete, so that a's hand-off
// of its erased record, absorbed back, deletes nothing more.
func deleteOf(a Absorption, survivor string, t trigger, p *Policy) events.CustomerEvent {
	return events.CustomerEvent{
		EventID: t.stamp.EventID, CustomerID: a.CustomerID, Channel: t.channel, Source: t.source, Op: events.OpDelete,
		OccurredAt: t.stamp.At, IngestedAt: instant(t.ingested),
		Merge: &events.Merge{MergeID: a.MergeID, SurvivorID: survivor, AbsorbedID: a.CustomerID, PolicyHash: p.Hash()},
	}
}

// emittedID returns the event ID of an emitted event: a ksuid with time at
// and a hash of the merge, the step, the version handed off and the
// policy, so the same fold always emits the same ID and no two steps share
// one.
func emittedID(mergeID, step string, version int64, p *Policy, at time.Time) string {
	h := sha256.New()
	for _, part := range []string{mergeID, step, strconv.FormatInt(version, 10), p.Hash()} {
		_ = binary.Write(h, binary.BigEndian, uint64(len(part)))
		h.Write([]byte(part))
	}
	lo := time.Unix(1400000000, 0) // the ksuid epoch; ksuid time is 32 bits of seconds from it
	hi := lo.Add(time.Duration(1<<32-1) * time.Second)
	switch {
	case at.Before(lo):
		at = lo
	case at.After(hi):
		at = hi
	}
	id, err := ksuid.FromParts(at, h.Sum(nil)[:16])
	if err != nil {
		panic("merge: ksuid payload must be 16 bytes") // programmer error
	}
	return id.String()
}

// sameStamp reports whether a and b are the same stamp.
func sameStamp(a, b Stamp) bool { return a.At.Equal(b.At) && a.EventID == b.EventID }

// sameRegister reports whether a and b are the same write.
func sameRegister(a, b Register) bool {
	return a.Value == b.Value && sameStamp(a.Stamp, b.Stamp) && a.Channel == b.Channel && a.Source == b.Source
}

// sameConflict reports whether a and b are the same conflict in the same state.
func sameConflict(a, b Conflict) bool {
	a.DetectedAt, a.ResolvedAt = instant(a.DetectedAt), instant(a.ResolvedAt)
	b.DetectedAt, b.ResolvedAt = instant(b.DetectedAt), instant(b.ResolvedAt)
	return a == b
}

// insertSorted returns a copy of sorted list with s inserted.
func insertSorted(list []string, s string) []string {
	i, found := slices.BinarySearch(list, s)
	if found {
		return list
	}
	return slices.Insert(slices.Clone(list), i, s)
}
