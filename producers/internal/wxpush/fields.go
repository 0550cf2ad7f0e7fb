package wxpush

import (
	"net/url"
	"strconv"
	"strings"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/normalize"
)

// Required reads text that must not be empty.
func Required(f Fields, name string, max int) (string, error) {
	s, err := f.Text(name, max)
	if err == nil && s == "" {
		err = normalize.Invalid(name, "is required")
	}
	return s, err
}

// ID reads a required identifier (normalize.ID).
func ID(f Fields, name string) (string, error) {
	s, err := f.Text(name, MaxShortRunes)
	if err != nil {
		return "", err
	}
	return normalize.ID(name, s)
}

// HTTPURL reads an http or https URL: an agent's console renders it as a
// link, so javascript: and other schemes are refused.
func HTTPURL(f Fields, name string, required bool) (string, error) {
	s, err := f.Text(name, MaxURLRunes)
	if err != nil {
		return "", err
	}
	if s == "" {
		if required {
			return "", normalize.Invalid(name, "is required")
		}
		return "", nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", normalize.Invalid(name, "%q is not an http or https URL", f.Quote(s))
	}
	return s, nil
}

// EventName reads a required event type: letters, digits and underscores,
// as every WeChat event is named.
func EventName(f Fields, name string) (string, error) {
	s, err := Required(f, name, 64)
	if err != nil {
		return "", err
	}
	if !isEventName(s) {
		return "", normalize.Invalid(name, "%q is not an event name (letters, digits, _)", s)
	}
	return s, nil
}

// EventMessage maps what every event push has: Event, also the message's
// text, and the event's key, the field keyField (EventKey, SessionFrom) of
// at most max characters, kept in metadata as metaKey. Events carry no
// MsgId; following WeChat's advice to deduplicate them by FromUserName
// and CreateTime, the source ID is EventSourceID(openid, CreateTime,
// Event, key).
func EventMessage(f Fields, m *events.MessageEvent, keyField, metaKey string, max int) (event, key string, err error) {
	event, err = EventName(f, "Event")
	if err != nil {
		return "", "", err
	}
	key, err = f.Text(keyField, max)
	if err != nil {
		return "", "", err
	}
	m.ContentType, m.Text = events.ContentEvent, &event
	m.Metadata["event"] = event
	SetIf(m.Metadata, metaKey, key)
	id := EventSourceID(m.SenderID, m.OccurredAt.Unix(), event, key)
	m.SourceMessageID = &id
	return event, key, nil
}

// EventSourceID is the source ID of an event push, which has no MsgId:
// FromUserName, CreateTime, Event and, when present, the event's key,
// each path-escaped and joined with "/". WeChat's re-sends of a push carry
// the same values and so map to the same ID; it cannot collide with a
// MsgId, which has no "/".
func EventSourceID(openid string, createTime int64, event, key string) string {
	parts := []string{url.PathEscape(openid), strconv.FormatInt(createTime, 10), url.PathEscape(event)}
	if key != "" {
		parts = append(parts, url.PathEscape(key))
	}
	return strings.Join(parts, "/")
}

func isEventName(s string) bool {
	for _, r := range s {
		if !(isLower(r) || isUpper(r) || isDigit(r) || r == '_') {
			return false
		}
	}
	return s != ""
}

// TextMessage maps a text message: Content.
func TextMessage(f Fields, m *events.MessageEvent) error {
	content, err := Required(f, "Content", MaxTextRunes)
	if err != nil {
		return err
	}
	m.ContentType, m.Text = events.ContentText, &content
	return nil
}

// ImageMessage maps an image message: PicUrl as the attachment, MediaId
// in metadata.
func ImageMessage(f Fields, m *events.MessageEvent) error {
	pic, err := HTTPURL(f, "PicUrl", true)
	if err != nil {
		return err
	}
	mediaID, err := ID(f, "MediaId")
	if err != nil {
		return err
	}
	m.ContentType = events.ContentImage
	m.Attachments = []events.Attachment{{URL: pic}}
	m.Metadata["media_id"] = mediaID
	return nil
}

// SetIf sets md[key] to value unless value is empty.
func SetIf(md map[string]string, key, value string) {
	if value != "" {
		md[key] = value
	}
}

// MetadataKey turns a field name into snake_case: MsgId → msg_id,
// UnionID → union_id, Location_X → location_x, PicMd5Sum → pic_md5_sum,
// ScanCodeInfo.ScanType → scan_code_info.scan_type. Characters other than
// ASCII letters, digits, '_' and '.' become '_'.
func MetadataKey(name string) string {
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
