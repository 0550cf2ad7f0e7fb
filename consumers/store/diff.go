package store

import (
	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/pkg/events"
)

// Changes is how a record's child rows differ from those of the record it
// was folded from (see Batch.Base).
type Changes struct {
	Fields            []string // fields set or changed
	RemovedFields     []string
	Conflicts         []int // indexes in Conflicts of the new or changed ones
	RemovedConflicts  []string
	RemovedIdentities []events.Identity
	// TombstoneChanged: the messages the new tombstone covers are to be
	// erased.
	TombstoneChanged bool
}

// Diff returns how r's child rows differ from base's.
func Diff(base, r *merge.Record) Changes {
	var c Changes
	for f, g := range r.Fields {
		if b, ok := base.Fields[f]; !ok || !sameRegister(b, g) {
			c.Fields = append(c.Fields, f)
		}
	}
	for f := range base.Fields {
		if _, ok := r.Fields[f]; !ok {
			c.RemovedFields = append(c.RemovedFields, f)
		}
	}
	was := make(map[string]*merge.Conflict, len(base.Conflicts))
	for i := range base.Conflicts {
		was[base.Conflicts[i].ID] = &base.Conflicts[i]
	}
	now := make(map[string]bool, len(r.Conflicts))
	for i, k := range r.Conflicts {
		now[k.ID] = true
		if b, ok := was[k.ID]; !ok || !sameConflict(*b, k) {
			c.Conflicts = append(c.Conflicts, i)
		}
	}
	for _, k := range base.Conflicts {
		if !now[k.ID] {
			c.RemovedConflicts = append(c.RemovedConflicts, k.ID)
		}
	}
	type key struct{ kind, scope, value string }
	ids := r.AllIdentities()
	has := make(map[key]bool, len(ids))
	for _, i := range ids {
		has[key{i.Kind, i.Scope, i.Value}] = true
	}
	for _, i := range base.AllIdentities() {
		if !has[key{i.Kind, i.Scope, i.Value}] {
			c.RemovedIdentities = append(c.RemovedIdentities, i)
		}
	}
	c.TombstoneChanged = r.Tombstone != nil && (base.Tombstone == nil || !sameStamp(*base.Tombstone, *r.Tombstone))
	return c
}

func sameStamp(a, b merge.Stamp) bool { return a.At.Equal(b.At) && a.EventID == b.EventID }

func sameRegister(a, b merge.Register) bool {
	return a.Value == b.Value && sameStamp(a.Stamp, b.Stamp) && a.Channel == b.Channel && a.Source == b.Source
}

func sameConflict(a, b merge.Conflict) bool {
	return a.ID == b.ID && a.Field == b.Field && a.Current == b.Current && a.Candidate == b.Candidate &&
		a.CandidateEventID == b.CandidateEventID && a.CandidateChannel == b.CandidateChannel &&
		a.CandidateSource == b.CandidateSource && a.DetectedAt.Equal(b.DetectedAt) && a.Status == b.Status &&
		a.ResolvedBy == b.ResolvedBy && a.ResolvedAt.Equal(b.ResolvedAt)
}
