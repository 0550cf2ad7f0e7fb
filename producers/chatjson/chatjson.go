// Package chatjson parses the JSON event batches the web widget and the
// mobile SDK send: profile updates and chat messages. The web and app
// channels differ only in the envelope around the events. KeyChannel is
// the channel the web, app and phone channels run: a bearer key and a
// strictly decoded JSON body, which each channel's Parser checks.
package chatjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/normalize"
	"github.com/omnisync/omnisync/producers/ingest"
)

// Limits on a batch.
const (
	MaxEvents     = 100
	MaxText       = 4000
	MaxName       = 100
	MaxURL        = 2048
	MaxAttributes = 50
	MaxTags       = 50
	MaxFuture     = 24 * time.Hour // how far ahead of the clock occurred_at may be
)

// Event is one entry of a batch: a profile update or a message.
type Event struct {
	Type       string `json:"type"` // profile or message
	ID         string `json:"id"`   // the client's ID; retries with the same ID are absorbed
	OccurredAt string `json:"occurred_at"`

	Profile *Profile `json:"profile,omitempty"`
	Clear   []string `json:"clear,omitempty"`

	ConversationID string            `json:"conversation_id,omitempty"`
	Direction      string            `json:"direction,omitempty"` // inbound (default) or outbound
	Sender         *Sender           `json:"sender,omitempty"`
	ContentType    string            `json:"content_type,omitempty"` // text, image, voice, video, file, location, link, event
	Text           string            `json:"text,omitempty"`
	Attachments    []Attachment      `json:"attachments,omitempty"`
	Tags           []string          `json:"tags,omitempty"`
	Metadata       map[string]string `json:"metadata,omitempty"`
}

// Profile is a profile update; absent fields are not touched.
type Profile struct {
	Name       *string           `json:"name,omitempty"`
	Phone      *string           `json:"phone,omitempty"`
	Email      *string           `json:"email,omitempty"`
	Gender     *string           `json:"gender,omitempty"`   // male, female, other, unknown
	Birthday   *string           `json:"birthday,omitempty"` // YYYY-MM-DD
	Address    *events.Address   `json:"address,omitempty"`
	VIPLevel   *int32            `json:"vip_level,omitempty"`
	Tags       []string          `json:"tags,omitempty"`
	IDNumber   *string           `json:"id_number,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// Sender of a message.
type Sender struct {
	Type string `json:"type"` // customer (default), agent, bot, system
	ID   string `json:"id"`
}

// Attachment of a message.
type Attachment struct {
	URL          string `json:"url"`
	MIMEType     string `json:"mime_type,omitempty"`
	SizeBytes    int64  `json:"size_bytes,omitempty"`
	ThumbnailURL string `json:"thumbnail_url,omitempty"`
}

// Decode decodes body strictly into v: text that is not valid UTF-8 (which
// encoding/json would replace with U+FFFD), unknown fields and trailing
// data are errors naming what was wrong.
func Decode(body []byte, v any) error {
	if invalid := normalize.CheckJSONText(body); invalid != nil {
		return invalid
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return normalize.Invalid("", "malformed JSON at byte %d: %v", syn.Offset, err)
		case errors.As(err, &typ):
			return normalize.Invalid(typ.Field, "want %s, got JSON %s", typ.Type, typ.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return normalize.Invalid(strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), "unknown field")
		case errors.Is(err, io.EOF):
			return normalize.Invalid("", "empty body")
		}
		return normalize.Invalid("", "malformed JSON: %v", err)
	}
	if dec.More() {
		return normalize.Invalid("", "data after the JSON object")
	}
	return nil
}

// Context is what the envelope says about every event of the batch.
type Context struct {
	CustomerID string            // when the client names the customer
	Identities []events.Identity // the envelope's own identities (visitor, device, user)
	SenderID   string            // default sender ID of customer messages
	Metadata   map[string]string // added to every message (app version, platform)
	Attributes map[string]string // added to every profile update
	Now        time.Time
}

// Login is what a web or app client says about who is logged in, with the
// MACs its business's backend gave it (ingest.SignClaim).
type Login struct {
	UserID       string // the business's account ID
	UserHash     string // SignClaim(secret, "user_id", UserID)
	CustomerID   string // an omnisync customer ID
	CustomerHash string // SignClaim(secret, "customer_id", CustomerID)
	Phone        string // the number the backend verified at login (an SMS code)
	PhoneHash    string // SignClaim(secret, "phone", <Phone in E.164>)
	UnionID      string // the WeChat unionid of a WeChat login
	UnionIDHash  string // SignClaim(secret, "wechat_unionid", UnionID)
}

// Verify checks the login against the channel's identity secret and fills
// c: a customer ID is taken only with a valid customer_hash; a user ID with
// a valid user_hash is a verified app_user identity, without a hash an
// unverified one (never attached to an existing customer); a hash that
// does not match, or one sent without its claim, is refused.
func (l Login) Verify(secret string, c *Context) error {
	if l.CustomerID != "" {
		id, err := normalize.ID("customer_id", l.CustomerID)
		if err != nil {
			return err
		}
		if !ingest.VerifyClaim(secret, "customer_id", id, l.CustomerHash) {
			return normalize.Invalid("customer_hash", "customer_id is taken only with customer_hash, the HMAC-SHA256 of \"customer_id:<id>\" keyed with the channel's identity secret; it is missing or does not match")
		}
		c.CustomerID = id
	} else if l.CustomerHash != "" {
		return normalize.Invalid("customer_hash", "sent without customer_id")
	}
	if err := l.signed(secret, c); err != nil {
		return err
	}
	if l.UserID == "" {
		if l.UserHash != "" {
			return normalize.Invalid("user_hash", "sent without user_id")
		}
		return nil
	}
	user, err := normalize.ID("user_id", l.UserID)
	if err != nil {
		return err
	}
	verified := false
	if l.UserHash != "" {
		if !ingest.VerifyClaim(secret, "user_id", user, l.UserHash) {
			return normalize.Invalid("user_hash", "does not match user_id (want the HMAC-SHA256 of \"user_id:<id>\" keyed with the channel's identity secret)")
		}
		verified = true
	}
	c.Identities = append(c.Identities, events.Identity{Kind: "app_user", Value: user, Verified: verified})
	c.SenderID = user
	return nil
}

// signed adds the login's phone number and WeChat unionid, which the
// backend vouches for with their MACs; they come only signed (the number a
// user types is a profile field, a claim).
func (l Login) signed(secret string, c *Context) error {
	if l.Phone != "" {
		phone, err := normalize.Phone("phone", l.Phone)
		if err != nil {
			return err
		}
		if !ingest.VerifyClaim(secret, "phone", phone, l.PhoneHash) {
			return normalize.Invalid("phone_hash", "phone is taken only with phone_hash, the HMAC-SHA256 of \"phone:<E.164 number>\" keyed with the channel's identity secret; it is missing or does not match")
		}
		c.Identities = append(c.Identities, events.Identity{Kind: "phone", Value: phone, Verified: true})
	} else if l.PhoneHash != "" {
		return normalize.Invalid("phone_hash", "sent without phone")
	}
	if l.UnionID != "" {
		u, err := normalize.ID("wechat_unionid", l.UnionID)
		if err != nil {
			return err
		}
		if !ingest.VerifyClaim(secret, "wechat_unionid", u, l.UnionIDHash) {
			return normalize.Invalid("wechat_unionid_hash", "wechat_unionid is taken only with wechat_unionid_hash, the HMAC-SHA256 of \"wechat_unionid:<unionid>\" keyed with the channel's identity secret; it is missing or does not match")
		}
		c.Identities = append(c.Identities, events.Identity{Kind: "wechat_unionid", Value: u, Verified: true})
	} else if l.UnionIDHash != "" {
		return normalize.Invalid("wechat_unionid_hash", "sent without wechat_unionid")
	}
	return nil
}

// Build validates and normalises events into a batch.
func Build(list []Event, c Context) (*ingest.Batch, error) {
	if len(list) == 0 {
		return nil, normalize.Invalid("events", "no events")
	}
	if len(list) > MaxEvents {
		return nil, normalize.Invalid("events", "%d events, at most %d per batch", len(list), MaxEvents)
	}
	b := &ingest.Batch{}
	seen := map[string]bool{}
	for i, e := range list {
		field := fmt.Sprintf("events[%d]", i)
		id, err := normalize.ID(field+".id", e.ID)
		if err != nil {
			return nil, err
		}
		if seen[id] {
			return nil, normalize.Invalid(field+".id", "%q appears twice in the batch", id)
		}
		seen[id] = true
		at, err := Timestamp(field+".occurred_at", e.OccurredAt, c.Now)
		if err != nil {
			return nil, err
		}
		switch e.Type {
		case "profile":
			ev, err := ProfileEvent(field, e, c)
			if err != nil {
				return nil, err
			}
			ev.SourceEventID, ev.OccurredAt = &id, at
			b.Customers = append(b.Customers, ev)
		case "message":
			m, err := message(field, e, c)
			if err != nil {
				return nil, err
			}
			m.SourceMessageID, m.OccurredAt = &id, at
			b.Messages = append(b.Messages, m)
		default:
			return nil, normalize.Invalid(field+".type", "%q: want profile or message", e.Type)
		}
	}
	return b, nil
}

// Timestamp checks an event's occurred_at: RFC 3339, not before 2000 and
// at most MaxFuture ahead of now.
func Timestamp(field, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, normalize.Invalid(field, "is required (RFC 3339, e.g. 2026-11-22T08:30:00+08:00)")
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, normalize.Invalid(field, "%q is not an RFC 3339 time", s)
	}
	if t.After(now.Add(MaxFuture)) {
		return time.Time{}, normalize.Invalid(field, "%s is more than %s in the future", s, MaxFuture)
	}
	if t.Year() < 2000 {
		return time.Time{}, normalize.Invalid(field, "%s is before 2000", s)
	}
	return t.UTC().Truncate(time.Millisecond), nil
}

// ProfileEvent validates and normalises the profile and clears of e into
// an upsert carrying c's identities (and the profile's phone and e-mail as
// unverified identities), as Build does for an event of type profile; the
// fields its errors name start with field (field+".profile.phone"). The
// CRM and import producers validate their profiles with it too.
func ProfileEvent(field string, e Event, c Context) (*events.CustomerEvent, error) {
	if e.Profile == nil && len(e.Clear) == 0 {
		return nil, normalize.Invalid(field+".profile", "a profile event needs profile or clear")
	}
	ev := &events.CustomerEvent{CustomerID: c.CustomerID, Op: events.OpUpsert, Identities: append([]events.Identity(nil), c.Identities...), Clears: []string{}}
	p := &events.Profile{Attributes: map[string]string{}}
	if in := e.Profile; in != nil {
		f := field + ".profile"
		var err error
		if in.Name != nil {
			name, err := normalize.Text(f+".name", *in.Name, MaxName)
			if err != nil {
				return nil, err
			}
			p.Name = &name
		}
		if in.Phone != nil {
			phone, err := normalize.Phone(f+".phone", *in.Phone)
			if err != nil {
				return nil, err
			}
			p.Phone = &phone
			ev.Identities = append(ev.Identities, events.Identity{Kind: "phone", Value: phone})
		}
		if in.Email != nil {
			email, err := normalize.Email(f+".email", *in.Email)
			if err != nil {
				return nil, err
			}
			p.Email = &email
			ev.Identities = append(ev.Identities, events.Identity{Kind: "email", Value: email})
		}
		if in.Gender != nil {
			g := events.Gender(strings.ToUpper(*in.Gender))
			if g != events.GenderMale && g != events.GenderFemale && g != events.GenderOther && g != events.GenderUnknown {
				return nil, normalize.Invalid(f+".gender", "%q: want male, female, other or unknown", *in.Gender)
			}
			p.Gender = &g
		}
		if in.Birthday != nil {
			d, err := time.Parse(time.DateOnly, *in.Birthday)
			if err != nil || d.Year() < 1900 || d.After(c.Now) {
				return nil, normalize.Invalid(f+".birthday", "%q: want a past date as YYYY-MM-DD", *in.Birthday)
			}
			p.Birthday = &d
		}
		if a := in.Address; a != nil {
			for name, v := range map[string]*string{"country": &a.Country, "province": &a.Province, "city": &a.City, "district": &a.District, "street": &a.Street, "postal_code": &a.PostalCode} {
				if *v, err = normalize.Text(f+".address."+name, *v, 200); err != nil {
					return nil, err
				}
			}
			p.Address = a
		}
		if in.VIPLevel != nil {
			if *in.VIPLevel < 0 || *in.VIPLevel > 100 {
				return nil, normalize.Invalid(f+".vip_level", "%d: want 0 to 100", *in.VIPLevel)
			}
			p.VIPLevel = in.VIPLevel
		}
		if in.Tags != nil {
			if p.Tags, err = tags(f+".tags", in.Tags); err != nil {
				return nil, err
			}
		}
		if in.IDNumber != nil {
			idn, err := normalize.ID(f+".id_number", *in.IDNumber)
			if err != nil {
				return nil, err
			}
			p.IDNumber = &idn
		}
		if err := attributes(f+".attributes", in.Attributes, p.Attributes); err != nil {
			return nil, err
		}
	}
	for k, v := range c.Attributes {
		if _, set := p.Attributes[k]; !set {
			p.Attributes[k] = v
		}
	}
	for j, name := range e.Clear {
		if !clearable(name) {
			return nil, normalize.Invalid(fmt.Sprintf("%s.clear[%d]", field, j), "%q is not a profile field (name, phone, email, gender, birthday, address, vip_level, tags, id_number or attributes.<key>)", name)
		}
		ev.Clears = append(ev.Clears, name)
	}
	ev.Profile = p
	return ev, nil
}

func clearable(name string) bool {
	switch name {
	case "name", "phone", "email", "gender", "birthday", "address", "vip_level", "tags", "id_number":
		return true
	}
	key, ok := strings.CutPrefix(name, "attributes.")
	return ok && key != "" && len(key) <= 64
}

func attributes(field string, in, out map[string]string) error {
	if len(in) > MaxAttributes {
		return normalize.Invalid(field, "%d attributes, at most %d", len(in), MaxAttributes)
	}
	for k, v := range in {
		if k == "" || len(k) > 64 || !utf8.ValidString(k) {
			return normalize.Invalid(field, "attribute name %q must be 1 to 64 characters", k)
		}
		val, err := normalize.Text(field+"."+k, v, 1000)
		if err != nil {
			return err
		}
		out[k] = val
	}
	return nil
}

func tags(field string, in []string) ([]string, error) {
	if len(in) > MaxTags {
		return nil, normalize.Invalid(field, "%d tags, at most %d", len(in), MaxTags)
	}
	out := make([]string, 0, len(in))
	for i, t := range in {
		s, err := normalize.Text(fmt.Sprintf("%s[%d]", field, i), t, 64)
		if err != nil {
			return nil, err
		}
		if s == "" {
			return nil, normalize.Invalid(fmt.Sprintf("%s[%d]", field, i), "empty tag")
		}
		out = append(out, s)
	}
	return out, nil
}

var contentTypes = map[string]events.ContentType{
	"text": events.ContentText, "image": events.ContentImage, "voice": events.ContentVoice, "video": events.ContentVideo,
	"file": events.ContentFile, "location": events.ContentLocation, "link": events.ContentLink, "event": events.ContentEvent,
}

var senderTypes = map[string]events.SenderType{
	"customer": events.SenderCustomer, "agent": events.SenderAgent, "bot": events.SenderBot, "system": events.SenderSystem,
}

func message(field string, e Event, c Context) (*events.MessageEvent, error) {
	if e.Profile != nil || len(e.Clear) > 0 {
		return nil, normalize.Invalid(field+".profile", "a message event cannot carry a profile")
	}
	m := &events.MessageEvent{CustomerID: c.CustomerID, Identities: append([]events.Identity(nil), c.Identities...),
		Attachments: []events.Attachment{}, Tags: []string{}, Metadata: map[string]string{}}
	var err error
	if m.ConversationID, err = normalize.Text(field+".conversation_id", e.ConversationID, 128); err != nil {
		return nil, err
	}
	switch e.Direction {
	case "", "inbound":
		m.Direction = events.DirectionInbound
	case "outbound":
		m.Direction = events.DirectionOutbound
	default:
		return nil, normalize.Invalid(field+".direction", "%q: want inbound or outbound", e.Direction)
	}
	m.SenderType, m.SenderID = events.SenderCustomer, c.SenderID
	if s := e.Sender; s != nil {
		st, ok := senderTypes[s.Type]
		if !ok {
			return nil, normalize.Invalid(field+".sender.type", "%q: want customer, agent, bot or system", s.Type)
		}
		m.SenderType = st
		if s.ID != "" {
			if m.SenderID, err = normalize.ID(field+".sender.id", s.ID); err != nil {
				return nil, err
			}
		}
	}
	ct := e.ContentType
	if ct == "" {
		ct = "text"
	}
	if m.ContentType = contentTypes[ct]; m.ContentType == "" {
		return nil, normalize.Invalid(field+".content_type", "%q: want text, image, voice, video, file, location, link or event", ct)
	}
	text, err := normalize.Text(field+".text", e.Text, MaxText)
	if err != nil {
		return nil, err
	}
	if text != "" {
		m.Text = &text
	}
	if m.ContentType == events.ContentText && text == "" {
		return nil, normalize.Invalid(field+".text", "a text message needs text")
	}
	if len(e.Attachments) > 20 {
		return nil, normalize.Invalid(field+".attachments", "%d attachments, at most 20", len(e.Attachments))
	}
	for j, a := range e.Attachments {
		f := fmt.Sprintf("%s.attachments[%d]", field, j)
		u, err := httpURL(f+".url", a.URL)
		if err != nil {
			return nil, err
		}
		att := events.Attachment{URL: u, SizeBytes: a.SizeBytes}
		if att.MIMEType, err = normalize.Text(f+".mime_type", a.MIMEType, 128); err != nil {
			return nil, err
		}
		if a.SizeBytes < 0 {
			return nil, normalize.Invalid(f+".size_bytes", "negative size")
		}
		if a.ThumbnailURL != "" {
			thumb, err := httpURL(f+".thumbnail_url", a.ThumbnailURL)
			if err != nil {
				return nil, err
			}
			att.ThumbnailURL = &thumb
		}
		m.Attachments = append(m.Attachments, att)
	}
	if m.ContentType != events.ContentText && m.ContentType != events.ContentEvent && m.ContentType != events.ContentLocation && text == "" && len(m.Attachments) == 0 {
		return nil, normalize.Invalid(field+".attachments", "a %s message needs an attachment or text", ct)
	}
	if e.Tags != nil {
		if m.Tags, err = tags(field+".tags", e.Tags); err != nil {
			return nil, err
		}
	}
	if err := attributes(field+".metadata", e.Metadata, m.Metadata); err != nil {
		return nil, err
	}
	for k, v := range c.Metadata {
		m.Metadata[k] = v
	}
	return m, nil
}

func httpURL(field, raw string) (string, error) {
	if len(raw) > MaxURL {
		return "", normalize.Invalid(field, "longer than %d characters", MaxURL)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", normalize.Invalid(field, "%q is not an http(s) URL", raw)
	}
	return raw, nil
}
