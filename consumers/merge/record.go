package merge

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/omnisync/omnisync/pkg/events"
)

// Record is one customer's merged record. The zero Record is the record of
// a customer no event has touched yet. Records are values: Apply and
// ApplyMessage never modify the record they are given, and callers must
// not modify the maps and slices of a record they have handed to them.
//
// Two records are equal exactly when their CanonicalHash is. A Record
// round-trips through encoding/json (MarshalJSON writes the canonical
// encoding), which is how a store can keep it between events.
type Record struct {
	CustomerID string
	// Version grows by one with every event that changed the record.
	Version int64
	// Fields holds a register per field ever written or cleared since the
	// last delete; a cleared field's register holds null.
	Fields map[string]Register
	// Identities is every channel identity customer events carried since
	// the last delete, sorted by kind, scope and value, without
	// duplicates. Messages' identities are in Sightings; readers want
	// AllIdentities, the union of the two.
	Identities []events.Identity
	// Sightings is every identity messages carried after the last delete,
	// sorted by kind, scope and value, each with the stamps of the newest
	// message that carried it (verified); see Sighting.
	Sightings []Sighting
	// Conflicts is every conflict detected since the last delete, open or
	// closed, sorted by DetectedAt and then ID.
	Conflicts []Conflict
	// NeedsReview is true exactly when a conflict is open.
	NeedsReview bool
	// Tombstone is the stamp of the newest DELETE applied, nil if none.
	Tombstone *Stamp
	// LastContact is the stamp (occurred_at, message_id) of the newest
	// message since the last delete, nil if none.
	LastContact *Stamp
	// LastContactChannel is the channel of that message, empty if none.
	LastContactChannel events.Channel
	// UpdatedAt is the newest occurred_at of the events that changed the
	// record.
	UpdatedAt time.Time
	// PolicyHash is the Hash of the policy of the last change.
	PolicyHash string

	// The customer merge (docs/design.md, Customer merge). All are empty
	// for a customer that never took part in a merge.

	// MergedInto is set while the customer is absorbed into another: the
	// API answers for it with the survivor. Its own events still fold into
	// the record, which is what an unmerge gives back.
	MergedInto *MergeRef
	// Absorbed is every customer merged into this one and not unmerged,
	// in the order their hand-offs arrived, each with the snapshot of its
	// record absorbed last.
	Absorbed []Absorption
	// Own is, while Absorbed is not empty, the record this customer's own
	// events alone fold to (what an unmerge restores); nil otherwise.
	Own *Record
	// EndedMerges holds the IDs of the unmerged merges this customer took
	// part in, sorted, so late copies of their events change nothing.
	EndedMerges []string
}

// Sighting is an identity messages carried: the stamp of the newest
// message that carried it and of the newest that carried it verified (nil
// if none did). A DELETE stamped t keeps a sighting only when Seen is
// after t, and its verification only when Verified is, which makes a
// record the same whichever order its events and messages were folded in.
type Sighting struct {
	Kind, Scope, Value string
	Seen               Stamp
	Verified           *Stamp
}

// Identity returns the identity seen, verified when a message carried it
// verified.
func (s Sighting) Identity() events.Identity {
	return events.Identity{Kind: s.Kind, Scope: s.Scope, Value: s.Value, Verified: s.Verified != nil}
}

// AllIdentities returns the customer's identities: those of its events and
// those of its messages, sorted by kind, scope and value, without
// duplicates, verified when either side has it verified. It is what every
// reader of a record's identities uses; the result is the caller's.
func (r Record) AllIdentities() []events.Identity {
	out := make([]events.Identity, len(r.Identities), len(r.Identities)+len(r.Sightings))
	copy(out, r.Identities)
	for _, s := range r.Sightings {
		id := s.Identity()
		i, found := slices.BinarySearchFunc(out, id, compareIdentity)
		switch {
		case !found:
			out = slices.Insert(out, i, id)
		case id.Verified:
			out[i].Verified = true
		}
	}
	return out
}

// MergeRef names the survivor a customer is merged into.
type MergeRef struct {
	// MergeID is the event ID of the MERGE request.
	MergeID string
	// CustomerID is the survivor.
	CustomerID string
	// At is the stamp of the MERGE request.
	At Stamp
}

// Absorption is a customer merged into this one.
type Absorption struct {
	MergeID    string
	CustomerID string
	// At is the stamp of the first hand-off (the MERGE request's time).
	At Stamp
	// Snapshot is the absorbed customer's record as last handed off,
	// without merge bookkeeping.
	Snapshot Record
	// Evidence and DecidedBy are the MERGE request's (carried by its
	// first hand-off): why the customers were merged, and who decided.
	Evidence  []events.Identity
	DecidedBy string
}

// Register is a last-write-wins field value with the stamp and provenance
// of the write that set it.
type Register struct {
	// Value is canonical JSON text; "null" when the field was cleared.
	Value   string
	Stamp   Stamp
	Channel events.Channel
	Source  string
}

// Cleared reports whether the register holds a cleared (null) value.
func (g Register) Cleared() bool { return g.Value == null }

// Conflict is a write to a key field that was held back for review: the
// field keeps Current, Candidate awaits an agent's decision.
type Conflict struct {
	// ID is derived from the customer ID, the field and the candidate
	// event ID: the same candidate always has the same ID.
	ID    string
	Field string
	// Current and Candidate are canonical JSON text, as in Register.
	Current          string
	Candidate        string
	CandidateEventID string
	CandidateChannel events.Channel
	CandidateSource  string
	// DetectedAt is the candidate event's occurred_at.
	DetectedAt time.Time
	Status     events.ConflictStatus
	// ResolvedBy is the agent named by the resolution; ResolvedAt the
	// resolve event's occurred_at. Both are zero while the conflict is open.
	ResolvedBy string
	ResolvedAt time.Time
}

// Open reports whether the conflict awaits review.
func (c Conflict) Open() bool { return c.Status == events.ConflictOpen }

// Deleted reports whether the customer was deleted and nothing was
// recorded since.
func (r Record) Deleted() bool {
	return r.Tombstone != nil && len(r.Fields) == 0 && len(r.Identities) == 0 && len(r.Sightings) == 0 &&
		len(r.Conflicts) == 0 && r.LastContact == nil
}

// State returns the record as published to the state topic. Cleared fields
// are published with value_json "null"; a deleted record has deleted=true
// and nothing else but its ID, version, update time and policy hash (and
// the merge's redirect and absorbed IDs, which a delete keeps).
// The schema has no place for a conflict's ResolvedBy and ResolvedAt.
func (r Record) State() events.CustomerState {
	s := events.CustomerState{
		CustomerID:         r.CustomerID,
		Version:            r.Version,
		Deleted:            r.Deleted(),
		Fields:             make(map[string]events.Register, len(r.Fields)),
		Identities:         r.AllIdentities(),
		Conflicts:          make([]events.Conflict, 0, len(r.Conflicts)),
		NeedsReview:        r.NeedsReview,
		LastContactChannel: events.ChannelUnknown,
		UpdatedAt:          r.UpdatedAt,
		PolicyHash:         r.PolicyHash,
		AbsorbedIDs:        make([]string, 0, len(r.Absorbed)),
	}
	if r.MergedInto != nil {
		to := r.MergedInto.CustomerID
		s.MergedInto = &to
	}
	for _, a := range r.Absorbed {
		s.AbsorbedIDs = append(s.AbsorbedIDs, a.CustomerID)
	}
	for f, g := range r.Fields {
		s.Fields[f] = events.Register{ValueJSON: g.Value, OccurredAt: g.Stamp.At, EventID: g.Stamp.EventID, Channel: g.Channel, Source: g.Source}
	}
	for _, c := range r.Conflicts {
		s.Conflicts = append(s.Conflicts, events.Conflict{
			ID: c.ID, Field: c.Field, CurrentJSON: c.Current, CandidateJSON: c.Candidate,
			CandidateEventID: c.CandidateEventID, CandidateChannel: c.CandidateChannel, CandidateSource: c.CandidateSource,
			DetectedAt: c.DetectedAt, Status: c.Status,
		})
	}
	if r.LastContact != nil {
		at := r.LastContact.At
		s.LastContactAt = &at
		s.LastContactChannel = r.LastContactChannel
	}
	return s
}

// CanonicalHash returns the SHA-256 (hex) of the record's canonical
// encoding (MarshalJSON). Two records are equal exactly when their hashes
// are, whichever process built them.
func (r Record) CanonicalHash() string {
	b, _ := r.MarshalJSON() // cannot fail
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// The canonical encoding: JSON objects with fixed keys, maps (sorted by
// encoding/json), slices in the record's defined order, times as Unix
// milliseconds, absent values as null and empty collections as [] or {}.
type (
	recordJSON struct {
		CustomerID string                  `json:"customer_id"`
		Version    int64                   `json:"version"`
		Fields     map[string]registerJSON `json:"fields"`
		Identities []identityJSON          `json:"identities"`
		// Left out when empty, so records of before sightings existed
		// (whose identities include their messages') load and hash as
		// they did.
		Sightings          []sightingJSON `json:"sightings,omitempty"`
		Conflicts          []conflictJSON `json:"conflicts"`
		NeedsReview        bool           `json:"needs_review"`
		Tombstone          *stampJSON     `json:"tombstone"`
		LastContact        *stampJSON     `json:"last_contact"`
		LastContactChannel events.Channel `json:"last_contact_channel"`
		UpdatedAt          int64          `json:"updated_at"`
		PolicyHash         string         `json:"policy_hash"`
		// The merge keys are left out when empty, so the record of a
		// customer that never took part in a merge encodes (and hashes) as
		// it did before merges existed, and stored JSON of then loads.
		MergedInto  *mergeRefJSON    `json:"merged_into,omitempty"`
		Absorbed    []absorptionJSON `json:"absorbed,omitempty"`
		Own         *Record          `json:"own,omitempty"`
		EndedMerges []string         `json:"ended_merges,omitempty"`
	}
	mergeRefJSON struct {
		MergeID    string    `json:"merge_id"`
		CustomerID string    `json:"customer_id"`
		At         stampJSON `json:"at"`
	}
	absorptionJSON struct {
		MergeID    string    `json:"merge_id"`
		CustomerID string    `json:"customer_id"`
		At         stampJSON `json:"at"`
		Snapshot   Record    `json:"snapshot"`
		// Left out when empty, as the merge keys of the record are.
		Evidence  []identityJSON `json:"evidence,omitempty"`
		DecidedBy string         `json:"decided_by,omitempty"`
	}
	sightingJSON struct {
		Kind     string     `json:"kind"`
		Scope    string     `json:"scope"`
		Value    string     `json:"value"`
		Seen     stampJSON  `json:"seen"`
		Verified *stampJSON `json:"verified"`
	}
	stampJSON struct {
		At      int64  `json:"at"`
		EventID string `json:"event_id"`
	}
	registerJSON struct {
		ValueJSON string         `json:"value_json"`
		Stamp     stampJSON      `json:"stamp"`
		Channel   events.Channel `json:"channel"`
		Source    string         `json:"source"`
	}
	identityJSON struct {
		Kind     string `json:"kind"`
		Scope    string `json:"scope"`
		Value    string `json:"value"`
		Verified bool   `json:"verified"`
	}
	conflictJSON struct {
		ID               string                `json:"id"`
		Field            string                `json:"field"`
		CurrentJSON      string                `json:"current_json"`
		CandidateJSON    string                `json:"candidate_json"`
		CandidateEventID string                `json:"candidate_event_id"`
		CandidateChannel events.Channel        `json:"candidate_channel"`
		CandidateSource  string                `json:"candidate_source"`
		DetectedAt       int64                 `json:"detected_at"`
		Status           events.ConflictStatus `json:"status"`
		ResolvedBy       string                `json:"resolved_by"`
		ResolvedAt       *int64                `json:"resolved_at"`
	}
)

// MarshalJSON returns the record's canonical encoding. Times are encoded
// at millisecond precision, which is all Apply keeps.
func (r Record) MarshalJSON() ([]byte, error) {
	out := recordJSON{
		CustomerID:         r.CustomerID,
		Version:            r.Version,
		Fields:             make(map[string]registerJSON, len(r.Fields)),
		Identities:         make([]identityJSON, 0, len(r.Identities)),
		Conflicts:          make([]conflictJSON, 0, len(r.Conflicts)),
		NeedsReview:        r.NeedsReview,
		Tombstone:          stampToJSON(r.Tombstone),
		LastContact:        stampToJSON(r.LastContact),
		LastContactChannel: r.LastContactChannel,
		UpdatedAt:          r.UpdatedAt.UnixMilli(),
		PolicyHash:         r.PolicyHash,
		Own:                r.Own,
		EndedMerges:        r.EndedMerges,
	}
	if m := r.MergedInto; m != nil {
		out.MergedInto = &mergeRefJSON{m.MergeID, m.CustomerID, *stampToJSON(&m.At)}
	}
	for _, a := range r.Absorbed {
		aj := absorptionJSON{MergeID: a.MergeID, CustomerID: a.CustomerID, At: *stampToJSON(&a.At), Snapshot: a.Snapshot, DecidedBy: a.DecidedBy}
		for _, id := range a.Evidence {
			aj.Evidence = append(aj.Evidence, identityJSON(id))
		}
		out.Absorbed = append(out.Absorbed, aj)
	}
	for f, g := range r.Fields {
		out.Fields[f] = registerJSON{g.Value, *stampToJSON(&g.Stamp), g.Channel, g.Source}
	}
	for _, id := range r.Identities {
		out.Identities = append(out.Identities, identityJSON(id))
	}
	for _, x := range r.Sightings {
		out.Sightings = append(out.Sightings, sightingJSON{x.Kind, x.Scope, x.Value, *stampToJSON(&x.Seen), stampToJSON(x.Verified)})
	}
	for _, c := range r.Conflicts {
		cj := conflictJSON{
			ID: c.ID, Field: c.Field, CurrentJSON: c.Current, CandidateJSON: c.Candidate,
			CandidateEventID: c.CandidateEventID, CandidateChannel: c.CandidateChannel, CandidateSource: c.CandidateSource,
			DetectedAt: c.DetectedAt.UnixMilli(), Status: c.Status, ResolvedBy: c.ResolvedBy,
		}
		if !c.ResolvedAt.IsZero() {
			ms := c.ResolvedAt.UnixMilli()
			cj.ResolvedAt = &ms
		}
		out.Conflicts = append(out.Conflicts, cj)
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads the canonical encoding written by MarshalJSON.
func (r *Record) UnmarshalJSON(b []byte) error {
	var in recordJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return fmt.Errorf("decoding merge record: %w", err)
	}
	out := Record{
		CustomerID:         in.CustomerID,
		Version:            in.Version,
		NeedsReview:        in.NeedsReview,
		Tombstone:          stampFromJSON(in.Tombstone),
		LastContact:        stampFromJSON(in.LastContact),
		LastContactChannel: in.LastContactChannel,
		UpdatedAt:          fromMillis(in.UpdatedAt),
		PolicyHash:         in.PolicyHash,
		Own:                in.Own,
		EndedMerges:        in.EndedMerges,
	}
	if m := in.MergedInto; m != nil {
		out.MergedInto = &MergeRef{m.MergeID, m.CustomerID, *stampFromJSON(&m.At)}
	}
	for _, a := range in.Absorbed {
		ab := Absorption{MergeID: a.MergeID, CustomerID: a.CustomerID, At: *stampFromJSON(&a.At), Snapshot: a.Snapshot, DecidedBy: a.DecidedBy}
		for _, id := range a.Evidence {
			ab.Evidence = append(ab.Evidence, events.Identity(id))
		}
		out.Absorbed = append(out.Absorbed, ab)
	}
	if len(in.Fields) > 0 {
		out.Fields = make(map[string]Register, len(in.Fields))
		for f, g := range in.Fields {
			out.Fields[f] = Register{g.ValueJSON, *stampFromJSON(&g.Stamp), g.Channel, g.Source}
		}
	}
	for _, id := range in.Identities {
		out.Identities = append(out.Identities, events.Identity(id))
	}
	for _, x := range in.Sightings {
		out.Sightings = append(out.Sightings, Sighting{x.Kind, x.Scope, x.Value, *stampFromJSON(&x.Seen), stampFromJSON(x.Verified)})
	}
	for _, c := range in.Conflicts {
		rc := Conflict{
			ID: c.ID, Field: c.Field, Current: c.CurrentJSON, Candidate: c.CandidateJSON,
			CandidateEventID: c.CandidateEventID, CandidateChannel: c.CandidateChannel, CandidateSource: c.CandidateSource,
			DetectedAt: fromMillis(c.DetectedAt), Status: c.Status, ResolvedBy: c.ResolvedBy,
		}
		if c.ResolvedAt != nil {
			rc.ResolvedAt = fromMillis(*c.ResolvedAt)
		}
		out.Conflicts = append(out.Conflicts, rc)
	}
	*r = out
	return nil
}

// public returns the record without its merge bookkeeping: what a hand-off
// carries and what Own holds.
func (r Record) public() Record {
	r.MergedInto, r.Absorbed, r.Own, r.EndedMerges = nil, nil, nil, nil
	return r
}

// content returns the record without its customer ID, what changes with
// every change (version, update time, policy hash) and merge bookkeeping: two
// records with the same content hold the same profile, identities,
// conflicts, tombstone and last contact.
func (r Record) content() Record {
	r = r.public()
	r.CustomerID, r.Version, r.UpdatedAt, r.PolicyHash = "", 0, time.Time{}, ""
	return r
}

// ContentHash returns the CanonicalHash of the record's content: the
// profile, identities, conflicts, tombstone and last contact, without the
// customer ID, version, update time, policy hash and merge bookkeeping. An unmerge gives
// each customer back the content its own events fold to.
func (r Record) ContentHash() string { return r.content().CanonicalHash() }

func stampToJSON(s *Stamp) *stampJSON {
	if s == nil {
		return nil
	}
	return &stampJSON{s.At.UnixMilli(), s.EventID}
}

func stampFromJSON(s *stampJSON) *Stamp {
	if s == nil {
		return nil
	}
	return &Stamp{fromMillis(s.At), s.EventID}
}

func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }
