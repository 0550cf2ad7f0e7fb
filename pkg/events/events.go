// Package events defines the Go types of omnisync's records. Their `avro`
// tags name the fields of the schemas in package schemas; codec maps them
// to and from Avro.
package events

import "time"

// Channel is where data came from.
type Channel string

// The channels.
const (
	ChannelUnknown     Channel = "UNKNOWN"
	ChannelWeb         Channel = "WEB"
	ChannelApp         Channel = "APP"
	ChannelMiniProgram Channel = "MINIPROGRAM"
	ChannelWeChat      Channel = "WECHAT"
	ChannelPhone       Channel = "PHONE"
	ChannelCRM         Channel = "CRM"
	ChannelImport      Channel = "IMPORT"
	ChannelAgent       Channel = "AGENT"
)

// Op is what a CustomerEvent does.
type Op string

// The operations.
const (
	OpUnknown Op = "UNKNOWN"
	OpUpsert  Op = "UPSERT"
	OpDelete  Op = "DELETE"
	OpResolve Op = "RESOLVE"
	// OpMerge and OpUnmerge are the steps of a customer merge and unmerge
	// (docs/design.md, Customer merge); the event's Merge says which.
	OpMerge   Op = "MERGE"
	OpUnmerge Op = "UNMERGE"
	// OpSuggestMerge is a merge suggestion for an agent to review, keyed
	// by the would-be survivor; its Merge names both customers and the
	// evidence (docs/design.md, Identity graph).
	OpSuggestMerge Op = "SUGGEST_MERGE"
)

// Identity is a channel identity seen with an event.
type Identity struct {
	Kind  string `avro:"kind"`  // phone, email, wechat_openid, wechat_unionid, miniprogram_openid, app_user, device, web_visitor, crm
	Scope string `avro:"scope"` // the namespace the value is unique in, e.g. a WeChat app ID; empty when global
	Value string `avro:"value"`
	// Verified is true when the channel vouches for the identity (the
	// README's "Identity and trust" lists each channel's); only verified
	// identities attach input to an existing customer.
	Verified bool `avro:"verified"`
}

// CustomerEvent is a change to a customer's profile.
type CustomerEvent struct {
	EventID       string      `avro:"event_id"`
	CustomerID    string      `avro:"customer_id"`
	Channel       Channel     `avro:"channel"`
	Source        string      `avro:"source"`
	SourceEventID *string     `avro:"source_event_id"`
	Op            Op          `avro:"op"`
	OccurredAt    time.Time   `avro:"occurred_at"`
	IngestedAt    time.Time   `avro:"ingested_at"`
	Identities    []Identity  `avro:"identities"`
	Profile       *Profile    `avro:"profile"`
	Clears        []string    `avro:"clears"`
	Resolution    *Resolution `avro:"resolution"`
	Merge         *Merge      `avro:"merge"`
}

// Gender of a customer.
type Gender string

// The genders.
const (
	GenderUnknown Gender = "UNKNOWN"
	GenderMale    Gender = "MALE"
	GenderFemale  Gender = "FEMALE"
	GenderOther   Gender = "OTHER"
)

// Profile holds the fields an event sets; nil fields are not touched.
// A nil Tags leaves the tags alone; a non-nil empty Tags sets them empty.
type Profile struct {
	Name       *string           `avro:"name"`
	Phone      *string           `avro:"phone"`
	Email      *string           `avro:"email"`
	Gender     *Gender           `avro:"gender"`
	Birthday   *time.Time        `avro:"birthday"` // a date, at midnight UTC
	Address    *Address          `avro:"address"`
	VIPLevel   *int32            `avro:"vip_level"`
	Tags       []string          `avro:"tags"`
	IDNumber   *string           `avro:"id_number"`
	Attributes map[string]string `avro:"attributes"`
}

// Address is a postal address.
type Address struct {
	Country    string `avro:"country"`
	Province   string `avro:"province"`
	City       string `avro:"city"`
	District   string `avro:"district"`
	Street     string `avro:"street"`
	PostalCode string `avro:"postal_code"`
}

// ResolutionChoice is how an agent closed a conflict.
type ResolutionChoice string

// The choices.
const (
	ChoiceUnknown       ResolutionChoice = "UNKNOWN"
	ChoiceKeepCurrent   ResolutionChoice = "KEEP_CURRENT"
	ChoiceTakeCandidate ResolutionChoice = "TAKE_CANDIDATE"
	ChoiceSetValue      ResolutionChoice = "SET_VALUE"
)

// Resolution closes a conflict (op RESOLVE).
type Resolution struct {
	ConflictID string           `avro:"conflict_id"`
	Field      string           `avro:"field"`
	Choice     ResolutionChoice `avro:"choice"`
	Value      *string          `avro:"value"` // for SET_VALUE, in the field's text form
	ResolvedBy string           `avro:"resolved_by"`
}

// Merge names the customers and the merge of a MERGE or UNMERGE event. A
// MERGE keyed by the absorbed customer is the request, one keyed by the
// survivor the hand-off a materializer emits; an UNMERGE keyed by the
// survivor is the request, one keyed by the absorbed customer the release.
type Merge struct {
	MergeID    string     `avro:"merge_id"` // the MERGE request's event ID; empty on the request itself
	SurvivorID string     `avro:"survivor_id"`
	AbsorbedID string     `avro:"absorbed_id"`
	Evidence   []Identity `avro:"evidence"`
	DecidedBy  string     `avro:"decided_by"`
	// SnapshotJSON is, on a hand-off, the absorbed record in the merge
	// contract's canonical JSON.
	SnapshotJSON *string `avro:"snapshot_json"`
	// PolicyHash is set on events a materializer emitted: the hash of the
	// policy that folded them. Empty on requests.
	PolicyHash string `avro:"policy_hash"`
}

// Direction of a message.
type Direction string

// The directions.
const (
	DirectionUnknown  Direction = "UNKNOWN"
	DirectionInbound  Direction = "INBOUND"
	DirectionOutbound Direction = "OUTBOUND"
)

// SenderType says who sent a message.
type SenderType string

// The sender types.
const (
	SenderUnknown  SenderType = "UNKNOWN"
	SenderCustomer SenderType = "CUSTOMER"
	SenderAgent    SenderType = "AGENT"
	SenderBot      SenderType = "BOT"
	SenderSystem   SenderType = "SYSTEM"
)

// ContentType of a message.
type ContentType string

// The content types.
const (
	ContentUnknown    ContentType = "UNKNOWN"
	ContentText       ContentType = "TEXT"
	ContentImage      ContentType = "IMAGE"
	ContentVoice      ContentType = "VOICE"
	ContentVideo      ContentType = "VIDEO"
	ContentFile       ContentType = "FILE"
	ContentLocation   ContentType = "LOCATION"
	ContentLink       ContentType = "LINK"
	ContentEvent      ContentType = "EVENT"
	ContentTranscript ContentType = "TRANSCRIPT"
)

// MessageEvent is one entry of a customer's cross-channel timeline.
type MessageEvent struct {
	MessageID       string             `avro:"message_id"`
	CustomerID      string             `avro:"customer_id"`
	ConversationID  string             `avro:"conversation_id"`
	Channel         Channel            `avro:"channel"`
	Source          string             `avro:"source"`
	SourceMessageID *string            `avro:"source_message_id"`
	Direction       Direction          `avro:"direction"`
	SenderType      SenderType         `avro:"sender_type"`
	SenderID        string             `avro:"sender_id"`
	ContentType     ContentType        `avro:"content_type"`
	Text            *string            `avro:"text"`
	Attachments     []Attachment       `avro:"attachments"`
	Location        *Location          `avro:"location"`
	Transcript      *TranscriptSegment `avro:"transcript"`
	Identities      []Identity         `avro:"identities"`
	Tags            []string           `avro:"tags"`
	Metadata        map[string]string  `avro:"metadata"`
	OccurredAt      time.Time          `avro:"occurred_at"`
	IngestedAt      time.Time          `avro:"ingested_at"`
}

// Attachment of a message.
type Attachment struct {
	URL          string  `avro:"url"`
	MIMEType     string  `avro:"mime_type"`
	SizeBytes    int64   `avro:"size_bytes"`
	ThumbnailURL *string `avro:"thumbnail_url"`
}

// Location shared in a message.
type Location struct {
	Latitude   float64 `avro:"latitude"`
	Longitude  float64 `avro:"longitude"`
	PrecisionM float64 `avro:"precision_m"`
	Label      string  `avro:"label"`
}

// TranscriptSegment is one speaker turn of a call transcript.
type TranscriptSegment struct {
	CallID     string  `avro:"call_id"`
	Segment    int32   `avro:"segment"`
	Speaker    string  `avro:"speaker"`
	StartMS    int64   `avro:"start_ms"`
	EndMS      int64   `avro:"end_ms"`
	Confidence float32 `avro:"confidence"`
}

// CustomerState is a merged customer record as published to the state topic.
type CustomerState struct {
	CustomerID         string              `avro:"customer_id"`
	Version            int64               `avro:"version"`
	Deleted            bool                `avro:"deleted"`
	Fields             map[string]Register `avro:"fields"`
	Identities         []Identity          `avro:"identities"`
	Conflicts          []Conflict          `avro:"conflicts"`
	NeedsReview        bool                `avro:"needs_review"`
	LastContactAt      *time.Time          `avro:"last_contact_at"`
	LastContactChannel Channel             `avro:"last_contact_channel"`
	UpdatedAt          time.Time           `avro:"updated_at"`
	PolicyHash         string              `avro:"policy_hash"`
	// MergedInto is the survivor the customer is merged into, nil when none.
	MergedInto *string `avro:"merged_into"`
	// AbsorbedIDs are the customers merged into this one, in merge order.
	AbsorbedIDs []string `avro:"absorbed_ids"`
}

// Register is a last-write-wins field value with the stamp and provenance
// of the write that set it.
type Register struct {
	ValueJSON  string    `avro:"value_json"`
	OccurredAt time.Time `avro:"occurred_at"`
	EventID    string    `avro:"event_id"`
	Channel    Channel   `avro:"channel"`
	Source     string    `avro:"source"`
}

// ConflictStatus is the state of a conflict.
type ConflictStatus string

// The conflict states.
const (
	ConflictOpen          ConflictStatus = "OPEN"
	ConflictKeptCurrent   ConflictStatus = "KEPT_CURRENT"
	ConflictTookCandidate ConflictStatus = "TOOK_CANDIDATE"
	ConflictSetValue      ConflictStatus = "SET_VALUE"
)

// Conflict is a disagreement on a key field awaiting an agent's review.
type Conflict struct {
	ID               string         `avro:"id"`
	Field            string         `avro:"field"`
	CurrentJSON      string         `avro:"current_json"`
	CandidateJSON    string         `avro:"candidate_json"`
	CandidateEventID string         `avro:"candidate_event_id"`
	CandidateChannel Channel        `avro:"candidate_channel"`
	CandidateSource  string         `avro:"candidate_source"`
	DetectedAt       time.Time      `avro:"detected_at"`
	Status           ConflictStatus `avro:"status"`
}

// DeadLetter is input omnisync could not accept or process, with the
// reason. Build one with package deadletter, which bounds it to fit in a
// Kafka record: it keeps the first 64 KiB of a larger input and its size.
type DeadLetter struct {
	ID               string            `avro:"id"`
	Stage            string            `avro:"stage"` // ingest, materialize or forward
	Component        string            `avro:"component"`
	Reason           string            `avro:"reason"`
	Field            *string           `avro:"field"`
	ContentType      string            `avro:"content_type"`
	Payload          []byte            `avro:"payload"`
	PayloadSize      int64             `avro:"payload_size"`      // of the whole input; 0: unknown (older dead letters)
	PayloadTruncated bool              `avro:"payload_truncated"` // Payload holds only the input's first bytes
	Headers          map[string]string `avro:"headers"`
	Topic            *string           `avro:"topic"`
	Partition        *int32            `avro:"partition"`
	Offset           *int64            `avro:"offset"`
	FailedAt         time.Time         `avro:"failed_at"`
}

// IdentityLink is an entry of the identity directory.
type IdentityLink struct {
	Identity   Identity  `avro:"identity"`
	CustomerID string    `avro:"customer_id"`
	Channel    Channel   `avro:"channel"`
	Source     string    `avro:"source"`
	EventID    string    `avro:"event_id"`
	LinkedAt   time.Time `avro:"linked_at"`
}

// AuditEvent is a decision on record (schemas/audit_event.avsc).
type AuditEvent struct {
	EventID    string            `avro:"event_id"`
	OccurredAt time.Time         `avro:"occurred_at"`
	Actor      string            `avro:"actor"`
	ActorRole  string            `avro:"actor_role"`
	Action     string            `avro:"action"`
	CustomerID string            `avro:"customer_id"`
	Target     string            `avro:"target"`
	Details    map[string]string `avro:"details"`
	Source     string            `avro:"source"`
}
