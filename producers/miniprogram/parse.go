package miniprogram

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/producers/wechat"
)

// Bounds on what a push may carry, in characters.
const (
	maxTextRunes  = 16384 // Content, Title
	maxURLRunes   = 4096  // PicUrl, ThumbUrl, PagePath
	maxShortRunes = 1024  // identifiers, SessionFrom and other short values
	maxExtraRunes = 4096  // an unrecognised key's value
	maxExtras     = 32    // unrecognised keys kept in metadata
	maxKeyRunes   = 128   // an unrecognised key
)

// Bounds on CreateTime, as for the official account: WeChat's public
// platform opened in 2012, and a push is sent as it happens.
var earliestCreateTime = time.Date(2012, 1, 1, 0, 0, 0, 0, time.UTC)

const maxCreateTimeAhead = 24 * time.Hour

// Parse turns one push into one inbound message from the customer. Any
// bad input is a *ingest.ValidationError whose Field names the JSON key
// (empty for the body as a whole).
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
	p.used["Encrypt"] = true
	if msgType == "" {
		if p.has("Encrypt") {
			return nil, ingest.Invalid("Encrypt", "the push is encrypted (safe mode); set the mini-program's message encryption mode to plain text or compatible")
		}
		return nil, ingest.Invalid("MsgType", "is required")
	}
	to, err := p.id("ToUserName")
	if err != nil {
		return nil, err
	}
	if c.account != "" && to != c.account {
		return nil, ingest.Invalid("ToUserName", "the push is addressed to %q, not to this mini-program (%s)", to, c.account)
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
		ConversationID: "miniprogram:" + openid,
		Channel:        events.ChannelMiniProgram,
		Direction:      events.DirectionInbound,
		SenderType:     events.SenderCustomer,
		SenderID:       openid,
		Identities:     []events.Identity{{Kind: "miniprogram_openid", Scope: c.cred.AppID, Value: openid}},
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
	case "miniprogrampage":
		err = pageMessage(p, m)
	case "event":
		err = eventMessage(p, m, openid, at.Unix())
	default:
		return nil, ingest.Invalid("MsgType", "%q is not a message type of the mini-program customer-service push (text, image, miniprogrampage, event)", msgType)
	}
	if err != nil {
		return nil, err
	}
	if kind != "event" {
		msgID, err := p.integerOrID("MsgId")
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

// integerOrID reads an ID WeChat sends as a JSON number (MsgId), also
// accepted as a string: a number's digits as written, a string trimmed.
func (p *push) integerOrID(name string) (string, error) {
	if p.has(name) && p.vals[name][0] == '"' {
		return p.id(name)
	}
	return p.integer(name)
}

// createTime reads CreateTime, Unix seconds.
func (c *Channel) createTime(p *push) (time.Time, error) {
	s, err := p.integer("CreateTime")
	if err != nil {
		return time.Time{}, err
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, ingest.Invalid("CreateTime", "%s is not Unix seconds", truncate(s))
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

// unionIDKeys are the spellings a unionid arrives under.
var unionIDKeys = []string{"UnionId", "UnionID", "unionid"}

func unionID(p *push, m *events.MessageEvent) error {
	for _, name := range unionIDKeys {
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

// pageMessage maps a mini-program card the user sent from a page: a LINK
// whose text is the card's title.
func pageMessage(p *push, m *events.MessageEvent) error {
	title, err := p.text("Title", maxTextRunes)
	if err != nil {
		return err
	}
	appID, err := p.text("AppId", maxShortRunes)
	if err != nil {
		return err
	}
	path, err := p.required("PagePath", maxURLRunes)
	if err != nil {
		return err
	}
	thumb, err := httpURL(p, "ThumbUrl", false)
	if err != nil {
		return err
	}
	thumbID, err := p.text("ThumbMediaId", maxShortRunes)
	if err != nil {
		return err
	}
	m.ContentType = events.ContentLink
	if title != "" {
		m.Text = &title
	}
	m.Metadata["page_path"] = path
	setIf(m.Metadata, "app_id", appID)
	setIf(m.Metadata, "thumb_url", thumb)
	setIf(m.Metadata, "thumb_media_id", thumbID)
	return nil
}

// eventMessage maps an event push (user_enter_tempsession when the user
// opens the customer-service chat). Events carry no MsgId; the source ID is
// wechat.EventSourceID(openid, CreateTime, Event, SessionFrom). Other event
// types are kept generically.
func eventMessage(p *push, m *events.MessageEvent, openid string, createTime int64) error {
	event, err := p.required("Event", 64)
	if err != nil {
		return err
	}
	if !isEventName(event) {
		return ingest.Invalid("Event", "%q is not an event name (letters, digits, _)", event)
	}
	from, err := p.text("SessionFrom", maxShortRunes)
	if err != nil {
		return err
	}
	m.ContentType, m.Text = events.ContentEvent, &event
	m.Metadata["event"] = event
	setIf(m.Metadata, "session_from", from)
	id := wechat.EventSourceID(openid, createTime, event, from)
	m.SourceMessageID = &id
	return nil
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
		return "", ingest.Invalid(name, "%q is not an http or https URL", truncate(s))
	}
	return s, nil
}

// extras keeps the keys no mapping read in metadata, under their
// snake_case names, so nothing WeChat sent is lost. Keys already set win;
// null and empty values are skipped.
func extras(p *push, md map[string]string) error {
	n := 0
	for _, name := range p.order {
		if p.used[name] {
			continue
		}
		v, err := ingest.Text(name, p.scalar(name), maxExtraRunes)
		if err != nil {
			return err
		}
		if v == "" {
			continue
		}
		if name == "" {
			return ingest.Invalid("", "a key is empty")
		}
		if utf8.RuneCountInString(name) > maxKeyRunes {
			return ingest.Invalid(truncate(name), "key longer than %d characters", maxKeyRunes)
		}
		if n++; n > maxExtras {
			return ingest.Invalid(name, "more than %d unrecognised keys", maxExtras)
		}
		key := metadataKey(name)
		if _, ok := md[key]; !ok {
			md[key] = v
		}
	}
	return nil
}

// metadataKey turns a key into snake_case: MsgId → msg_id, SessionFrom →
// session_from, UnionID → union_id. Characters other than ASCII letters,
// digits and '_' become '_'.
func metadataKey(name string) string {
	rs := []rune(name)
	var b strings.Builder
	for i, r := range rs {
		switch {
		case isUpper(r):
			if i > 0 && rs[i-1] != '_' &&
				(isLower(rs[i-1]) || isDigit(rs[i-1]) || isUpper(rs[i-1]) && i+1 < len(rs) && isLower(rs[i+1])) {
				b.WriteByte('_')
			}
			b.WriteRune(r - 'A' + 'a')
		case isLower(r), isDigit(r), r == '_':
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
