// Package wxpush is the WeChat message push protocol the official
// account's XML push (package wechat) and the mini-program's JSON push
// (package miniprogram) share: Channel, the ingest.Channel both run, with
// the signature check (Sign, VerifySignature, the timestamp window), the
// replay check (Nonces), safe mode (Receiver), the echostr handshake and
// the "success" answer; and the mapping of a push to an inbound message.
// A channel supplies only its Format: how it decodes its body into a Push
// and the message types it lists in a Mapping; Mapping.Parse reads the
// fields every push has, maps the message type and keeps every field no
// mapping read in metadata.
package wxpush

import (
	"strings"
	"time"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/normalize"
	"github.com/omnisync/omnisync/producers/ingest"
)

// Bounds on what a push may carry, in characters.
const (
	MaxTextRunes  = 16384 // content, titles, descriptions, voice recognition
	MaxURLRunes   = 4096  // URLs, page paths, event keys
	MaxShortRunes = 1024  // identifiers and other short values
	MaxExtraRunes = 4096  // an unrecognised field's text
	MaxKeyRunes   = 128   // an unrecognised field's name
	maxExtras     = 32    // unrecognised fields kept in metadata
)

// Bounds on CreateTime: WeChat's public platform opened in 2012, and a push
// is sent as it happens, so a CreateTime more than a day ahead of the
// clock is not a real one.
var earliestCreateTime = time.Date(2012, 1, 1, 0, 0, 0, 0, time.UTC)

const maxCreateTimeAhead = 24 * time.Hour

// Fields is a decoded push, read by field name.
type Fields interface {
	// Has reports whether the field is present.
	Has(name string) bool
	// Text returns the trimmed text of an optional field, at most max
	// characters, "" when absent, and marks the field read. A field that
	// is not text is a *normalize.ValidationError.
	Text(name string, max int) (string, error)
	// Quote returns a value as an error message quotes it (%q).
	Quote(s string) string
}

// Push is a decoded push as Mapping reads it: its fields, and what its
// format decides about CreateTime, MsgId and the fields no mapping read.
// Errors are *normalize.ValidationError.
type Push interface {
	Fields
	// Seconds reads a required field of Unix seconds and marks it read.
	Seconds(name string) (int64, error)
	// MsgID reads the required message ID and marks it read.
	MsgID(name string) (string, error)
	// Unread returns the names of the fields nothing read, in document
	// order.
	Unread() []string
	// Extra checks an unread field and returns its metadata key and its
	// text; value "" leaves it out.
	Extra(name string) (key, value string, err error)
}

// A Type maps the fields of one message type onto m, which already holds
// what every push has. The "event" type carries no MsgId: its Map sets
// m.SourceMessageID.
type Type struct {
	MsgType string // lower case
	Map     func(f Fields, m *events.MessageEvent) error
}

// Mapping is how a WeChat channel maps its pushes. It is not changed after
// it is built and is safe for concurrent use.
type Mapping struct {
	Channel      events.Channel
	Conversation string // conversation ID prefix: "wechat" for "wechat:<openid>"
	OpenIDKind   string // identity kind of the openid, scoped by the app ID
	Owner        string // what receives the push, in errors: "account"
	Push         string // the push, in errors: "official-account push"
	Field        string // a field, in errors: "element"
	Types        []Type // the message types, in the order errors list them
}

// Recipient is whom a push is for.
type Recipient struct {
	AppID string // scopes the openids
	ID    string // the original ID (gh_…) ToUserName must be; "" accepts any
}

// Parse turns a push into a batch of one inbound message from the
// customer, its CreateTime checked against now. Bad input is a
// *normalize.ValidationError whose Field names the push's field.
func (mp *Mapping) Parse(p Push, to Recipient, now time.Time) (*ingest.Batch, error) {
	m, err := mp.message(p, to, now)
	if err != nil {
		return nil, err
	}
	return &ingest.Batch{Messages: []*events.MessageEvent{m}}, nil
}

func (mp *Mapping) message(p Push, to Recipient, now time.Time) (*events.MessageEvent, error) {
	msgType, err := p.Text("MsgType", 64)
	if err != nil {
		return nil, err
	}
	if msgType == "" {
		if p.Has("Encrypt") {
			return nil, normalize.Invalid("Encrypt", "the push is encrypted (safe mode) but this %s has no encoding_aes_key configured; configure the key, or set the message encryption mode to plain text or compatible", mp.Owner)
		}
		return nil, normalize.Invalid("MsgType", "is required")
	}
	recipient, err := ID(p, "ToUserName")
	if err != nil {
		return nil, err
	}
	if to.ID != "" && recipient != to.ID {
		return nil, normalize.Invalid("ToUserName", "the push is addressed to %q, not to this %s (%s)", recipient, mp.Owner, to.ID)
	}
	openid, err := ID(p, "FromUserName")
	if err != nil {
		return nil, err
	}
	at, err := createTime(p, now)
	if err != nil {
		return nil, err
	}
	m := &events.MessageEvent{
		ConversationID: mp.Conversation + ":" + openid,
		Channel:        mp.Channel,
		Direction:      events.DirectionInbound,
		SenderType:     events.SenderCustomer,
		SenderID:       openid,
		Identities:     []events.Identity{{Kind: mp.OpenIDKind, Scope: to.AppID, Value: openid, Verified: true}}, // in a signed push
		Metadata:       map[string]string{"msg_type": msgType, "to_user_name": recipient},
		OccurredAt:     at,
	}
	if err := unionID(p, m); err != nil {
		return nil, err
	}
	kind := strings.ToLower(msgType)
	typ, err := mp.typ(kind, msgType)
	if err != nil {
		return nil, err
	}
	if err := typ.Map(p, m); err != nil {
		return nil, err
	}
	if kind != "event" {
		msgID, err := p.MsgID("MsgId")
		if err != nil {
			return nil, err
		}
		m.SourceMessageID = &msgID
	}
	if err := mp.extras(p, m.Metadata); err != nil {
		return nil, err
	}
	return m, nil
}

func (mp *Mapping) typ(kind, msgType string) (Type, error) {
	names := make([]string, len(mp.Types))
	for i, t := range mp.Types {
		if t.MsgType == kind {
			return t, nil
		}
		names[i] = t.MsgType
	}
	return Type{}, normalize.Invalid("MsgType", "%q is not a message type of the %s (%s)", msgType, mp.Push, strings.Join(names, ", "))
}

// createTime reads CreateTime, Unix seconds.
func createTime(p Push, now time.Time) (time.Time, error) {
	sec, err := p.Seconds("CreateTime")
	if err != nil {
		return time.Time{}, err
	}
	t := time.Unix(sec, 0).UTC()
	if t.Before(earliestCreateTime) {
		return time.Time{}, normalize.Invalid("CreateTime", "%d is before %d", sec, earliestCreateTime.Year())
	}
	if t.After(now.Add(maxCreateTimeAhead)) {
		return time.Time{}, normalize.Invalid("CreateTime", "%d is more than %s ahead of the clock", sec, maxCreateTimeAhead)
	}
	return t, nil
}

// unionIDFields are the spellings a unionid arrives under, when the
// mini-program, a third-party platform or middleware adds it to the push.
var unionIDFields = []string{"UnionId", "UnionID", "unionid"}

func unionID(f Fields, m *events.MessageEvent) error {
	for _, name := range unionIDFields {
		if !f.Has(name) {
			continue
		}
		v, err := f.Text(name, MaxShortRunes)
		if err != nil {
			return err
		}
		if v != "" {
			if _, err := normalize.ID(name, v); err != nil {
				return err
			}
			m.Identities = append(m.Identities, events.Identity{Kind: "wechat_unionid", Value: v, Verified: true})
			return nil
		}
	}
	return nil
}

// extras keeps the fields no mapping read in metadata, so nothing WeChat
// sent is lost. Keys already set win; empty values are left out.
// Encrypt, the ciphertext compatible mode sends beside the plain text, is
// not kept.
func (mp *Mapping) extras(p Push, md map[string]string) error {
	n := 0
	for _, name := range p.Unread() {
		if name == "Encrypt" {
			continue
		}
		key, v, err := p.Extra(name)
		if err != nil {
			return err
		}
		if v == "" {
			continue
		}
		if n++; n > maxExtras {
			return normalize.Invalid(name, "more than %d unrecognised %ss", maxExtras, mp.Field)
		}
		if _, ok := md[key]; !ok {
			md[key] = v
		}
	}
	return nil
}

// Tracker keeps the names of a push's fields in document order and which
// of them were read; embedded in a Push, it gives Unread. The zero value
// is ready to use.
type Tracker struct {
	order []string
	read  map[string]bool
}

// Add records a field, after those added before it.
func (t *Tracker) Add(name string) { t.order = append(t.order, name) }

// MarkRead records that a getter read the field.
func (t *Tracker) MarkRead(name string) {
	if t.read == nil {
		t.read = map[string]bool{}
	}
	t.read[name] = true
}

// Unread returns the fields added and not read, in the order added.
func (t *Tracker) Unread() []string {
	var names []string
	for _, name := range t.order {
		if !t.read[name] {
			names = append(names, name)
		}
	}
	return names
}
