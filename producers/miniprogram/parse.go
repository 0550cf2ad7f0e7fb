package miniprogram

import (
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/producers/internal/wxpush"
)

// mapping maps the mini-program's pushes; see the package doc.
var mapping = wxpush.Mapping{
	Channel:      events.ChannelMiniProgram,
	Conversation: "miniprogram",
	OpenIDKind:   "miniprogram_openid",
	Owner:        "mini-program",
	Push:         "mini-program customer-service push",
	Field:        "key",
	Types: []wxpush.Type{
		{MsgType: "text", Map: wxpush.TextMessage},
		{MsgType: "image", Map: wxpush.ImageMessage},
		{MsgType: "miniprogrampage", Map: pageMessage},
		{MsgType: "event", Map: eventMessage},
	},
}

// encryptKey reads a safe-mode body's Encrypt key.
func encryptKey(body []byte) (string, error) {
	p, err := readPush(body)
	if err != nil {
		return "", err
	}
	return p.Text("Encrypt", len(body))
}

// pageMessage maps a mini-program card the user sent from a page: a LINK
// whose text is the card's title.
func pageMessage(f wxpush.Fields, m *events.MessageEvent) error {
	title, err := f.Text("Title", wxpush.MaxTextRunes)
	if err != nil {
		return err
	}
	appID, err := f.Text("AppId", wxpush.MaxShortRunes)
	if err != nil {
		return err
	}
	path, err := wxpush.Required(f, "PagePath", wxpush.MaxURLRunes)
	if err != nil {
		return err
	}
	thumb, err := wxpush.HTTPURL(f, "ThumbUrl", false)
	if err != nil {
		return err
	}
	thumbID, err := f.Text("ThumbMediaId", wxpush.MaxShortRunes)
	if err != nil {
		return err
	}
	m.ContentType = events.ContentLink
	if title != "" {
		m.Text = &title
	}
	m.Metadata["page_path"] = path
	wxpush.SetIf(m.Metadata, "app_id", appID)
	wxpush.SetIf(m.Metadata, "thumb_url", thumb)
	wxpush.SetIf(m.Metadata, "thumb_media_id", thumbID)
	return nil
}

// eventMessage maps an event push (user_enter_tempsession when the user
// opens the customer-service chat; see wxpush.EventMessage), its key
// SessionFrom. Other event types are kept generically.
func eventMessage(f wxpush.Fields, m *events.MessageEvent) error {
	_, _, err := wxpush.EventMessage(f, m, "SessionFrom", "session_from", wxpush.MaxShortRunes)
	return err
}
