package wechat_test

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/normalize"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/producers/internal/wxpush"
	"github.com/omnisync/omnisync/producers/internal/wxpush/wxpushtest"
	"github.com/omnisync/omnisync/producers/wechat"
)

const (
	testToken   = "omnisyncToken2026"
	testAppID   = "wx8f3a2b1c4d5e6f70"
	testAccount = "gh_3d8a9f3a2b1c"
	testOpenID  = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
)

// testNow is the clock of every test: a minute after the pushes' CreateTime.
var testNow = time.Unix(1763800060, 0)

func clock() time.Time { return testNow }

// createTime is the CreateTime of the test pushes, a minute before testNow.
const createTime = 1763800000

var occurred = time.Unix(createTime, 0).UTC()

func newChannel(opts ...wxpush.Option) *wxpush.Channel {
	return wechat.New(ingest.WeChatCredential{AppID: testAppID, Token: testToken},
		append([]wxpush.Option{wxpush.Clock(clock)}, opts...)...)
}

func ptr(s string) *string { return &s }

// want is the message every push maps to, before the type's own fields.
func want(srcID string, ct events.ContentType, md map[string]string) *events.MessageEvent {
	return &events.MessageEvent{
		ConversationID:  "wechat:" + testOpenID,
		Channel:         events.ChannelWeChat,
		SourceMessageID: ptr(srcID),
		Direction:       events.DirectionInbound,
		SenderType:      events.SenderCustomer,
		SenderID:        testOpenID,
		ContentType:     ct,
		Identities:      []events.Identity{{Kind: "wechat_openid", Scope: testAppID, Value: testOpenID, Verified: true}},
		Metadata:        md,
		OccurredAt:      occurred,
	}
}

func with(m *events.MessageEvent, f func(*events.MessageEvent)) *events.MessageEvent {
	f(m)
	return m
}

// parseCases are pushes in the shapes of WeChat's documentation
// (接收普通消息, 接收事件推送), one for every MsgType and event type.
var parseCases = []struct {
	name string
	xml  string
	want *events.MessageEvent
}{
	{"text", `<xml>
  <ToUserName><![CDATA[gh_3d8a9f3a2b1c]]></ToUserName>
  <FromUserName><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></FromUserName>
  <CreateTime>1763800000</CreateTime>
  <MsgType><![CDATA[text]]></MsgType>
  <Content><![CDATA[你好，我的订单 #20251122-0042 还没发货]]></Content>
  <MsgId>24713581229045367</MsgId>
</xml>`, with(want("24713581229045367", events.ContentText, map[string]string{"msg_type": "text", "to_user_name": testAccount}),
		func(m *events.MessageEvent) { m.Text = ptr("你好，我的订单 #20251122-0042 还没发货") })},

	{"text from an article, with MsgDataId and Idx", `<xml><ToUserName><![CDATA[gh_3d8a9f3a2b1c]]></ToUserName><FromUserName><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></FromUserName><CreateTime>1763800000</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[  a <b>&amp; "quoted" </b>  ]]></Content><MsgId>24713581229045368</MsgId><MsgDataId>2247483652</MsgDataId><Idx>1</Idx></xml>`,
		with(want("24713581229045368", events.ContentText, map[string]string{"msg_type": "text", "to_user_name": testAccount, "msg_data_id": "2247483652", "idx": "1"}),
			func(m *events.MessageEvent) { m.Text = ptr(`a <b>&amp; "quoted" </b>`) })},

	{"text without CDATA, escaped, customer-service menu reply", `<?xml version="1.0" encoding="UTF-8"?>
<xml><ToUserName>gh_3d8a9f3a2b1c</ToUserName><FromUserName>oUpF8uMuAJO_M2pxb1Q9zNjWeS6o</FromUserName><CreateTime>1763800000</CreateTime><MsgType>text</MsgType><Content>满意 &amp; 谢谢 &lt;3</Content><MsgId>24713581229045369</MsgId><bizmsgmenuid>101</bizmsgmenuid></xml>`,
		with(want("24713581229045369", events.ContentText, map[string]string{"msg_type": "text", "to_user_name": testAccount, "bizmsgmenuid": "101"}),
			func(m *events.MessageEvent) { m.Text = ptr("满意 & 谢谢 <3") })},

	{"character references to characters; a surrogate one is literal text in CDATA", `<xml><ToUserName>gh_3d8a9f3a2b1c</ToUserName><FromUserName>oUpF8uMuAJO_M2pxb1Q9zNjWeS6o</FromUserName><CreateTime>1763800000</CreateTime><MsgType>text</MsgType><Content>&#x1F600;&#20320;&#xFFFD;<![CDATA[ &#xD800;]]></Content><MsgId>24713581229045399</MsgId></xml>`,
		with(want("24713581229045399", events.ContentText, map[string]string{"msg_type": "text", "to_user_name": testAccount}),
			func(m *events.MessageEvent) { m.Text = ptr("😀你\uFFFD &#xD800;") })},

	{"image", `<xml>
  <ToUserName><![CDATA[gh_3d8a9f3a2b1c]]></ToUserName>
  <FromUserName><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></FromUserName>
  <CreateTime>1763800000</CreateTime>
  <MsgType><![CDATA[image]]></MsgType>
  <PicUrl><![CDATA[http://mmbiz.qpic.cn/mmbiz_jpg/Jx4ZyO0DqQ8ibia8Jk5ia0b3WnYxZdxIcvLQ/0]]></PicUrl>
  <MsgId>24713581229045370</MsgId>
  <MediaId><![CDATA[Zs3r9p9Gm5qgJ5wB4KQ3X8cV0Y4kZ0uX6v3bW1c2d3e4f5g6h7i8j9k0l1m2n3o]]></MediaId>
</xml>`, with(want("24713581229045370", events.ContentImage, map[string]string{"msg_type": "image", "to_user_name": testAccount, "media_id": "Zs3r9p9Gm5qgJ5wB4KQ3X8cV0Y4kZ0uX6v3bW1c2d3e4f5g6h7i8j9k0l1m2n3o"}),
		func(m *events.MessageEvent) {
			m.Attachments = []events.Attachment{{URL: "http://mmbiz.qpic.cn/mmbiz_jpg/Jx4ZyO0DqQ8ibia8Jk5ia0b3WnYxZdxIcvLQ/0"}}
		})},

	{"voice with recognition", `<xml>
  <ToUserName><![CDATA[gh_3d8a9f3a2b1c]]></ToUserName>
  <FromUserName><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></FromUserName>
  <CreateTime>1763800000</CreateTime>
  <MsgType><![CDATA[voice]]></MsgType>
  <MediaId><![CDATA[vM3d1aId_voice]]></MediaId>
  <Format><![CDATA[amr]]></Format>
  <Recognition><![CDATA[腾讯微信团队]]></Recognition>
  <MsgId>24713581229045371</MsgId>
</xml>`, with(want("24713581229045371", events.ContentVoice, map[string]string{"msg_type": "voice", "to_user_name": testAccount, "media_id": "vM3d1aId_voice", "format": "amr"}),
		func(m *events.MessageEvent) { m.Text = ptr("腾讯微信团队") })},

	{"voice without recognition", `<xml><ToUserName><![CDATA[gh_3d8a9f3a2b1c]]></ToUserName><FromUserName><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></FromUserName><CreateTime>1763800000</CreateTime><MsgType><![CDATA[voice]]></MsgType><MediaId><![CDATA[vM3d1aId_voice2]]></MediaId><Format><![CDATA[speex]]></Format><MsgId>24713581229045372</MsgId></xml>`,
		want("24713581229045372", events.ContentVoice, map[string]string{"msg_type": "voice", "to_user_name": testAccount, "media_id": "vM3d1aId_voice2", "format": "speex"})},

	{"video", `<xml>
  <ToUserName><![CDATA[gh_3d8a9f3a2b1c]]></ToUserName>
  <FromUserName><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></FromUserName>
  <CreateTime>1763800000</CreateTime>
  <MsgType><![CDATA[video]]></MsgType>
  <MediaId><![CDATA[vIdEoMeDiA]]></MediaId>
  <ThumbMediaId><![CDATA[tHuMbMeDiA]]></ThumbMediaId>
  <MsgId>24713581229045373</MsgId>
</xml>`, want("24713581229045373", events.ContentVideo, map[string]string{"msg_type": "video", "to_user_name": testAccount, "media_id": "vIdEoMeDiA", "thumb_media_id": "tHuMbMeDiA"})},

	{"shortvideo", `<xml>
  <ToUserName><![CDATA[gh_3d8a9f3a2b1c]]></ToUserName>
  <FromUserName><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></FromUserName>
  <CreateTime>1763800000</CreateTime>
  <MsgType><![CDATA[shortvideo]]></MsgType>
  <MediaId><![CDATA[sHoRtViDeO]]></MediaId>
  <ThumbMediaId><![CDATA[sHoRtThUmB]]></ThumbMediaId>
  <MsgId>24713581229045374</MsgId>
</xml>`, want("24713581229045374", events.ContentVideo, map[string]string{"msg_type": "shortvideo", "to_user_name": testAccount, "media_id": "sHoRtViDeO", "thumb_media_id": "sHoRtThUmB"})},

	{"location", `<xml>
  <ToUserName><![CDATA[gh_3d8a9f3a2b1c]]></ToUserName>
  <FromUserName><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></FromUserName>
  <CreateTime>1763800000</CreateTime>
  <MsgType><![CDATA[location]]></MsgType>
  <Location_X>23.134521</Location_X>
  <Location_Y>113.358803</Location_Y>
  <Scale>20</Scale>
  <Label><![CDATA[广州市天河区天河路208号]]></Label>
  <MsgId>24713581229045375</MsgId>
</xml>`, with(want("24713581229045375", events.ContentLocation, map[string]string{"msg_type": "location", "to_user_name": testAccount, "scale": "20"}),
		func(m *events.MessageEvent) {
			m.Location = &events.Location{Latitude: 23.134521, Longitude: 113.358803, Label: "广州市天河区天河路208号"}
		})},

	{"link", `<xml>
  <ToUserName><![CDATA[gh_3d8a9f3a2b1c]]></ToUserName>
  <FromUserName><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></FromUserName>
  <CreateTime>1763800000</CreateTime>
  <MsgType><![CDATA[link]]></MsgType>
  <Title><![CDATA[公众平台官网链接]]></Title>
  <Description><![CDATA[公众平台官网链接]]></Description>
  <Url><![CDATA[https://mp.weixin.qq.com/s/Q6dX3hW0aB1c2D3e4F5g6h]]></Url>
  <MsgId>24713581229045376</MsgId>
</xml>`, with(want("24713581229045376", events.ContentLink, map[string]string{"msg_type": "link", "to_user_name": testAccount, "url": "https://mp.weixin.qq.com/s/Q6dX3hW0aB1c2D3e4F5g6h", "description": "公众平台官网链接"}),
		func(m *events.MessageEvent) { m.Text = ptr("公众平台官网链接") })},

	{"event subscribe", `<xml>
  <ToUserName><![CDATA[gh_3d8a9f3a2b1c]]></ToUserName>
  <FromUserName><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></FromUserName>
  <CreateTime>1763800000</CreateTime>
  <MsgType><![CDATA[event]]></MsgType>
  <Event><![CDATA[subscribe]]></Event>
  <EventKey><![CDATA[]]></EventKey>
</xml>`, with(want(testOpenID+"/1763800000/subscribe", events.ContentEvent, map[string]string{"msg_type": "event", "to_user_name": testAccount, "event": "subscribe"}),
		func(m *events.MessageEvent) { m.Text = ptr("subscribe") })},

	{"event subscribe by QR code", `<xml>
  <ToUserName><![CDATA[gh_3d8a9f3a2b1c]]></ToUserName>
  <FromUserName><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></FromUserName>
  <CreateTime>1763800000</CreateTime>
  <MsgType><![CDATA[event]]></MsgType>
  <Event><![CDATA[subscribe]]></Event>
  <EventKey><![CDATA[qrscene_store_shanghai_42]]></EventKey>
  <Ticket><![CDATA[gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xL2taZ2Z3TVRtNzJXV1Brb3ZhYmJJAAIEZ23sUwMEmm3sUw==]]></Ticket>
</xml>`, with(want(testOpenID+"/1763800000/subscribe/qrscene_store_shanghai_42", events.ContentEvent, map[string]string{
		"msg_type": "event", "to_user_name": testAccount, "event": "subscribe", "event_key": "qrscene_store_shanghai_42",
		"qr_scene": "store_shanghai_42", "ticket": "gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xL2taZ2Z3TVRtNzJXV1Brb3ZhYmJJAAIEZ23sUwMEmm3sUw==",
	}), func(m *events.MessageEvent) { m.Text = ptr("subscribe") })},

	{"event unsubscribe", `<xml>
  <ToUserName><![CDATA[gh_3d8a9f3a2b1c]]></ToUserName>
  <FromUserName><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></FromUserName>
  <CreateTime>1763800000</CreateTime>
  <MsgType><![CDATA[event]]></MsgType>
  <Event><![CDATA[unsubscribe]]></Event>
  <EventKey><![CDATA[]]></EventKey>
</xml>`, with(want(testOpenID+"/1763800000/unsubscribe", events.ContentEvent, map[string]string{"msg_type": "event", "to_user_name": testAccount, "event": "unsubscribe"}),
		func(m *events.MessageEvent) { m.Text = ptr("unsubscribe") })},

	{"event SCAN", `<xml>
  <ToUserName><![CDATA[gh_3d8a9f3a2b1c]]></ToUserName>
  <FromUserName><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></FromUserName>
  <CreateTime>1763800000</CreateTime>
  <MsgType><![CDATA[event]]></MsgType>
  <Event><![CDATA[SCAN]]></Event>
  <EventKey><![CDATA[123123]]></EventKey>
  <Ticket><![CDATA[TICKET]]></Ticket>
</xml>`, with(want(testOpenID+"/1763800000/SCAN/123123", events.ContentEvent, map[string]string{
		"msg_type": "event", "to_user_name": testAccount, "event": "SCAN", "event_key": "123123", "qr_scene": "123123", "ticket": "TICKET",
	}), func(m *events.MessageEvent) { m.Text = ptr("SCAN") })},

	{"event LOCATION", `<xml>
  <ToUserName><![CDATA[gh_3d8a9f3a2b1c]]></ToUserName>
  <FromUserName><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></FromUserName>
  <CreateTime>1763800000</CreateTime>
  <MsgType><![CDATA[event]]></MsgType>
  <Event><![CDATA[LOCATION]]></Event>
  <Latitude>23.137466</Latitude>
  <Longitude>113.352425</Longitude>
  <Precision>119.385040</Precision>
</xml>`, with(want(testOpenID+"/1763800000/LOCATION", events.ContentEvent, map[string]string{"msg_type": "event", "to_user_name": testAccount, "event": "LOCATION"}),
		func(m *events.MessageEvent) {
			m.Text = ptr("LOCATION")
			m.Location = &events.Location{Latitude: 23.137466, Longitude: 113.352425, PrecisionM: 119.38504}
		})},

	{"event CLICK", `<xml>
  <ToUserName><![CDATA[gh_3d8a9f3a2b1c]]></ToUserName>
  <FromUserName><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></FromUserName>
  <CreateTime>1763800000</CreateTime>
  <MsgType><![CDATA[event]]></MsgType>
  <Event><![CDATA[CLICK]]></Event>
  <EventKey><![CDATA[V1001_CONTACT_AGENT]]></EventKey>
</xml>`, with(want(testOpenID+"/1763800000/CLICK/V1001_CONTACT_AGENT", events.ContentEvent, map[string]string{
		"msg_type": "event", "to_user_name": testAccount, "event": "CLICK", "event_key": "V1001_CONTACT_AGENT",
	}), func(m *events.MessageEvent) { m.Text = ptr("CLICK") })},

	{"event VIEW", `<xml>
  <ToUserName><![CDATA[gh_3d8a9f3a2b1c]]></ToUserName>
  <FromUserName><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></FromUserName>
  <CreateTime>1763800000</CreateTime>
  <MsgType><![CDATA[event]]></MsgType>
  <Event><![CDATA[VIEW]]></Event>
  <EventKey><![CDATA[https://shop.example.cn/orders?from=menu]]></EventKey>
  <MenuId>415342679</MenuId>
</xml>`, with(want(testOpenID+"/1763800000/VIEW/https:%2F%2Fshop.example.cn%2Forders%3Ffrom=menu", events.ContentEvent, map[string]string{
		"msg_type": "event", "to_user_name": testAccount, "event": "VIEW", "event_key": "https://shop.example.cn/orders?from=menu", "menu_id": "415342679",
	}), func(m *events.MessageEvent) { m.Text = ptr("VIEW") })},

	{"event not listed (scancode_push) kept generically, nested fields flattened", `<xml>
  <ToUserName><![CDATA[gh_3d8a9f3a2b1c]]></ToUserName>
  <FromUserName><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></FromUserName>
  <CreateTime>1763800000</CreateTime>
  <MsgType><![CDATA[event]]></MsgType>
  <Event><![CDATA[scancode_push]]></Event>
  <EventKey><![CDATA[rselfmenu_0_1]]></EventKey>
  <ScanCodeInfo><ScanType><![CDATA[qrcode]]></ScanType><ScanResult><![CDATA[1]]></ScanResult></ScanCodeInfo>
</xml>`, with(want(testOpenID+"/1763800000/scancode_push/rselfmenu_0_1", events.ContentEvent, map[string]string{
		"msg_type": "event", "to_user_name": testAccount, "event": "scancode_push", "event_key": "rselfmenu_0_1",
		"scan_code_info.scan_type": "qrcode", "scan_code_info.scan_result": "1",
	}), func(m *events.MessageEvent) { m.Text = ptr("scancode_push") })},

	{"text with a unionid (third-party platform)", `<xml><ToUserName><![CDATA[gh_3d8a9f3a2b1c]]></ToUserName><FromUserName><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></FromUserName><CreateTime>1763800000</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content><MsgId>24713581229045377</MsgId><UnionId><![CDATA[o6_bmasdasdsad6_2sgVt7hMZOPfL]]></UnionId></xml>`,
		with(want("24713581229045377", events.ContentText, map[string]string{"msg_type": "text", "to_user_name": testAccount}),
			func(m *events.MessageEvent) {
				m.Text = ptr("hi")
				m.Identities = append(m.Identities, events.Identity{Kind: "wechat_unionid", Value: "o6_bmasdasdsad6_2sgVt7hMZOPfL", Verified: true})
			})},

	{"compatible mode: ciphertext ignored", `<xml><ToUserName><![CDATA[gh_3d8a9f3a2b1c]]></ToUserName><FromUserName><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></FromUserName><CreateTime>1763800000</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content><MsgId>24713581229045378</MsgId><Encrypt><![CDATA[nE5hGWLmB2pHZKxU6wK1fH4Ov0gJ9hA==]]></Encrypt></xml>`,
		with(want("24713581229045378", events.ContentText, map[string]string{"msg_type": "text", "to_user_name": testAccount}),
			func(m *events.MessageEvent) { m.Text = ptr("hi") })},
}

// TestParse: each push maps to its message; WeChat re-sends an unanswered
// push as it was, and the re-send parses to the identical batch and message ID.
func TestParse(t *testing.T) {
	p := wxpushtest.Parser{
		Ch:    newChannel(wxpush.AccountID(testAccount)),
		Later: newChannel(wxpush.AccountID(testAccount), wxpush.Clock(func() time.Time { return testNow.Add(15 * time.Second) })),
		Path:  "/ingest/wechat",
		Codec: wxpushtest.NewAvroCodec(t),
	}
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) { p.Parse(t, tc.xml, tc.want) })
	}
}

// TestEventSourceIDsDiffer: distinct events of one user in the same second
// must not share a source ID.
func TestEventSourceIDsDiffer(t *testing.T) {
	ch := newChannel()
	seen := map[string]string{}
	for _, tc := range parseCases {
		b, err := ch.Parse(nil, []byte(tc.xml))
		if err != nil {
			t.Fatal(err)
		}
		id := *b.Messages[0].SourceMessageID
		if other, ok := seen[id]; ok {
			t.Errorf("%q and %q share source ID %q", other, tc.name, id)
		}
		seen[id] = tc.name
	}
}

func TestParseTestdata(t *testing.T) {
	body, err := os.ReadFile("testdata/text.xml")
	if err != nil {
		t.Fatal(err)
	}
	// The example is for README curl calls, made at any time: no clock.
	b, err := wechat.New(ingest.WeChatCredential{AppID: testAppID, Token: testToken}).Parse(nil, body)
	if err != nil {
		t.Fatal(err)
	}
	if m := b.Messages[0]; m.ContentType != events.ContentText || m.Text == nil || *m.Text == "" || m.SourceMessageID == nil {
		t.Errorf("testdata/text.xml parsed to %+v", m)
	}
}

// push builds a text push from its elements, in order; "" values are
// written as empty elements, and raw elements can be passed as "<…>".
func push(elems ...string) string {
	var b strings.Builder
	b.WriteString("<xml>")
	for i := 0; i+1 < len(elems); i += 2 {
		if strings.HasPrefix(elems[i], "<") {
			b.WriteString(elems[i] + elems[i+1])
			continue
		}
		b.WriteString("<" + elems[i] + "><![CDATA[" + elems[i+1] + "]]></" + elems[i] + ">")
	}
	b.WriteString("</xml>")
	return b.String()
}

// base are the elements of a valid text push.
func base(overrides ...string) []string {
	elems := []string{"ToUserName", testAccount, "FromUserName", testOpenID, "CreateTime", "1763800000", "MsgType", "text", "Content", "hello", "MsgId", "24713581229045367"}
	for i := 0; i+1 < len(overrides); i += 2 {
		found := false
		for j := 0; j+1 < len(elems); j += 2 {
			if elems[j] == overrides[i] || "<"+elems[j]+">" == overrides[i] {
				elems[j], elems[j+1], found = overrides[i], overrides[i+1], true
			}
		}
		if !found {
			elems = append(elems, overrides[i], overrides[i+1])
		}
	}
	return elems
}

func without(name string, elems []string) []string {
	var out []string
	for i := 0; i+1 < len(elems); i += 2 {
		if elems[i] != name {
			out = append(out, elems[i], elems[i+1])
		}
	}
	return out
}

var badCases = []struct {
	name      string
	xml       string
	wantField string
	wantIn    string // part of the reason
}{
	{"empty body", "", "", "empty"},
	{"white space", " \n\t", "", "empty"},
	{"JSON", `{"MsgType":"text"}`, "", "body is JSON"},
	{"not XML", `MsgType=text`, "", "outside <xml>"},
	{"only a declaration", `<?xml version="1.0"?>`, "", "no <xml>"},
	{"JSON-looking garbage with <", `<<>>`, "", "malformed XML"},
	{"wrong root", `<message><MsgType>text</MsgType></message>`, "", "root element"},
	{"two roots", push(base()...) + "<xml></xml>", "", "after </xml>"},
	{"unclosed", `<xml><ToUserName>gh_3d8a9f3a2b1c</ToUserName>`, "", "malformed XML"},
	{"mismatched tags", `<xml><Content>hi</MsgType></xml>`, "Content", "malformed XML"},
	{"text beside <xml>", "oops" + push(base()...), "", "outside"},
	{"text inside <xml>", `<xml>oops<MsgType>text</MsgType></xml>`, "", "directly inside"},
	{"invalid UTF-8", push(base("Content", "caf\xe9")...), "Content", "UTF-8"},
	{"invalid UTF-8 ff fe, not CDATA", push(base("<Content>", "a\xff\xfeb</Content>")...), "Content", "UTF-8"},
	{"invalid UTF-8 ff fe in CDATA", push(base("Content", "\xff\xfe")...), "Content", "UTF-8"},
	{"CESU-8 surrogate bytes", push(base("Content", "\xed\xa0\x80")...), "Content", "UTF-8"},
	{"invalid UTF-8 in a nested element", push(base("<ScanCodeInfo>", "<ScanResult>\xff</ScanResult></ScanCodeInfo>")...), "ScanCodeInfo.ScanResult", "UTF-8"},
	{"invalid UTF-8 in a comment", push(base()...) + "<!-- \xff -->", "", "UTF-8"},
	{"surrogate reference, hex", push(base("<Content>", "a&#xD800;b</Content>")...), "Content", "&#xD800;"},
	{"surrogate reference, decimal", push(base("<Content>", "a&#55296;b</Content>")...), "Content", "&#55296;"},
	{"low surrogate reference after a good one", push(base("<Content>", "&#x1F600;&#xDFFF;</Content>")...), "Content", "&#xDFFF;"},
	{"surrogate reference in another element", push(base("<FromUserName>", "o&#xDBFF;</FromUserName>")...), "FromUserName", "&#xDBFF;"},
	{"U+FFFE reference", push(base("<Content>", "a&#xFFFE;b</Content>")...), "Content", "U+FFFE"},
	{"control character reference", push(base("<Content>", "a&#1;b</Content>")...), "Content", "U+0001"},
	{"reference beyond Unicode", push(base("<Content>", "a&#x110000;b</Content>")...), "Content", "&#x110000;"},
	{"GBK declared", `<?xml version="1.0" encoding="GBK"?>` + push(base()...), "", "malformed XML"},
	{"DOCTYPE", `<!DOCTYPE xml>` + push(base()...), "", "DOCTYPE"},
	{"XXE, external entity", `<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>` + push(base("<Content>", "&xxe;</Content>")...), "", "DOCTYPE"},
	{"billion laughs", `<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">]><xml><Content>&lol2;</Content></xml>`, "", "DOCTYPE"},
	{"undeclared entity", push(base("<Content>", "&xxe;</Content>")...), "Content", "malformed XML"},
	{"safe mode (encrypted)", push("ToUserName", testAccount, "Encrypt", "nE5hGWLmB2pHZKxU6wK1fH4Ov0gJ9hA=="), "Encrypt", "encrypted"},
	{"missing MsgType", push(without("MsgType", base())...), "MsgType", "required"},
	{"unknown MsgType", push(base("MsgType", "file")...), "MsgType", "not a message type"},
	{"missing ToUserName", push(without("ToUserName", base())...), "ToUserName", "required"},
	{"other account", push(base("ToUserName", "gh_someoneelse")...), "ToUserName", "addressed to"},
	{"missing FromUserName", push(without("FromUserName", base())...), "FromUserName", "required"},
	{"blank FromUserName", push(base("FromUserName", "   ")...), "FromUserName", "required"},
	{"FromUserName too long", push(base("FromUserName", strings.Repeat("o", 129))...), "FromUserName", "at most 128"},
	{"FromUserName nested", push(base("<FromUserName>", "<a>o</a></FromUserName>")...), "FromUserName", "nested"},
	{"missing CreateTime", push(without("CreateTime", base())...), "CreateTime", "required"},
	{"CreateTime not a number", push(base("CreateTime", "yesterday")...), "CreateTime", "Unix seconds"},
	{"CreateTime negative", push(base("CreateTime", "-5")...), "CreateTime", "Unix seconds"},
	{"CreateTime with sign", push(base("CreateTime", "+1763800000")...), "CreateTime", "Unix seconds"},
	{"CreateTime in milliseconds", push(base("CreateTime", "1763800000000")...), "CreateTime", "ahead of the clock"},
	{"CreateTime overflows", push(base("CreateTime", "99999999999999999999")...), "CreateTime", "Unix seconds"},
	{"CreateTime in 1973 (the docs' placeholder)", push(base("CreateTime", "123456789")...), "CreateTime", "before 2012"},
	{"missing MsgId", push(without("MsgId", base())...), "MsgId", "required"},
	{"duplicate Content", push(append(base(), "Content", "again")...), "Content", "more than once"},
	{"duplicate MsgId", push(append(base(), "MsgId", "1")...), "MsgId", "more than once"},
	{"missing Content", push(without("Content", base())...), "Content", "required"},
	{"empty Content", push(base("Content", " ")...), "Content", "required"},
	{"Content too long", push(base("Content", strings.Repeat("长", 16385))...), "Content", "at most 16384"},
	{"Content with NUL", push(base("<Content>", "a&#0;b</Content>")...), "Content", "U+0000"},
	{"image without PicUrl", push(base("MsgType", "image", "MediaId", "m")...), "PicUrl", "required"},
	{"image with javascript: URL", push(base("MsgType", "image", "PicUrl", "javascript:alert(1)", "MediaId", "m")...), "PicUrl", "not an http or https URL"},
	{"image without MediaId", push(base("MsgType", "image", "PicUrl", "http://mmbiz.qpic.cn/x/0")...), "MediaId", "required"},
	{"voice without MediaId", push(base("MsgType", "voice", "Format", "amr")...), "MediaId", "required"},
	{"video without MediaId", push(base("MsgType", "video", "ThumbMediaId", "t")...), "MediaId", "required"},
	{"shortvideo without MediaId", push(base("MsgType", "shortvideo")...), "MediaId", "required"},
	{"location without Location_X", push(base("MsgType", "location", "Location_Y", "113.3")...), "Location_X", "required"},
	{"location without Location_Y", push(base("MsgType", "location", "Location_X", "23.1")...), "Location_Y", "required"},
	{"location latitude out of range", push(base("MsgType", "location", "Location_X", "123.1", "Location_Y", "113.3")...), "Location_X", "between"},
	{"location longitude NaN", push(base("MsgType", "location", "Location_X", "23.1", "Location_Y", "NaN")...), "Location_Y", "between"},
	{"location longitude Inf", push(base("MsgType", "location", "Location_X", "23.1", "Location_Y", "+Inf")...), "Location_Y", "between"},
	{"link without Url", push(base("MsgType", "link", "Title", "t")...), "Url", "required"},
	{"link with a relative Url", push(base("MsgType", "link", "Url", "/relative")...), "Url", "not an http or https URL"},
	{"event without Event", push(without("MsgId", base("MsgType", "event"))...), "Event", "required"},
	{"event with a strange name", push(without("MsgId", base("MsgType", "event", "Event", "sub scribe"))...), "Event", "not an event name"},
	{"LOCATION event without Latitude", push(without("MsgId", base("MsgType", "event", "Event", "LOCATION", "Longitude", "113.3"))...), "Latitude", "required"},
	{"LOCATION event with negative Precision", push(without("MsgId", base("MsgType", "event", "Event", "LOCATION", "Latitude", "23.1", "Longitude", "113.3", "Precision", "-1"))...), "Precision", "negative"},
	{"EventKey too long", push(without("MsgId", base("MsgType", "event", "Event", "VIEW", "EventKey", "https://x.cn/"+strings.Repeat("a", 4096)))...), "EventKey", "at most 4096"},
	{"unionid too long", push(base("UnionId", strings.Repeat("u", 129))...), "UnionId", "at most 128"},
	{"too many unrecognised elements", push(base(manyElements(33)...)...), "X33", "more than 32"},
	{"unrecognised element too long", push(base("Note", strings.Repeat("n", 4097))...), "Note", "at most 4096"},
	{"nested too deep", push(base("<A>", "<B><C><D><E><F><G><H><I>x</I></H></G></F></E></D></C></B></A>")...), "A.B.C.D.E.F.G.H", "nested more than"},
}

func manyElements(n int) []string {
	var out []string
	for i := 1; i <= n; i++ {
		out = append(out, "X"+strconv.Itoa(i), "v")
	}
	return out
}

func TestParseInvalid(t *testing.T) {
	ch := newChannel(wxpush.AccountID(testAccount))
	for _, tc := range badCases {
		t.Run(tc.name, func(t *testing.T) { wxpushtest.Invalid(t, ch, tc.xml, tc.wantField, tc.wantIn) })
	}
}

// TestNoEntityExpansion: even past the DOCTYPE check, encoding/xml never
// loads an external entity or expands a declared one; a reference to one
// is a syntax error, so a push cannot read files or URLs through XML.
func TestNoEntityExpansion(t *testing.T) {
	// Without the DOCTYPE, the reference alone is an undefined entity.
	_, err := newChannel().Parse(nil, []byte(push(base("<Content>", "&xxe;</Content>")...)))
	var invalid *normalize.ValidationError
	if !errors.As(err, &invalid) || !strings.Contains(invalid.Reason, "xxe") {
		t.Fatalf("&xxe; without a declaration: %v, want a malformed-XML error naming it", err)
	}
	// With it, the DOCTYPE is refused before anything is read, and the
	// answer carries nothing of the entity's target.
	_, err = newChannel().Parse(nil, []byte(`<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>`+push(base("<Content>", "&xxe;</Content>")...)))
	if !errors.As(err, &invalid) || invalid.Reason != "DOCTYPE and entity declarations are not allowed" {
		t.Fatalf("XXE: %v", err)
	}
	if host, _ := os.ReadFile("/etc/hostname"); len(strings.TrimSpace(string(host))) > 0 && strings.Contains(err.Error(), strings.TrimSpace(string(host))) {
		t.Error("the error carries the file's contents")
	}
}
