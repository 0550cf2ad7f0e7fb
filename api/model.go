package api

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/pkg/events"
)

// The API's JSON bodies; api/openapi.yaml describes the same shapes (a
// test keeps the two in step). Times are RFC 3339 UTC with milliseconds;
// field values are JSON values (strings, numbers, arrays, objects, null
// for a cleared field).

// CustomerSummary is one search result.
type CustomerSummary struct {
	ID                 string     `json:"id"`
	Version            int64      `json:"version"`
	Name               *string    `json:"name"`
	Phone              *string    `json:"phone"`
	Email              *string    `json:"email"`
	NeedsReview        bool       `json:"needs_review"`
	OpenConflicts      int        `json:"open_conflicts"`
	Channels           []string   `json:"channels"`
	LastContactAt      *time.Time `json:"last_contact_at"`
	LastContactChannel *string    `json:"last_contact_channel"`
	UpdatedAt          time.Time  `json:"updated_at"`
}

// Customer is the unified customer view.
type Customer struct {
	ID                 string           `json:"id"`
	Version            int64            `json:"version"`
	Deleted            bool             `json:"deleted"`
	NeedsReview        bool             `json:"needs_review"`
	Fields             map[string]Field `json:"fields"`
	Identities         []Identity       `json:"identities"`
	Conflicts          []Conflict       `json:"conflicts"`
	Channels           []string         `json:"channels"`
	LastContactAt      *time.Time       `json:"last_contact_at"`
	LastContactChannel *string          `json:"last_contact_channel"`
	UpdatedAt          time.Time        `json:"updated_at"`
	PolicyHash         string           `json:"policy_hash"`
	// RedirectedFrom is the ID asked for when it was merged into this
	// customer (through RedirectPath), null otherwise.
	RedirectedFrom *string `json:"redirected_from"`
	// RedirectPath is every merged ID followed to this customer, the one
	// asked for first; empty when not redirected.
	RedirectPath []string `json:"redirect_path"`
	// MergedInto is the survivor this customer is merged into when the
	// store does not know the survivor yet (its hand-off is not folded),
	// null otherwise.
	MergedInto *string `json:"merged_into"`
	// AlsoKnownAs is every customer merged into this one, through chains.
	AlsoKnownAs []AlsoKnownAs `json:"also_known_as"`
}

// AlsoKnownAs is a customer merged into another: when, why and by whom.
type AlsoKnownAs struct {
	ID        string     `json:"id"`
	MergeID   string     `json:"merge_id"`
	MergedAt  time.Time  `json:"merged_at"`
	DecidedBy string     `json:"decided_by"`
	Evidence  []Identity `json:"evidence"`
	// Via is the customer it was absorbed into when that one was merged
	// into this customer in turn (a chain), null when absorbed directly.
	Via *string `json:"via"`
}

// MergeRequest is the body of POST /api/v1/merges.
type MergeRequest struct {
	SurvivorID string `json:"survivor_id"`
	AbsorbedID string `json:"absorbed_id"`
	// Evidence is the identities the two customers share, optional.
	Evidence  []Identity `json:"evidence,omitempty"`
	DecidedBy string     `json:"decided_by,omitempty"`
}

// UnmergeRequest is the body of POST /api/v1/customers/{id}/unmerge.
type UnmergeRequest struct {
	MergeID   string `json:"merge_id"`
	DecidedBy string `json:"decided_by,omitempty"`
}

// MergeAccepted answers a merge or an unmerge: the request is in Kafka;
// the materializers fold it (and the events it emits) shortly.
type MergeAccepted struct {
	MergeID    string `json:"merge_id"`
	EventID    string `json:"event_id"`
	SurvivorID string `json:"survivor_id"`
	AbsorbedID string `json:"absorbed_id"`
}

// Field is a field's value and where it came from.
type Field struct {
	Value      json.RawMessage `json:"value"`
	Channel    string          `json:"channel"`
	Source     string          `json:"source"`
	OccurredAt time.Time       `json:"occurred_at"`
	EventID    string          `json:"event_id"`
}

// Identity is a channel identity of a customer.
type Identity struct {
	Kind     string `json:"kind"`
	Scope    string `json:"scope"`
	Value    string `json:"value"`
	Verified bool   `json:"verified"`
}

// Conflict is an entry of the review queue.
type Conflict struct {
	ID               string          `json:"id"`
	CustomerID       string          `json:"customer_id"`
	CustomerName     *string         `json:"customer_name,omitempty"`
	Field            string          `json:"field"`
	Current          json.RawMessage `json:"current"`
	Candidate        json.RawMessage `json:"candidate"`
	CandidateEventID string          `json:"candidate_event_id"`
	CandidateChannel string          `json:"candidate_channel"`
	CandidateSource  string          `json:"candidate_source"`
	DetectedAt       time.Time       `json:"detected_at"`
	Status           string          `json:"status"`
	ResolvedBy       *string         `json:"resolved_by"`
	ResolvedAt       *time.Time      `json:"resolved_at"`
}

// Message is an entry of a customer's timeline.
type Message struct {
	ID             string             `json:"id"`
	ConversationID string             `json:"conversation_id"`
	Channel        string             `json:"channel"`
	Direction      string             `json:"direction"`
	SenderType     string             `json:"sender_type"`
	SenderID       string             `json:"sender_id"`
	ContentType    string             `json:"content_type"`
	Text           *string            `json:"text"`
	Attachments    []Attachment       `json:"attachments"`
	Location       *Location          `json:"location"`
	Transcript     *TranscriptSegment `json:"transcript"`
	Tags           []string           `json:"tags"`
	Metadata       map[string]string  `json:"metadata"`
	Source         string             `json:"source"`
	OccurredAt     time.Time          `json:"occurred_at"`
	IngestedAt     time.Time          `json:"ingested_at"`
}

// Attachment of a message.
type Attachment struct {
	URL          string  `json:"url"`
	MIMEType     string  `json:"mime_type"`
	SizeBytes    int64   `json:"size_bytes"`
	ThumbnailURL *string `json:"thumbnail_url"`
}

// Location of a location message.
type Location struct {
	Latitude   float64 `json:"latitude"`
	Longitude  float64 `json:"longitude"`
	PrecisionM float64 `json:"precision_m"`
	Label      string  `json:"label"`
}

// TranscriptSegment is one speaker turn of a call.
type TranscriptSegment struct {
	CallID     string  `json:"call_id"`
	Segment    int32   `json:"segment"`
	Speaker    string  `json:"speaker"`
	StartMS    int64   `json:"start_ms"`
	EndMS      int64   `json:"end_ms"`
	Confidence float32 `json:"confidence"`
}

// Page wraps a list with the cursor of the next page ("" on the last).
type Page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor"`
}

// ResolveRequest is the body of POST /api/v1/conflicts/{id}/resolve.
type ResolveRequest struct {
	// Choice: keep_current, take_candidate or set_value.
	Choice string `json:"choice"`
	// Value is the new value for set_value, in the field's text form.
	Value *string `json:"value"`
	// ResolvedBy is optional: the resolver is the authenticated caller,
	// and a request naming anyone else is refused.
	ResolvedBy string `json:"resolved_by,omitempty"`
}

// ResolveAccepted answers a resolve: the RESOLVE event is in Kafka; the
// materializer closes the conflict when it applies it.
type ResolveAccepted struct {
	ConflictID string `json:"conflict_id"`
	EventID    string `json:"event_id"`
	CustomerID string `json:"customer_id"`
	// MergeEventID is, when a merge suggestion was confirmed, the MERGE
	// request published with the resolution.
	MergeEventID string `json:"merge_event_id,omitempty"`
}

// Error is the body of every error answer.
type Error struct {
	Error  string `json:"error"`
	Reason string `json:"reason"`
}

func ms(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = ms(t)
	return &t
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// textField returns a field's value when it is a JSON string.
func textField(r merge.Record, field string) *string {
	g, ok := r.Fields[field]
	if !ok {
		return nil
	}
	var s string
	if json.Unmarshal([]byte(g.Value), &s) != nil {
		return nil
	}
	return &s
}

// phoneOf is the customer's phone field or, without one, the number a
// channel vouched for (a caller's): the lowest authority, shown only where
// no source set the field.
func phoneOf(r merge.Record) *string {
	if p := textField(r, "phone"); p != nil {
		return p
	}
	for _, id := range r.Identities {
		if id.Kind == "phone" && id.Verified {
			return &id.Value
		}
	}
	return nil
}

func openConflicts(r merge.Record) int {
	n := 0
	for _, c := range r.Conflicts {
		if c.Open() {
			n++
		}
	}
	return n
}

// summaryOf is the list entry of r; messageChannels are the channels of
// its stored messages.
func summaryOf(r merge.Record, messageChannels []events.Channel) CustomerSummary {
	s := CustomerSummary{
		ID: r.CustomerID, Version: r.Version, Name: textField(r, "name"), Phone: phoneOf(r),
		Email: textField(r, "email"), NeedsReview: r.NeedsReview, OpenConflicts: openConflicts(r),
		Channels: channelsOf(r, messageChannels), UpdatedAt: ms(r.UpdatedAt),
	}
	if r.LastContact != nil {
		s.LastContactAt, s.LastContactChannel = optTime(r.LastContact.At), optString(string(r.LastContactChannel))
	}
	return s
}

// identityChannels maps the identity kinds that only one channel mints
// to that channel.
var identityChannels = map[string]events.Channel{
	"web_visitor": events.ChannelWeb, "app_user": events.ChannelApp, "device": events.ChannelApp,
	"wechat_openid": events.ChannelWeChat, "miniprogram_openid": events.ChannelMiniProgram, "crm": events.ChannelCRM,
}

// channelsOf lists every channel the customer has used — those that wrote
// a field, minted an identity or carried a message — in a fixed order.
func channelsOf(r merge.Record, messageChannels []events.Channel) []string {
	seen := map[events.Channel]bool{r.LastContactChannel: r.LastContactChannel != ""}
	for _, c := range messageChannels {
		seen[c] = true
	}
	for _, g := range r.Fields {
		seen[g.Channel] = true
	}
	for _, id := range r.AllIdentities() {
		seen[identityChannels[id.Kind]] = true
	}
	out := []string{}
	for _, c := range []events.Channel{events.ChannelWeb, events.ChannelApp, events.ChannelMiniProgram, events.ChannelWeChat,
		events.ChannelPhone, events.ChannelCRM, events.ChannelImport, events.ChannelAgent} {
		if seen[c] {
			out = append(out, string(c))
		}
	}
	return out
}

// customerOf is the unified view of r; messageChannels are the channels of
// its stored messages.
func customerOf(r merge.Record, messageChannels []events.Channel) Customer {
	c := Customer{
		ID: r.CustomerID, Version: r.Version, Deleted: r.Deleted(), NeedsReview: r.NeedsReview, Channels: channelsOf(r, messageChannels),
		Fields: make(map[string]Field, len(r.Fields)), Identities: []Identity{},
		Conflicts: make([]Conflict, 0, len(r.Conflicts)), UpdatedAt: ms(r.UpdatedAt), PolicyHash: r.PolicyHash,
		RedirectPath: []string{}, AlsoKnownAs: []AlsoKnownAs{},
	}
	if r.MergedInto != nil {
		c.MergedInto = &r.MergedInto.CustomerID
	}
	for name, g := range r.Fields {
		c.Fields[name] = Field{Value: json.RawMessage(g.Value), Channel: string(g.Channel), Source: g.Source,
			OccurredAt: ms(g.Stamp.At), EventID: g.Stamp.EventID}
	}
	for _, id := range r.AllIdentities() {
		c.Identities = append(c.Identities, Identity(id))
	}
	for _, x := range r.Conflicts {
		c.Conflicts = append(c.Conflicts, conflictOf(store.Conflict{CustomerID: r.CustomerID, Conflict: x}))
	}
	if r.LastContact != nil {
		c.LastContactAt, c.LastContactChannel = optTime(r.LastContact.At), optString(string(r.LastContactChannel))
	}
	return c
}

func conflictOf(c store.Conflict) Conflict {
	return Conflict{
		ID: c.ID, CustomerID: c.CustomerID, Field: c.Field, Current: json.RawMessage(c.Current),
		Candidate: json.RawMessage(c.Candidate), CandidateEventID: c.CandidateEventID,
		CandidateChannel: string(c.CandidateChannel), CandidateSource: c.CandidateSource, DetectedAt: ms(c.DetectedAt),
		Status: string(c.Status), ResolvedBy: optString(c.ResolvedBy), ResolvedAt: optTime(c.ResolvedAt),
	}
}

func messageOf(m events.MessageEvent) Message {
	out := Message{
		ID: m.MessageID, ConversationID: m.ConversationID, Channel: string(m.Channel), Direction: string(m.Direction),
		SenderType: string(m.SenderType), SenderID: m.SenderID, ContentType: string(m.ContentType), Text: m.Text,
		Attachments: make([]Attachment, 0, len(m.Attachments)), Tags: m.Tags, Metadata: m.Metadata,
		Source: m.Source, OccurredAt: ms(m.OccurredAt), IngestedAt: ms(m.IngestedAt),
	}
	for _, a := range m.Attachments {
		out.Attachments = append(out.Attachments, Attachment(a))
	}
	if l := m.Location; l != nil {
		loc := Location(*l)
		out.Location = &loc
	}
	if t := m.Transcript; t != nil {
		seg := TranscriptSegment(*t)
		out.Transcript = &seg
	}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	if out.Metadata == nil {
		out.Metadata = map[string]string{}
	}
	return out
}

// encodeCursor and decodeCursor turn a store.Cursor into the opaque
// next_cursor string and back.
func encodeCursor(c store.Cursor) string {
	b, _ := json.Marshal([]any{c.At, c.ID})
	return base64.RawURLEncoding.EncodeToString(b)
}

var errBadCursor = errors.New("cursor: not one this API returned")

func decodeCursor(s string) (*store.Cursor, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, errBadCursor
	}
	var parts []json.RawMessage
	if json.Unmarshal(b, &parts) != nil || len(parts) != 2 {
		return nil, errBadCursor
	}
	var c store.Cursor
	if json.Unmarshal(parts[0], &c.At) != nil || json.Unmarshal(parts[1], &c.ID) != nil {
		return nil, errBadCursor
	}
	return &c, nil
}

// alsoKnownAs is the entry of absorption a; via names the customer it was
// absorbed into, "" for the customer viewed.
func alsoKnownAs(a merge.Absorption, via string) AlsoKnownAs {
	out := AlsoKnownAs{ID: a.CustomerID, MergeID: a.MergeID, MergedAt: ms(a.At.At), DecidedBy: a.DecidedBy,
		Evidence: make([]Identity, 0, len(a.Evidence)), Via: optString(via)}
	for _, id := range a.Evidence {
		out.Evidence = append(out.Evidence, Identity(id))
	}
	return out
}
