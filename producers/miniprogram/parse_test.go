package miniprogram_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/producers/internal/wxpush"
	"github.com/omnisync/omnisync/producers/internal/wxpush/wxpushtest"
	"github.com/omnisync/omnisync/producers/miniprogram"
)

const (
	testToken   = "miniToken2026"
	testAppID   = "wx5b7c9d1e3f5a7b9c"
	testAccount = "gh_7c2f1e9d3a4b"
	testOpenID  = "oR5Gd5Bq9TfU8yX2kL3mN4pQ6rS7"
)

// testNow is the clock of every test: a minute after the pushes' CreateTime.
var testNow = time.Unix(1763800060, 0)

func clock() time.Time { return testNow }

func newChannel(opts ...wxpush.Option) *wxpush.Channel {
	return miniprogram.New(ingest.WeChatCredential{AppID: testAppID, Token: testToken},
		append([]wxpush.Option{wxpush.Clock(clock)}, opts...)...)
}

// createTime is the CreateTime of the test pushes, a minute before testNow.
const createTime = 1763800000

var occurred = time.Unix(createTime, 0).UTC()

func ptr(s string) *string { return &s }

func want(srcID string, ct events.ContentType, md map[string]string, f func(*events.MessageEvent)) *events.MessageEvent {
	m := &events.MessageEvent{
		ConversationID:  "miniprogram:" + testOpenID,
		Channel:         events.ChannelMiniProgram,
		SourceMessageID: ptr(srcID),
		Direction:       events.DirectionInbound,
		SenderType:      events.SenderCustomer,
		SenderID:        testOpenID,
		ContentType:     ct,
		Identities:      []events.Identity{{Kind: "miniprogram_openid", Scope: testAppID, Value: testOpenID, Verified: true}},
		Metadata:        md,
		OccurredAt:      occurred,
	}
	if f != nil {
		f(m)
	}
	return m
}

func withUnionID(m *events.MessageEvent) {
	m.Identities = append(m.Identities, events.Identity{Kind: "wechat_unionid", Value: "o6_bmasdasdsad6_2sgVt7hMZOPfL", Verified: true})
}

// parseCases are pushes in the shapes of WeChat's documentation (客服消息
// 接收消息和事件, JSON data format), one for every MsgType and event.
var parseCases = []struct {
	name string
	json string
	want *events.MessageEvent
}{
	{"text", `{
  "ToUserName": "gh_7c2f1e9d3a4b",
  "FromUserName": "oR5Gd5Bq9TfU8yX2kL3mN4pQ6rS7",
  "CreateTime": 1763800000,
  "MsgType": "text",
  "Content": "请问这件外套还有 L 码吗？",
  "MsgId": 24713581229045367
}`, want("24713581229045367", events.ContentText, map[string]string{"msg_type": "text", "to_user_name": testAccount},
		func(m *events.MessageEvent) { m.Text = ptr("请问这件外套还有 L 码吗？") })},

	{"text, MsgId beyond 2^53 kept exact", `{"ToUserName":"gh_7c2f1e9d3a4b","FromUserName":"oR5Gd5Bq9TfU8yX2kL3mN4pQ6rS7","CreateTime":1763800000,"MsgType":"text","Content":"hi","MsgId":9007199254740993123}`,
		want("9007199254740993123", events.ContentText, map[string]string{"msg_type": "text", "to_user_name": testAccount},
			func(m *events.MessageEvent) { m.Text = ptr("hi") })},

	{"text, MsgId and CreateTime as strings", `{"ToUserName":"gh_7c2f1e9d3a4b","FromUserName":"oR5Gd5Bq9TfU8yX2kL3mN4pQ6rS7","CreateTime":"1763800000","MsgType":"text","Content":" 带空格 \u003cb\u003e ","MsgId":"24713581229045369"}`,
		want("24713581229045369", events.ContentText, map[string]string{"msg_type": "text", "to_user_name": testAccount},
			func(m *events.MessageEvent) { m.Text = ptr("带空格 <b>") })},

	{"text with UnionId", `{"ToUserName":"gh_7c2f1e9d3a4b","FromUserName":"oR5Gd5Bq9TfU8yX2kL3mN4pQ6rS7","CreateTime":1763800000,"MsgType":"text","Content":"hi","MsgId":24713581229045370,"UnionId":"o6_bmasdasdsad6_2sgVt7hMZOPfL"}`,
		want("24713581229045370", events.ContentText, map[string]string{"msg_type": "text", "to_user_name": testAccount},
			func(m *events.MessageEvent) { m.Text = ptr("hi"); withUnionID(m) })},

	{"text with unionid (lower case)", `{"ToUserName":"gh_7c2f1e9d3a4b","FromUserName":"oR5Gd5Bq9TfU8yX2kL3mN4pQ6rS7","CreateTime":1763800000,"MsgType":"text","Content":"hi","MsgId":24713581229045371,"unionid":"o6_bmasdasdsad6_2sgVt7hMZOPfL"}`,
		want("24713581229045371", events.ContentText, map[string]string{"msg_type": "text", "to_user_name": testAccount},
			func(m *events.MessageEvent) { m.Text = ptr("hi"); withUnionID(m) })},

	{"image", `{
  "ToUserName": "gh_7c2f1e9d3a4b",
  "FromUserName": "oR5Gd5Bq9TfU8yX2kL3mN4pQ6rS7",
  "CreateTime": 1763800000,
  "MsgType": "image",
  "PicUrl": "https://mmbiz.qpic.cn/mmbiz_jpg/xKq8b2wPZicY3J0N6aT9e1Xo/0",
  "MediaId": "QK0vT7bVg6z4Xo5Tq1yZ9p3w2e8r7t6y5u4i3o2p1a0s9d8f7g6h5j4k3l2",
  "MsgId": 24713581229045372
}`, want("24713581229045372", events.ContentImage, map[string]string{"msg_type": "image", "to_user_name": testAccount, "media_id": "QK0vT7bVg6z4Xo5Tq1yZ9p3w2e8r7t6y5u4i3o2p1a0s9d8f7g6h5j4k3l2"},
		func(m *events.MessageEvent) {
			m.Attachments = []events.Attachment{{URL: "https://mmbiz.qpic.cn/mmbiz_jpg/xKq8b2wPZicY3J0N6aT9e1Xo/0"}}
		})},

	{"miniprogrampage", `{
  "ToUserName": "gh_7c2f1e9d3a4b",
  "FromUserName": "oR5Gd5Bq9TfU8yX2kL3mN4pQ6rS7",
  "CreateTime": 1763800000,
  "MsgType": "miniprogrampage",
  "MsgId": 24713581229045373,
  "Title": "羊毛双面呢大衣 · 驼色",
  "AppId": "wx5b7c9d1e3f5a7b9c",
  "PagePath": "pages/goods/detail?id=1024&from=kf",
  "ThumbUrl": "https://mmbiz.qpic.cn/mmbiz_jpg/thumb1024/0",
  "ThumbMediaId": "tHuMbMeDiAiD_1024"
}`, want("24713581229045373", events.ContentLink, map[string]string{
		"msg_type": "miniprogrampage", "to_user_name": testAccount, "app_id": "wx5b7c9d1e3f5a7b9c",
		"page_path": "pages/goods/detail?id=1024&from=kf", "thumb_url": "https://mmbiz.qpic.cn/mmbiz_jpg/thumb1024/0", "thumb_media_id": "tHuMbMeDiAiD_1024",
	}, func(m *events.MessageEvent) { m.Text = ptr("羊毛双面呢大衣 · 驼色") })},

	{"event user_enter_tempsession", `{
  "ToUserName": "gh_7c2f1e9d3a4b",
  "FromUserName": "oR5Gd5Bq9TfU8yX2kL3mN4pQ6rS7",
  "CreateTime": 1763800000,
  "MsgType": "event",
  "Event": "user_enter_tempsession",
  "SessionFrom": "order_20251122_0042"
}`, want(testOpenID+"/1763800000/user_enter_tempsession/order_20251122_0042", events.ContentEvent, map[string]string{
		"msg_type": "event", "to_user_name": testAccount, "event": "user_enter_tempsession", "session_from": "order_20251122_0042",
	}, func(m *events.MessageEvent) { m.Text = ptr("user_enter_tempsession") })},

	{"event user_enter_tempsession without SessionFrom", `{"ToUserName":"gh_7c2f1e9d3a4b","FromUserName":"oR5Gd5Bq9TfU8yX2kL3mN4pQ6rS7","CreateTime":1763800000,"MsgType":"event","Event":"user_enter_tempsession","SessionFrom":""}`,
		want(testOpenID+"/1763800000/user_enter_tempsession", events.ContentEvent, map[string]string{
			"msg_type": "event", "to_user_name": testAccount, "event": "user_enter_tempsession",
		}, func(m *events.MessageEvent) { m.Text = ptr("user_enter_tempsession") })},

	{"event not listed, kept generically with its extra keys", `{"ToUserName":"gh_7c2f1e9d3a4b","FromUserName":"oR5Gd5Bq9TfU8yX2kL3mN4pQ6rS7","CreateTime":1763800000,"MsgType":"event","Event":"subscribe_msg_popup_event","List":[{"TemplateId":"t1","SubscribeStatusString":"accept","PopupScene":"0"}],"Count":1,"Flag":true,"Nothing":null}`,
		want(testOpenID+"/1763800000/subscribe_msg_popup_event", events.ContentEvent, map[string]string{
			"msg_type": "event", "to_user_name": testAccount, "event": "subscribe_msg_popup_event",
			"list": `[{"TemplateId":"t1","SubscribeStatusString":"accept","PopupScene":"0"}]`, "count": "1", "flag": "true",
		}, func(m *events.MessageEvent) { m.Text = ptr("subscribe_msg_popup_event") })},

	{"compatible mode: ciphertext ignored", `{"ToUserName":"gh_7c2f1e9d3a4b","FromUserName":"oR5Gd5Bq9TfU8yX2kL3mN4pQ6rS7","CreateTime":1763800000,"MsgType":"text","Content":"hi","MsgId":24713581229045374,"Encrypt":"nE5hGWLmB2pHZKxU6wK1fH4Ov0gJ9hA=="}`,
		want("24713581229045374", events.ContentText, map[string]string{"msg_type": "text", "to_user_name": testAccount},
			func(m *events.MessageEvent) { m.Text = ptr("hi") })},
}

// TestParse: each push maps to its message; WeChat re-sends an unanswered
// push as it was, and the re-send parses to the identical batch and message ID.
func TestParse(t *testing.T) {
	p := wxpushtest.Parser{
		Ch:    newChannel(wxpush.AccountID(testAccount)),
		Later: newChannel(wxpush.AccountID(testAccount), wxpush.Clock(func() time.Time { return testNow.Add(15 * time.Second) })),
		Path:  "/ingest/miniprogram",
		Codec: wxpushtest.NewAvroCodec(t),
	}
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) { p.Parse(t, tc.json, tc.want) })
	}
}

// TestMsgIDForms: MsgId as a number or as a string names the same message.
func TestMsgIDForms(t *testing.T) {
	ch := newChannel()
	ids := map[string]bool{}
	for _, id := range []string{`24713581229045367`, `"24713581229045367"`, `" 24713581229045367 "`} {
		b, err := ch.Parse(nil, []byte(`{"ToUserName":"gh_7c2f1e9d3a4b","FromUserName":"oR5Gd5Bq9TfU8yX2kL3mN4pQ6rS7","CreateTime":1763800000,"MsgType":"text","Content":"hi","MsgId":`+id+`}`))
		if err != nil {
			t.Fatal(err)
		}
		ids[*b.Messages[0].SourceMessageID] = true
	}
	if len(ids) != 1 {
		t.Errorf("source IDs %v, want one", ids)
	}
}

func TestParseTestdata(t *testing.T) {
	body, err := os.ReadFile("testdata/text.json")
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(body) {
		t.Fatal("testdata/text.json is not JSON")
	}
	b, err := miniprogram.New(ingest.WeChatCredential{AppID: testAppID, Token: testToken}).Parse(nil, body)
	if err != nil {
		t.Fatal(err)
	}
	if m := b.Messages[0]; m.ContentType != events.ContentText || m.Text == nil || *m.Text == "" || m.SourceMessageID == nil {
		t.Errorf("testdata/text.json parsed to %+v", m)
	}
}

// body builds a text push from base with the given keys replaced (raw JSON
// values), added, or, with a nil value, removed.
func body(changes ...any) string {
	keys := []string{"ToUserName", "FromUserName", "CreateTime", "MsgType", "Content", "MsgId"}
	vals := map[string]string{"ToUserName": `"gh_7c2f1e9d3a4b"`, "FromUserName": `"oR5Gd5Bq9TfU8yX2kL3mN4pQ6rS7"`, "CreateTime": `1763800000`,
		"MsgType": `"text"`, "Content": `"hello"`, "MsgId": `24713581229045367`}
	for i := 0; i+1 < len(changes); i += 2 {
		k := changes[i].(string)
		if _, ok := vals[k]; !ok {
			keys = append(keys, k)
		}
		if changes[i+1] == nil {
			delete(vals, k)
			continue
		}
		vals[k] = changes[i+1].(string)
	}
	var parts []string
	for _, k := range keys {
		if v, ok := vals[k]; ok {
			kj, _ := json.Marshal(k)
			parts = append(parts, string(kj)+":"+v)
		}
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func str(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func manyKeys(n int) []any {
	var out []any
	for i := 1; i <= n; i++ {
		out = append(out, "X"+strings.Repeat("x", i), `"v"`)
	}
	return out
}

var badCases = []struct {
	name      string
	json      string
	wantField string
	wantIn    string
}{
	{"empty body", "", "", "empty"},
	{"white space", " \n", "", "empty"},
	{"XML body", `<xml><MsgType>text</MsgType></xml>`, "", "JSON data format"},
	{"array", `[{"MsgType":"text"}]`, "", "not a JSON object"},
	{"string", `"text"`, "", "not a JSON object"},
	{"null", `null`, "", "not a JSON object"},
	{"truncated", `{"ToUserName":"gh_7c2f1e9d3a4b","FromUser`, "", "malformed JSON"},
	{"trailing comma", `{"MsgType":"text",}`, "", "malformed JSON"},
	{"bad value", `{"MsgType":tru}`, "MsgType", "malformed JSON"},
	{"two objects", body() + body(), "", "content after"},
	{"invalid UTF-8", body("Content", "\"caf\xe9\""), "Content", "UTF-8"},
	{"lone surrogate escape", body("Content", `"caf\ud800"`), "Content", "surrogate"},
	{"invalid UTF-8 in a key", strings.TrimSuffix(body(), "}") + ",\"N\xffote\":\"x\"}", "N\uFFFDote", "key is not valid UTF-8"},
	{"duplicate key", `{"MsgType":"text","MsgType":"image"}`, "MsgType", "more than once"},
	{"duplicate MsgId", strings.TrimSuffix(body(), "}") + `,"MsgId":1}`, "MsgId", "more than once"},
	{"safe mode (encrypted)", `{"ToUserName":"gh_7c2f1e9d3a4b","Encrypt":"nE5hGWLmB2pHZKxU6wK1fH4Ov0gJ9hA=="}`, "Encrypt", "encrypted"},
	{"missing MsgType", body("MsgType", nil), "MsgType", "required"},
	{"MsgType not a string", body("MsgType", `1`), "MsgType", "must be a string"},
	{"unknown MsgType", body("MsgType", `"voice"`), "MsgType", "not a message type"},
	{"missing ToUserName", body("ToUserName", nil), "ToUserName", "required"},
	{"null ToUserName", body("ToUserName", `null`), "ToUserName", "required"},
	{"other mini-program", body("ToUserName", `"gh_other"`), "ToUserName", "addressed to"},
	{"missing FromUserName", body("FromUserName", nil), "FromUserName", "required"},
	{"FromUserName a number", body("FromUserName", `12345`), "FromUserName", "must be a string"},
	{"FromUserName an object", body("FromUserName", `{"openid":"o"}`), "FromUserName", "must be a string"},
	{"FromUserName too long", body("FromUserName", str(strings.Repeat("o", 129))), "FromUserName", "at most 128"},
	{"FromUserName with NUL", body("FromUserName", `"o\u0000x"`), "FromUserName", "NUL"},
	{"missing CreateTime", body("CreateTime", nil), "CreateTime", "required"},
	{"CreateTime fractional", body("CreateTime", `1763800000.5`), "CreateTime", "not a non-negative integer"},
	{"CreateTime exponent", body("CreateTime", `1.7638e9`), "CreateTime", "not a non-negative integer"},
	{"CreateTime negative", body("CreateTime", `-1`), "CreateTime", "not a non-negative integer"},
	{"CreateTime a word", body("CreateTime", `"today"`), "CreateTime", "not a non-negative integer"},
	{"CreateTime a bool", body("CreateTime", `true`), "CreateTime", "not a non-negative integer"},
	{"CreateTime overflows", body("CreateTime", `99999999999999999999`), "CreateTime", "not Unix seconds"},
	{"CreateTime in milliseconds", body("CreateTime", `1763800000000`), "CreateTime", "ahead of the clock"},
	{"CreateTime in 1973", body("CreateTime", `123456789`), "CreateTime", "before 2012"},
	{"missing MsgId", body("MsgId", nil), "MsgId", "required"},
	{"MsgId fractional", body("MsgId", `2471358122904536.7`), "MsgId", "not a non-negative integer"},
	{"MsgId empty string", body("MsgId", `""`), "MsgId", "required"},
	{"missing Content", body("Content", nil), "Content", "required"},
	{"blank Content", body("Content", `"  "`), "Content", "required"},
	{"Content an array", body("Content", `["hi"]`), "Content", "must be a string"},
	{"Content too long", body("Content", str(strings.Repeat("长", 16385))), "Content", "at most 16384"},
	{"image without PicUrl", body("MsgType", `"image"`, "MediaId", `"m"`), "PicUrl", "required"},
	{"image with a data: URL", body("MsgType", `"image"`, "PicUrl", `"data:image/png;base64,AAAA"`, "MediaId", `"m"`), "PicUrl", "not an http or https URL"},
	{"image without MediaId", body("MsgType", `"image"`, "PicUrl", `"https://mmbiz.qpic.cn/x/0"`), "MediaId", "required"},
	{"miniprogrampage without PagePath", body("MsgType", `"miniprogrampage"`, "Title", `"t"`), "PagePath", "required"},
	{"miniprogrampage with javascript: ThumbUrl", body("MsgType", `"miniprogrampage"`, "PagePath", `"pages/index"`, "ThumbUrl", `"javascript:alert(1)"`), "ThumbUrl", "not an http or https URL"},
	{"event without Event", body("MsgType", `"event"`, "MsgId", nil), "Event", "required"},
	{"event with a strange name", body("MsgType", `"event"`, "Event", `"user enter"`), "Event", "not an event name"},
	{"SessionFrom too long", body("MsgType", `"event"`, "Event", `"user_enter_tempsession"`, "SessionFrom", str(strings.Repeat("s", 1025))), "SessionFrom", "at most 1024"},
	{"UnionId a number", body("UnionId", `42`), "UnionId", "must be a string"},
	{"unionid too long", body("unionid", str(strings.Repeat("u", 129))), "unionid", "at most 128"},
	{"empty key", body("", `"x"`), "", "key is empty"},
	{"too many unrecognised keys", body(manyKeys(33)...), "X" + strings.Repeat("x", 33), "more than 32"},
	{"unrecognised value too long", body("Note", str(strings.Repeat("n", 4097))), "Note", "at most 4096"},
}

func TestParseInvalid(t *testing.T) {
	ch := newChannel(wxpush.AccountID(testAccount))
	for _, tc := range badCases {
		t.Run(tc.name, func(t *testing.T) { wxpushtest.Invalid(t, ch, tc.json, tc.wantField, tc.wantIn) })
	}
}
