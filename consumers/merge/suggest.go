package merge

import (
	"encoding/json"
	"slices"

	"github.com/omnisync/omnisync/pkg/events"
)

// SuggestionField is the field of the conflict a SUGGEST_MERGE opens on the
// survivor's record (docs/design.md, Identity graph): a merge suggestion is
// reviewed like any conflict. Its Current is the survivor's ID and its
// Candidate a Suggestion, both as JSON; an agent confirms it by taking the
// candidate (and requesting the MERGE) or rejects it by keeping the current.
// Neither writes a field.
const SuggestionField = "merge"

// Suggestion is the candidate of a merge suggestion: the customer that may
// be the same person, and the identities the event showed of both.
type Suggestion struct {
	CustomerID string     `json:"customer_id"`
	Evidence   []Evidence `json:"evidence"`
}

// Evidence is an identity a merge suggestion rests on.
type Evidence struct {
	Kind     string `json:"kind"`
	Scope    string `json:"scope,omitempty"`
	Value    string `json:"value"`
	Verified bool   `json:"verified"`
}

// SuggestionOf decodes the candidate of a conflict on SuggestionField.
func SuggestionOf(c Conflict) (Suggestion, bool) {
	var s Suggestion
	if c.Field != SuggestionField || json.Unmarshal([]byte(c.Candidate), &s) != nil || s.CustomerID == "" {
		return Suggestion{}, false
	}
	return s, true
}

// suggest applies a SUGGEST_MERGE: it opens a conflict on SuggestionField
// unless the customer is already absorbed, or a suggestion of the same
// customer awaits review or was rejected.
func (ed *edit) suggest(ev *events.CustomerEvent) {
	m := ev.Merge
	if m == nil || m.SurvivorID != ev.CustomerID || m.AbsorbedID <= m.SurvivorID {
		ed.ignore(ReasonBadMerge)
		return
	}
	if slices.ContainsFunc(ed.rec.Absorbed, func(a Absorption) bool { return a.CustomerID == m.AbsorbedID }) {
		return
	}
	if slices.ContainsFunc(ed.rec.Conflicts, func(c Conflict) bool {
		s, ok := SuggestionOf(c)
		return ok && s.CustomerID == m.AbsorbedID && (c.Open() || c.Status == events.ConflictKeptCurrent)
	}) {
		return
	}
	evidence := make([]Evidence, 0, len(m.Evidence))
	for _, id := range m.Evidence {
		evidence = append(evidence, Evidence(id))
	}
	candidate, _ := json.Marshal(Suggestion{CustomerID: m.AbsorbedID, Evidence: evidence})
	current, _ := json.Marshal(m.SurvivorID)
	s := stampOf(ev.OccurredAt, ev.EventID)
	ed.addConflict(Conflict{
		ID: ConflictID(ed.customer, SuggestionField, ev.EventID), Field: SuggestionField,
		Current: string(current), Candidate: string(candidate),
		CandidateEventID: ev.EventID, CandidateChannel: channelOf(ev.Channel), CandidateSource: ev.Source,
		DetectedAt: s.At, Status: events.ConflictOpen,
	})
	ed.out.ConflictsOpened++
}
