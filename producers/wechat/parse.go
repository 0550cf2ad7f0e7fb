package wechat

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/producers/ingest"
)

// Bounds on what a push may carry, in characters.
const (
	maxTextRunes  = 16384 // Content, Recognition, Title, Description
	maxURLRunes   = 4096  // PicUrl, Url, EventKey (a VIEW event's key is the menu URL)
	maxShortRunes = 1024  // identifiers, Label, Format, Ticket and other short values
	maxExtraRunes = 4096  // an unrecognised element's text
	maxExtras     = 32    // unrecognised elements kept in metadata
	maxKeyRunes   = 128   // an unrecognised element's name
)

// Bounds on CreateTime: WeChat's public platform opened in 2012, and a push
// is sent as it happens, so a CreateTime more than a day ahead of the
// clock is not a real one.
var earliestCreateTime = time.Date(2012, 1, 1, 0, 0, 0, 0, time.UTC)

const maxCreateTimeAhead = 24 * time.Hour

// Parse turns one push into one inbound message from the customer. Any
// bad input is a *ingest.ValidationError whose Field names the XML element
// (empty for the document as a whole).
func (c *Channel) Parse(_ *http.Request, body []byte) (*ingest.Batch, error) {
	p, err := readPush(body)
	if err != nil {
		return nil, err
	}
	m, err := c.message(p)
	if err != nil {
		return nil, err
	}
	return &ingest.Batch{Messages: []*events.MessageEvent{m}}, nil
}

func (c *Channel) message(p *push) (*events.MessageEvent, error) {
	msgType, err := p.text("MsgType", 64)
	if err != nil {
		return nil, err
	}
	p.used["Encrypt"] = true // compatible mode sends the ciphertext beside the plain text; not kept
	if msgType == "" {
		if p.has("Encrypt") {
			return nil, ingest.Invalid("Encrypt", "the push is encrypted (safe mode); set the account's message encryption mode to plain text or compatible")
		}
		return nil, ingest.Invalid("MsgType", "is required")
	}
	to, err := p.id("ToUserName")
	if err != nil {
		return nil, err
	}
	if c.account != "" && to != c.account {
		return nil, ingest.Invalid("ToUserName", "the push is addressed to %q, not to this account (%s)", to, c.account)
	}
	openid, err := p.id("FromUserName")
	if err != nil {
		return nil, err
	}
	at, err := c.createTime(p)
	if err != nil {
		return nil, err
	}
	m := &events.MessageEvent{
		ConversationID: "wechat:" + openid,
		Channel:        events.ChannelWeChat,
		Direction:      events.DirectionInbound,
		SenderType:     events.SenderCustomer,
		SenderID:       openid,
		Identities:     []events.Identity{{Kind: "wechat_openid", Scope: c.cred.AppID, Value: openid}},
		Metadata:       map[string]string{"msg_type": msgType, "to_user_name": to},
		OccurredAt:     at,
	}
	if err := unionID(p, m); err != nil {
		return nil, err
	}
	kind := strings.ToLower(msgType)
	switch kind {
	case "text":
		err = textMessage(p, m)
	case "image":
		err = imageMessage(p, m)
	case "voice":
		err = voiceMessage(p, m)
	case "video", "shortvideo":
		err = videoMessage(p, m)
	case "location":
		err = locationMessage(p, m)
	case "link":
		err = linkMessage(p, m)
	case "event":
		err = eventMessage(p, m, openid, at.Unix())
	default:
		return nil, ingest.Invalid("MsgType", "%q is not a message type of the official-account push (text, image, voice, video, shortvideo, location, link, event)", msgType)
	}
	if err != nil {
		return nil, err
	}
	if kind != "event" {
		msgID, err := p.id("MsgId")
		if err != nil {
			return nil, err
		}
		m.SourceMessageID = &msgID
	}
	if err := extras(p, m.Metadata); err != nil {
		return nil, err
	}
	return m, nil
}

// createTime reads CreateTime, Unix seconds.
func (c *Channel) createTime(p *push) (time.Time, error) {
	s, err := p.required("CreateTime", 64)
	if err != nil {
		return time.Time{}, err
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil || strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return time.Time{}, ingest.Invalid("CreateTime", "%q is not Unix seconds", s)
	}
	t := time.Unix(sec, 0).UTC()
	if t.Before(earliestCreateTime) {
		return time.Time{}, ingest.Invalid("CreateTime", "%d is before %d", sec, earliestCreateTime.Year())
	}
	if t.After(c.now().Add(maxCreateTimeAhead)) {
		return time.Time{}, ingest.Invalid("CreateTime", "%d is more than %s ahead of the clock", sec, maxCreateTimeAhead)
	}
	return t, nil
}

// unionIDElements are the spellings a unionid arrives under, when a
// third-party platform or middleware adds it to the push.
var unionIDElements = []string{"UnionId", "UnionID", "unionid"}

func unionID(p *push, m *events.MessageEvent) error {
	for _, name := range unionIDElements {
		if !p.has(name) {
			continue
		}
		v, err := p.text(name, maxShortRunes)
		if err != nil {
			return err
		}
		if v != "" {
			if _, err := ingest.ID(name, v); err != nil {
				return err
			}
			m.Identities = append(m.Identities, events.Identity{Kind: "wechat_unionid", Value: v})
			return nil
		}
	}
	return nil
}

func textMessage(p *push, m *events.MessageEvent) error {
	content, err := p.required("Content", maxTextRunes)
	if err != nil {
		return err
	}
	m.ContentType, m.Text = events.ContentText, &content
	return nil
}

func imageMessage(p *push, m *events.MessageEvent) error {
	pic, err := httpURL(p, "PicUrl", true)
	if err != nil {
		return err
	}
	mediaID, err := p.id("MediaId")
	if err != nil {
		return err
	}
	m.ContentType = events.ContentImage
	m.Attachments = []events.Attachment{{URL: pic}}
	m.Metadata["media_id"] = mediaID
	return nil
}

// voiceMessage: WeChat gives no URL for voice and video, only a media ID
// the account fetches with its access token (media/get), so they carry no
// attachment and the IDs go to metadata.
func voiceMessage(p *push, m *events.MessageEvent) error {
	mediaID, err := p.id("MediaId")
	if err != nil {
		return err
	}
	format, err := p.text("Format", maxShortRunes)
	if err != nil {
		return err
	}
	recognition, err := p.text("Recognition", maxTextRunes)
	if err != nil {
		return err
	}
	m.ContentType = events.ContentVoice
	m.Metadata["media_id"] = mediaID
	setIf(m.Metadata, "format", format)
	if recognition != "" {
		m.Text = &recognition
	}
	return nil
}

func videoMessage(p *push, m *events.MessageEvent) error {
	mediaID, err := p.id("MediaId")
	if err != nil {
		return err
	}
	thumb, err := p.text("ThumbMediaId", maxShortRunes)
	if err != nil {
		return err
	}
	m.ContentType = events.ContentVideo
	m.Metadata["media_id"] = mediaID
	setIf(m.Metadata, "thumb_media_id", thumb)
	return nil
}

func locationMessage(p *push, m *events.MessageEvent) error {
	lat, ok, err := p.float("Location_X", 90)
	if err == nil && !ok {
		err = ingest.Invalid("Location_X", "is required")
	}
	if err != nil {
		return err
	}
	lon, ok, err := p.float("Location_Y", 180)
	if err == nil && !ok {
		err = ingest.Invalid("Location_Y", "is required")
	}
	if err != nil {
		return err
	}
	scale, err := p.text("Scale", 64)
	if err != nil {
		return err
	}
	label, err := p.text("Label", maxShortRunes)
	if err != nil {
		return err
	}
	m.ContentType = events.ContentLocation
	m.Location = &events.Location{Latitude: lat, Longitude: lon, Label: label}
	setIf(m.Metadata, "scale", scale)
	return nil
}

func linkMessage(p *push, m *events.MessageEvent) error {
	link, err := httpURL(p, "Url", true)
	if err != nil {
		return err
	}
	title, err := p.text("Title", maxTextRunes)
	if err != nil {
		return err
	}
	desc, err := p.text("Description", maxTextRunes)
	if err != nil {
		return err
	}
	m.ContentType = events.ContentLink
	if title != "" {
		m.Text = &title
	}
	m.Metadata["url"] = link
	setIf(m.Metadata, "description", desc)
	return nil
}

// eventMessage maps an event push. Events carry no MsgId; following
// WeChat's advice to deduplicate them by FromUserName and CreateTime, the
// source ID is EventSourceID(openid, CreateTime, Event, EventKey). Events
// other than the ones named below are kept too, generically: WeChat adds
// event types over time, and refusing one would make it re-send and warn
// the account's users.
func eventMessage(p *push, m *events.MessageEvent, openid string, createTime int64) error {
	event, err := eventName(p, "Event")
	if err != nil {
		return err
	}
	key, err := p.text("EventKey", maxURLRunes)
	if err != nil {
		return err
	}
	m.ContentType, m.Text = events.ContentEvent, &event
	m.Metadata["event"] = event
	setIf(m.Metadata, "event_key", key)
	switch strings.ToLower(event) {
	case "subscribe", "scan":
		ticket, err := p.text("Ticket", maxShortRunes)
		if err != nil {
			return err
		}
		setIf(m.Metadata, "ticket", ticket)
		if scene, ok := strings.CutPrefix(key, "qrscene_"); ok {
			setIf(m.Metadata, "qr_scene", scene) // subscribed by scanning a parametric QR code
		} else if strings.EqualFold(event, "scan") {
			setIf(m.Metadata, "qr_scene", key) // already a follower: the key is the scene
		}
	case "location":
		lat, ok, err := p.float("Latitude", 90)
		if err == nil && !ok {
			err = ingest.Invalid("Latitude", "is required")
		}
		if err != nil {
			return err
		}
		lon, ok, err := p.float("Longitude", 180)
		if err == nil && !ok {
			err = ingest.Invalid("Longitude", "is required")
		}
		if err != nil {
			return err
		}
		prec, _, err := p.float("Precision", 1e7)
		if err == nil && prec < 0 {
			err = ingest.Invalid("Precision", "must not be negative")
		}
		if err != nil {
			return err
		}
		m.Location = &events.Location{Latitude: lat, Longitude: lon, PrecisionM: prec}
	}
	id := EventSourceID(openid, createTime, event, key)
	m.SourceMessageID = &id
	return nil
}

// EventSourceID is the source ID of a WeChat event push, which has no
// MsgId: FromUserName, CreateTime, Event and, when present, the event's key
// (EventKey, or a mini-program's SessionFrom), each path-escaped and joined
// with "/", e.g. "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o/1700000000/subscribe/qrscene_42".
// WeChat's re-sends of a push carry the same values and so map to the
// same ID; it cannot collide with a MsgId, which has no "/".
func EventSourceID(openid string, createTime int64, event, key string) string {
	parts := []string{url.PathEscape(openid), strconv.FormatInt(createTime, 10), url.PathEscape(event)}
	if key != "" {
		parts = append(parts, url.PathEscape(key))
	}
	return strings.Join(parts, "/")
}

// eventName reads an event type: letters, digits and underscores, as
// every WeChat event is named.
func eventName(p *push, name string) (string, error) {
	s, err := p.required(name, 64)
	if err != nil {
		return "", err
	}
	if !isEventName(s) {
		return "", ingest.Invalid(name, "%q is not an event name (letters, digits, _)", s)
	}
	return s, nil
}

func isEventName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return s != ""
}

// httpURL reads an http or https URL: an agent's console renders it as a
// link, so javascript: and other schemes are refused.
func httpURL(p *push, name string, required bool) (string, error) {
	s, err := p.text(name, maxURLRunes)
	if err != nil {
		return "", err
	}
	if s == "" {
		if required {
			return "", ingest.Invalid(name, "is required")
		}
		return "", nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", ingest.Invalid(name, "%q is not an http or https URL", s)
	}
	return s, nil
}

// extras keeps the elements no mapping read in metadata, under their
// snake_case names (bizmsgmenuid, MenuId → menu_id, ScanCodeInfo.ScanType →
// scan_code_info.scan_type), so nothing WeChat sent is lost. Keys already
// set win; empty elements are skipped.
func extras(p *push, md map[string]string) error {
	n := 0
	for _, path := range p.order {
		if p.used[path] {
			continue
		}
		v, err := ingest.Text(path, p.leaves[path], maxExtraRunes)
		if err != nil {
			return err
		}
		if v == "" {
			continue
		}
		if len(path) > maxKeyRunes {
			return ingest.Invalid(path, "element name longer than %d characters", maxKeyRunes)
		}
		if n++; n > maxExtras {
			return ingest.Invalid(path, "more than %d unrecognised elements", maxExtras)
		}
		key := metadataKey(path)
		if _, ok := md[key]; !ok {
			md[key] = v
		}
	}
	return nil
}

// metadataKey turns an element name into snake_case: MsgId → msg_id,
// UnionID → union_id, Location_X → location_x, PicMd5Sum → pic_md5_sum.
// Characters other than ASCII letters, digits, '_' and '.' become '_'.
func metadataKey(name string) string {
	rs := []rune(name)
	var b strings.Builder
	for i, r := range rs {
		switch {
		case isUpper(r):
			if i > 0 && rs[i-1] != '_' && rs[i-1] != '.' &&
				(isLower(rs[i-1]) || isDigit(rs[i-1]) || isUpper(rs[i-1]) && i+1 < len(rs) && isLower(rs[i+1])) {
				b.WriteByte('_')
			}
			b.WriteRune(r - 'A' + 'a')
		case isLower(r), isDigit(r), r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

func isUpper(r rune) bool { return r >= 'A' && r <= 'Z' }
func isLower(r rune) bool { return r >= 'a' && r <= 'z' }
func isDigit(r rune) bool { return r >= '0' && r <= '9' }

func setIf(md map[string]string, key, value string) {
	if value != "" {
		md[key] = value
	}
}
