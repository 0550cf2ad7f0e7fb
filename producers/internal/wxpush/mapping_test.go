package wxpush_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/normalize"
	"github.com/omnisync/omnisync/producers/internal/wxpush"
)

// fields is a Push of plain strings, in the order given.
type fields struct {
	wxpush.Tracker
	vals map[string]string
}

var _ wxpush.Push = (*fields)(nil)

func newFields(kv ...string) *fields {
	f := &fields{vals: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		f.vals[kv[i]] = kv[i+1]
		f.Add(kv[i])
	}
	return f
}

func (f *fields) Has(name string) bool { _, ok := f.vals[name]; return ok }

func (f *fields) Text(name string, max int) (string, error) {
	f.MarkRead(name)
	return normalize.Text(name, f.vals[name], max)
}

func (f *fields) Quote(s string) string { return s }

func (f *fields) Seconds(name string) (int64, error) {
	s, err := wxpush.Required(f, name, 64)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(s, 10, 64)
}

func (f *fields) MsgID(name string) (string, error) { return wxpush.ID(f, name) }

func (f *fields) Extra(name string) (key, value string, err error) {
	v, err := normalize.Text(name, f.vals[name], wxpush.MaxExtraRunes)
	return wxpush.MetadataKey(name), v, err
}

var testMapping = wxpush.Mapping{
	Channel:      events.ChannelWeChat,
	Conversation: "test",
	OpenIDKind:   "test_openid",
	Owner:        "account",
	Push:         "test push",
	Field:        "field",
	Types: []wxpush.Type{
		{MsgType: "text", Map: wxpush.TextMessage},
		{MsgType: "image", Map: wxpush.ImageMessage},
		{MsgType: "event", Map: func(f wxpush.Fields, m *events.MessageEvent) error {
			_, _, err := wxpush.EventMessage(f, m, "EventKey", "event_key", wxpush.MaxURLRunes)
			return err
		}},
	},
}

var (
	now = time.Unix(1763800060, 0)
	to  = wxpush.Recipient{AppID: "wx1", ID: "gh_1"}
)

// base is a push's common fields, then kv: a key already there takes kv's
// value in place.
func base(kv ...string) []string {
	out := []string{"ToUserName", "gh_1", "FromUserName", "o1", "CreateTime", "1763800000"}
next:
	for i := 0; i+1 < len(kv); i += 2 {
		for j := 0; j < len(out); j += 2 {
			if out[j] == kv[i] {
				out[j+1] = kv[i+1]
				continue next
			}
		}
		out = append(out, kv[i], kv[i+1])
	}
	return out
}

func TestParse(t *testing.T) {
	b, err := testMapping.Parse(newFields(base("MsgType", "Text", "Content", " hi ", "MsgId", "42",
		"UnionID", "u1", "MenuId", "7", "Encrypt", "cipher", "Empty", " ")...), to, now)
	if err != nil {
		t.Fatal(err)
	}
	want := &events.MessageEvent{
		ConversationID:  "test:o1",
		Channel:         events.ChannelWeChat,
		SourceMessageID: ptr("42"),
		Direction:       events.DirectionInbound,
		SenderType:      events.SenderCustomer,
		SenderID:        "o1",
		ContentType:     events.ContentText,
		Text:            ptr("hi"),
		Identities:      []events.Identity{{Kind: "test_openid", Scope: "wx1", Value: "o1", Verified: true}, {Kind: "wechat_unionid", Value: "u1", Verified: true}},
		Metadata:        map[string]string{"msg_type": "Text", "to_user_name": "gh_1", "menu_id": "7"},
		OccurredAt:      time.Unix(1763800000, 0).UTC(),
	}
	if len(b.Customers) != 0 || len(b.Messages) != 1 {
		t.Fatalf("%d customer events, %d messages", len(b.Customers), len(b.Messages))
	}
	if diff := cmp.Diff(want, b.Messages[0]); diff != "" {
		t.Errorf("message (-want +got):\n%s", diff)
	}
}

func TestParseEvent(t *testing.T) {
	b, err := testMapping.Parse(newFields(base("MsgType", "event", "Event", "CLICK", "EventKey", "a/b")...), to, now)
	if err != nil {
		t.Fatal(err)
	}
	m := b.Messages[0]
	if got, want := *m.SourceMessageID, "o1/1763800000/CLICK/a%2Fb"; got != want {
		t.Errorf("source ID %q, want %q", got, want)
	}
	if m.ContentType != events.ContentEvent || *m.Text != "CLICK" || m.Metadata["event_key"] != "a/b" {
		t.Errorf("event mapped to %+v", m)
	}
}

func TestParseInvalid(t *testing.T) {
	var many []string
	for i := 1; i <= 33; i++ {
		many = append(many, "X"+strconv.Itoa(i), "v")
	}
	for _, tc := range []struct {
		name, field, reason string
		kv                  []string
	}{
		{"encrypted", "Encrypt", "this account has no encoding_aes_key", []string{"ToUserName", "gh_1", "Encrypt", "c"}},
		{"no MsgType", "MsgType", "is required", base()},
		{"unknown MsgType", "MsgType", `"voice" is not a message type of the test push (text, image, event)`, base("MsgType", "voice")},
		{"other account", "ToUserName", `addressed to "gh_2", not to this account (gh_1)`, base("MsgType", "text", "ToUserName", "gh_2")},
		{"CreateTime too early", "CreateTime", "before 2012", base("MsgType", "text", "CreateTime", "1000")},
		{"CreateTime ahead", "CreateTime", "ahead of the clock", base("MsgType", "text", "CreateTime", "1763990000")},
		{"no MsgId", "MsgId", "is required", base("MsgType", "text", "Content", "hi")},
		{"bad URL", "PicUrl", "not an http or https URL", base("MsgType", "image", "PicUrl", "javascript:x", "MediaId", "m", "MsgId", "1")},
		{"bad event name", "Event", "not an event name", base("MsgType", "event", "Event", "a b")},
		{"too many extras", "X33", "more than 32 unrecognised fields", append(base("MsgType", "text", "Content", "hi", "MsgId", "1"), many...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := testMapping.Parse(newFields(tc.kv...), to, now)
			var invalid *normalize.ValidationError
			if !errors.As(err, &invalid) {
				t.Fatalf("Parse = %v, %v; want a *normalize.ValidationError", b, err)
			}
			if b != nil {
				t.Error("a batch with an error")
			}
			if invalid.Field != tc.field || !strings.Contains(invalid.Reason, tc.reason) {
				t.Errorf("error %v, want field %s and a reason with %q", err, tc.field, tc.reason)
			}
		})
	}
}

func TestMetadataKey(t *testing.T) {
	for in, want := range map[string]string{
		"MsgId":                 "msg_id",
		"UnionID":               "union_id",
		"Location_X":            "location_x",
		"PicMd5Sum":             "pic_md5_sum",
		"bizmsgmenuid":          "bizmsgmenuid",
		"ScanCodeInfo.ScanType": "scan_code_info.scan_type",
		"HTTPServer":            "http_server",
		"a-b c":                 "a_b_c",
		"名字":                    "__",
	} {
		if got := wxpush.MetadataKey(in); got != want {
			t.Errorf("MetadataKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTracker(t *testing.T) {
	var tr wxpush.Tracker
	for _, name := range []string{"a", "b", "c", "d"} {
		tr.Add(name)
	}
	tr.MarkRead("b")
	tr.MarkRead("d")
	tr.MarkRead("x")
	if diff := cmp.Diff([]string{"a", "c"}, tr.Unread()); diff != "" {
		t.Errorf("Unread (-want +got):\n%s", diff)
	}
}

func ptr(s string) *string { return &s }
