package forwarder

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/omnisync/omnisync/pkg/events"
)

// Body is the JSON the forwarder POSTs to the target for each state record:
// the CustomerState fields, with every field's value as JSON (not JSON
// text) and times in RFC 3339 UTC.
//
//	{
//	  "customer_id": "c-1",
//	  "version": 7,
//	  "deleted": false,
//	  "needs_review": true,
//	  "updated_at": "2026-11-22T08:00:00Z",
//	  "last_contact_at": "2026-11-22T08:00:00Z",
//	  "last_contact_channel": "WECHAT",
//	  "policy_hash": "…",
//	  "fields": {"name": {"value": "李娜", "occurred_at": "…", "event_id": "…", "channel": "WEB", "source": "web/widget"}},
//	  "identities": [{"kind": "phone", "scope": "", "value": "+8613800138000"}],
//	  "conflicts": [{"id": "…", "field": "phone", "current": "+86…", "candidate": "+86…",
//	                 "candidate_event_id": "…", "candidate_channel": "APP", "candidate_source": "…",
//	                 "detected_at": "…", "status": "OPEN"}],
//	  "merged_into": null,
//	  "absorbed_ids": ["c-9"]
//	}
//
// merged_into names the survivor of a customer merged into another (the
// target redirects it there); absorbed_ids are the customers merged into
// this one (their data is in this record). An unmerge publishes both
// customers again without them.
//
// Delivery is at least once: the same version can arrive twice (after a
// restart or a rebalance), and versions of a customer arrive in order. A
// target keeps the newest version per customer_id and ignores a version
// it has already seen; the Idempotency-Key header (customer_id:version)
// says the same.
type Body struct {
	CustomerID         string           `json:"customer_id"`
	Version            int64            `json:"version"`
	Deleted            bool             `json:"deleted"`
	NeedsReview        bool             `json:"needs_review"`
	UpdatedAt          time.Time        `json:"updated_at"`
	LastContactAt      *time.Time       `json:"last_contact_at"`
	LastContactChannel events.Channel   `json:"last_contact_channel"`
	PolicyHash         string           `json:"policy_hash"`
	Fields             map[string]Field `json:"fields"`
	Identities         []Identity       `json:"identities"`
	Conflicts          []Conflict       `json:"conflicts"`
	MergedInto         *string          `json:"merged_into"`
	AbsorbedIDs        []string         `json:"absorbed_ids"`
}

// Field is one field's value and the write that set it.
type Field struct {
	Value      json.RawMessage `json:"value"`
	OccurredAt time.Time       `json:"occurred_at"`
	EventID    string          `json:"event_id"`
	Channel    events.Channel  `json:"channel"`
	Source     string          `json:"source"`
}

// Identity is a channel identity of the customer.
type Identity struct {
	Kind     string `json:"kind"`
	Scope    string `json:"scope"`
	Value    string `json:"value"`
	Verified bool   `json:"verified"`
}

// Conflict is a key-field disagreement and its review status.
type Conflict struct {
	ID               string                `json:"id"`
	Field            string                `json:"field"`
	Current          json.RawMessage       `json:"current"`
	Candidate        json.RawMessage       `json:"candidate"`
	CandidateEventID string                `json:"candidate_event_id"`
	CandidateChannel events.Channel        `json:"candidate_channel"`
	CandidateSource  string                `json:"candidate_source"`
	DetectedAt       time.Time             `json:"detected_at"`
	Status           events.ConflictStatus `json:"status"`
}

// NewBody converts a state record; it fails when a value is not valid JSON
// text, which no materializer writes.
func NewBody(s *events.CustomerState) (*Body, error) {
	b := &Body{
		CustomerID: s.CustomerID, Version: s.Version, Deleted: s.Deleted, NeedsReview: s.NeedsReview,
		UpdatedAt: s.UpdatedAt.UTC(), LastContactChannel: s.LastContactChannel, PolicyHash: s.PolicyHash,
		Fields: make(map[string]Field, len(s.Fields)), Identities: make([]Identity, 0, len(s.Identities)),
		Conflicts: make([]Conflict, 0, len(s.Conflicts)), MergedInto: s.MergedInto, AbsorbedIDs: append([]string{}, s.AbsorbedIDs...),
	}
	if s.LastContactAt != nil {
		t := s.LastContactAt.UTC()
		b.LastContactAt = &t
	}
	for name, r := range s.Fields {
		v, err := rawJSON(r.ValueJSON)
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", name, err)
		}
		b.Fields[name] = Field{Value: v, OccurredAt: r.OccurredAt.UTC(), EventID: r.EventID, Channel: r.Channel, Source: r.Source}
	}
	for _, id := range s.Identities {
		b.Identities = append(b.Identities, Identity{Kind: id.Kind, Scope: id.Scope, Value: id.Value, Verified: id.Verified})
	}
	for _, c := range s.Conflicts {
		cur, err := rawJSON(c.CurrentJSON)
		if err != nil {
			return nil, fmt.Errorf("conflict %s current value: %w", c.ID, err)
		}
		cand, err := rawJSON(c.CandidateJSON)
		if err != nil {
			return nil, fmt.Errorf("conflict %s candidate value: %w", c.ID, err)
		}
		b.Conflicts = append(b.Conflicts, Conflict{
			ID: c.ID, Field: c.Field, Current: cur, Candidate: cand, CandidateEventID: c.CandidateEventID,
			CandidateChannel: c.CandidateChannel, CandidateSource: c.CandidateSource, DetectedAt: c.DetectedAt.UTC(), Status: c.Status,
		})
	}
	return b, nil
}

func rawJSON(text string) (json.RawMessage, error) {
	if !json.Valid([]byte(text)) {
		return nil, fmt.Errorf("value %q is not valid JSON", text)
	}
	return json.RawMessage(text), nil
}
