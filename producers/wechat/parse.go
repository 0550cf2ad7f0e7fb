package wechat

import (
	"strings"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/normalize"
	"github.com/omnisync/omnisync/producers/internal/wxpush"
)

// mapping maps the official account's pushes; see the package doc.
var mapping = wxpush.Mapping{
	Channel:      events.ChannelWeChat,
	Conversation: "wechat",
	OpenIDKind:   "wechat_openid",
	Owner:        "account",
	Push:         "official-account push",
	Field:        "element",
	Types: []wxpush.Type{
		{MsgType: "text", Map: wxpush.TextMessage},
		{MsgType: "image", Map: wxpush.ImageMessage},
		{MsgType: "voice", Map: voiceMessage},
		{MsgType: "video", Map: videoMessage},
		{MsgType: "shortvideo", Map: videoMessage},
		{MsgType: "location", Map: locationMessage},
		{MsgType: "link", Map: linkMessage},
		{MsgType: "event", Map: eventMessage},
	},
}

// encryptElement reads a safe-mode body's Encrypt element.
func encryptElement(body []byte) (string, error) {
	p, err := readPush(body)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(p.leaves["Encrypt"]), nil
}

// voiceMessage: WeChat gives no URL for voice and video, only a media ID
// the account fetches with its access token (media/get), so they carry no
// attachment and the IDs go to metadata.
func voiceMessage(f wxpush.Fields, m *events.MessageEvent) error {
	mediaID, err := wxpush.ID(f, "MediaId")
	if err != nil {
		return err
	}
	format, err := f.Text("Format", wxpush.MaxShortRunes)
	if err != nil {
		return err
	}
	recognition, err := f.Text("Recognition", wxpush.MaxTextRunes)
	if err != nil {
		return err
	}
	m.ContentType = events.ContentVoice
	m.Metadata["media_id"] = mediaID
	wxpush.SetIf(m.Metadata, "format", format)
	if recognition != "" {
		m.Text = &recognition
	}
	return nil
}

func videoMessage(f wxpush.Fields, m *events.MessageEvent) error {
	mediaID, err := wxpush.ID(f, "MediaId")
	if err != nil {
		return err
	}
	thumb, err := f.Text("ThumbMediaId", wxpush.MaxShortRunes)
	if err != nil {
		return err
	}
	m.ContentType = events.ContentVideo
	m.Metadata["media_id"] = mediaID
	wxpush.SetIf(m.Metadata, "thumb_media_id", thumb)
	return nil
}

func locationMessage(f wxpush.Fields, m *events.MessageEvent) error {
	lat, ok, err := float(f, "Location_X", 90)
	if err == nil && !ok {
		err = normalize.Invalid("Location_X", "is required")
	}
	if err != nil {
		return err
	}
	lon, ok, err := float(f, "Location_Y", 180)
	if err == nil && !ok {
		err = normalize.Invalid("Location_Y", "is required")
	}
	if err != nil {
		return err
	}
	scale, err := f.Text("Scale", 64)
	if err != nil {
		return err
	}
	label, err := f.Text("Label", wxpush.MaxShortRunes)
	if err != nil {
		return err
	}
	m.ContentType = events.ContentLocation
	m.Location = &events.Location{Latitude: lat, Longitude: lon, Label: label}
	wxpush.SetIf(m.Metadata, "scale", scale)
	return nil
}

func linkMessage(f wxpush.Fields, m *events.MessageEvent) error {
	link, err := wxpush.HTTPURL(f, "Url", true)
	if err != nil {
		return err
	}
	title, err := f.Text("Title", wxpush.MaxTextRunes)
	if err != nil {
		return err
	}
	desc, err := f.Text("Description", wxpush.MaxTextRunes)
	if err != nil {
		return err
	}
	m.ContentType = events.ContentLink
	if title != "" {
		m.Text = &title
	}
	m.Metadata["url"] = link
	wxpush.SetIf(m.Metadata, "description", desc)
	return nil
}

// eventMessage maps an event push (see wxpush.EventMessage), its key
// EventKey. Events other than the ones named below are kept too,
// generically: WeChat adds event types over time, and refusing one would
// make it re-send and warn the account's users.
func eventMessage(f wxpush.Fields, m *events.MessageEvent) error {
	event, key, err := wxpush.EventMessage(f, m, "EventKey", "event_key", wxpush.MaxURLRunes)
	if err != nil {
		return err
	}
	switch strings.ToLower(event) {
	case "subscribe", "scan":
		ticket, err := f.Text("Ticket", wxpush.MaxShortRunes)
		if err != nil {
			return err
		}
		wxpush.SetIf(m.Metadata, "ticket", ticket)
		if scene, ok := strings.CutPrefix(key, "qrscene_"); ok {
			wxpush.SetIf(m.Metadata, "qr_scene", scene) // subscribed by scanning a parametric QR code
		} else if strings.EqualFold(event, "scan") {
			wxpush.SetIf(m.Metadata, "qr_scene", key) // already a follower: the key is the scene
		}
	case "location":
		lat, ok, err := float(f, "Latitude", 90)
		if err == nil && !ok {
			err = normalize.Invalid("Latitude", "is required")
		}
		if err != nil {
			return err
		}
		lon, ok, err := float(f, "Longitude", 180)
		if err == nil && !ok {
			err = normalize.Invalid("Longitude", "is required")
		}
		if err != nil {
			return err
		}
		prec, _, err := float(f, "Precision", 1e7)
		if err == nil && prec < 0 {
			err = normalize.Invalid("Precision", "must not be negative")
		}
		if err != nil {
			return err
		}
		m.Location = &events.Location{Latitude: lat, Longitude: lon, PrecisionM: prec}
	}
	return nil
}
