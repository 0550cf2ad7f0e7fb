// Package phone is the producer of the call centre: POST /ingest/phone with
// a call transcript from the ASR system, authenticated with the channel's
// bearer key. Each transcript segment becomes one TRANSCRIPT message; the
// customer's number is the identity every message carries.
package phone

import (
	"fmt"
	"strconv"
	"time"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/normalize"
	"github.com/omnisync/omnisync/producers/chatjson"
	"github.com/omnisync/omnisync/producers/ingest"
)

// Path is the channel's endpoint.
const Path = "/ingest/phone"

// MaxSegments is the most segments one transcript may carry.
const MaxSegments = 2000

// Transcript is the body the ASR system posts.
type Transcript struct {
	CallID     string    `json:"call_id"`
	Direction  string    `json:"direction"` // inbound (the customer called) or outbound
	Caller     string    `json:"caller"`
	Callee     string    `json:"callee"`
	AgentID    string    `json:"agent_id"`
	StartedAt  string    `json:"started_at"` // RFC 3339
	EndedAt    string    `json:"ended_at"`
	CustomerID string    `json:"customer_id,omitempty"`
	Segments   []Segment `json:"segments"`
}

// Segment is one speaker turn.
type Segment struct {
	Speaker    string  `json:"speaker"` // caller, callee, agent or customer
	StartMS    int64   `json:"start_ms"`
	EndMS      int64   `json:"end_ms"`
	Text       string  `json:"text"`
	Confidence float32 `json:"confidence"`
}

// New returns the channel, authenticating with cred's bearer key.
func New(cred ingest.KeyCredential) *chatjson.KeyChannel[Transcript] {
	return chatjson.NewKeyChannel(events.ChannelPhone, cred, parse)
}

// parse checks a transcript; the phone channel verifies no logins.
func parse(t *Transcript, _ string, now time.Time) (*ingest.Batch, error) {
	callID, err := normalize.ID("call_id", t.CallID)
	if err != nil {
		return nil, err
	}
	agent, err := normalize.Text("agent_id", t.AgentID, 128)
	if err != nil {
		return nil, err
	}
	if t.CustomerID != "" {
		if t.CustomerID, err = normalize.ID("customer_id", t.CustomerID); err != nil {
			return nil, err
		}
	}
	var customerNumber string
	var direction events.Direction
	switch t.Direction {
	case "inbound":
		direction = events.DirectionInbound
		customerNumber, err = normalize.Phone("caller", t.Caller)
	case "outbound":
		direction = events.DirectionOutbound
		customerNumber, err = normalize.Phone("callee", t.Callee)
	default:
		return nil, normalize.Invalid("direction", "%q: want inbound or outbound", t.Direction)
	}
	if err != nil {
		return nil, err
	}
	started, err := callTime("started_at", t.StartedAt, now)
	if err != nil {
		return nil, err
	}
	ended, err := callTime("ended_at", t.EndedAt, now)
	if err != nil {
		return nil, err
	}
	if ended.Before(started) {
		return nil, normalize.Invalid("ended_at", "before started_at")
	}
	if len(t.Segments) == 0 {
		return nil, normalize.Invalid("segments", "no segments")
	}
	if len(t.Segments) > MaxSegments {
		return nil, normalize.Invalid("segments", "%d segments, at most %d", len(t.Segments), MaxSegments)
	}
	duration := ended.Sub(started).Milliseconds()
	b := &ingest.Batch{}
	var prevStart int64
	for i, s := range t.Segments {
		f := fmt.Sprintf("segments[%d]", i)
		if s.StartMS < 0 || s.EndMS < s.StartMS {
			return nil, normalize.Invalid(f+".end_ms", "want 0 <= start_ms <= end_ms, got %d..%d", s.StartMS, s.EndMS)
		}
		if s.StartMS < prevStart {
			return nil, normalize.Invalid(f+".start_ms", "segments must be in order of start_ms")
		}
		if s.EndMS > duration+1000 {
			return nil, normalize.Invalid(f+".end_ms", "%d ms is after the call ended (%d ms)", s.EndMS, duration)
		}
		prevStart = s.StartMS
		if s.Confidence < 0 || s.Confidence > 1 {
			return nil, normalize.Invalid(f+".confidence", "%v: want 0 to 1", s.Confidence)
		}
		text, err := normalize.Text(f+".text", s.Text, 4000)
		if err != nil {
			return nil, err
		}
		customerSide, sender, senderID := false, events.SenderAgent, agent
		switch s.Speaker {
		case "customer":
			customerSide = true
		case "agent":
		case "caller":
			customerSide = t.Direction == "inbound"
		case "callee":
			customerSide = t.Direction == "outbound"
		default:
			return nil, normalize.Invalid(f+".speaker", "%q: want caller, callee, agent or customer", s.Speaker)
		}
		dir := events.DirectionOutbound
		if customerSide {
			dir, sender, senderID = events.DirectionInbound, events.SenderCustomer, customerNumber
		}
		sourceID := callID + "#" + strconv.Itoa(i)
		m := &events.MessageEvent{
			CustomerID: t.CustomerID, ConversationID: "call:" + callID, SourceMessageID: &sourceID,
			Direction: dir, SenderType: sender, SenderID: senderID, ContentType: events.ContentTranscript, Text: &text,
			Transcript:  &events.TranscriptSegment{CallID: callID, Segment: int32(i), Speaker: s.Speaker, StartMS: s.StartMS, EndMS: s.EndMS, Confidence: s.Confidence},
			Identities:  []events.Identity{{Kind: "phone", Value: customerNumber, Verified: true}}, // the telephony system's caller ID
			Attachments: []events.Attachment{}, Tags: []string{},
			Metadata:   map[string]string{"agent_id": agent, "call_direction": string(direction)},
			OccurredAt: started.Add(time.Duration(s.StartMS) * time.Millisecond),
		}
		b.Messages = append(b.Messages, m)
	}
	return b, nil
}

func callTime(field, s string, now time.Time) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, normalize.Invalid(field, "%q is not an RFC 3339 time", s)
	}
	if t.After(now.Add(time.Hour)) || t.Year() < 2000 {
		return time.Time{}, normalize.Invalid(field, "%s is not a plausible call time", s)
	}
	return t.UTC().Truncate(time.Millisecond), nil
}
