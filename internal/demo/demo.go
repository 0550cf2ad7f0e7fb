// Package demo plays demo customers through omnisync's real ingest
// endpoints: profiles and chats from the web widget and the mobile app,
// phone calls with transcripts, WeChat official-account and mini-program
// pushes (signed, and encrypted when the account has an EncodingAESKey), and profile edits from the CRM, including key-field
// disagreements so the review queue has work. It seeds a fixed scenario
// once per data directory, then keeps a gentle trickle of new messages.
package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/normalize"
	"github.com/omnisync/omnisync/pkg/retry"
	"github.com/omnisync/omnisync/pkg/wxcrypt"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/producers/wechat"
)

// Publisher publishes a customer event to Kafka; the CRM's edits go
// through it, as a CRM connector's would.
type Publisher interface {
	Publish(ctx context.Context, ev *events.CustomerEvent) error
}

// Config configures a demo run.
type Config struct {
	BaseURL string // where the ingest endpoints are, e.g. http://127.0.0.1:8080
	// HTTPClient posts to BaseURL; default a plain client with a 15 s
	// timeout.
	HTTPClient  *http.Client
	Credentials ingest.Credentials
	CRM         Publisher
	// SeededMarker is a file whose existence says the scenario was played
	// already (a restart then only adds new traffic).
	SeededMarker string
	// Every is the pause between trickle messages; default 4 s, 0 or
	// negative stops after the scenario.
	Every  time.Duration
	Logger *zap.Logger
}

// Run plays the scenario (unless seeded already) and the trickle until
// ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	p := &player{cfg: cfg, http: cfg.HTTPClient}
	if p.http == nil {
		p.http = &http.Client{Timeout: 15 * time.Second}
	}
	if _, err := os.Stat(cfg.SeededMarker); err != nil {
		if err := p.waitReady(ctx); err != nil {
			return nil // stopped before the server was ready
		}
		if err := p.scenario(ctx, time.Now().Add(-3*time.Hour)); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("demo scenario: %w", err)
		}
		if err := os.WriteFile(cfg.SeededMarker, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
			return err
		}
		cfg.Logger.Info("demo customers played; the review queue has open conflicts")
	}
	if cfg.Every <= 0 {
		return nil
	}
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(cfg.Every):
		}
		if err := p.trickle(ctx, n); err != nil && ctx.Err() == nil {
			cfg.Logger.Warn("demo message not accepted; retrying with the next", zap.Error(err))
		}
	}
}

type player struct {
	cfg  Config
	http *http.Client
}

// waitReady waits until the server answers /readyz.
func (p *player) waitReady(ctx context.Context) error {
	return retry.Do(ctx, p.cfg.Logger, "waiting for /readyz", func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.cfg.BaseURL+"/readyz", nil)
		if err != nil {
			return retry.Permanent(err)
		}
		resp, err := p.http.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz answered %s", resp.Status)
		}
		return nil
	})
}

// Customer is one demo customer.
type Customer struct {
	CRMID  string // the CRM's ID: the customer ID is derived from it
	Name   string
	Phone  string
	Email  string
	Device string
	User   string // app user ID
	// WeChat, for a customer who first wrote to the official account: her
	// customer ID is derived from her unionid, the first verified identity
	// omnisync saw of her, and the CRM writes her member profile there.
	WeChat *Fan
}

// Fan is a WeChat user: the official account's openid, the
// mini-program's, and the unionid both share when the push carries it.
type Fan struct {
	OpenID, MiniOpenID, UnionID string
}

// ID is the customer's omnisync ID.
func (c Customer) ID() string {
	if c.WeChat != nil {
		return ingest.CustomerIDFor(events.Identity{Kind: "wechat_unionid", Value: c.WeChat.UnionID})
	}
	return ingest.CustomerIDFor(events.Identity{Kind: "crm", Value: c.CRMID})
}

// The demo customers.
var (
	LiNa      = Customer{CRMID: "CRM-10001", Name: "李娜", Phone: "138 0013 8000", Email: "li.na@example.com", Device: "d-ln-ios", User: "u-10001"}
	Wang      = Customer{CRMID: "CRM-10002", Name: "Wang Xiaoming", Phone: "+86 139 0013 9000", Email: "xiaoming.wang@example.com", Device: "d-wxm-android", User: "u-10002"}
	ZhangWei  = Customer{CRMID: "CRM-10003", Name: "张伟", Phone: "186 1234 5678", Email: "zhangwei@example.cn", Device: "d-zw-harmony", User: "u-10003"}
	EmilyChen = Customer{CRMID: "CRM-10004", Name: "Emily Chen", Phone: "135 5555 0101", Email: "emily.chen@example.com", Device: "d-ec-ios", User: "u-10004"}
	DavidLi   = Customer{CRMID: "CRM-10005", Name: "David Li", Phone: "177 0000 1234", Email: "david.li@example.com", Device: "d-dl-android", User: "u-10005"}
	// ChenJing first wrote to the official account (run through a
	// third-party platform that adds the UnionId to each push) and from the
	// mini-program; the CRM names her, and she uses every other channel.
	ChenJing = Customer{CRMID: "CRM-10006", Name: "陈静", Phone: "150 2468 1357", Email: "chen.jing@example.cn", Device: "d-cj-android", User: "u-10006",
		WeChat: &Fan{OpenID: "oUpF8uOz2v8Q1xY7b3KcXnR5tA0e", MiniOpenID: "oR5Gd5Bq9TfU8yX2kL3mN4pQ6rS8", UnionID: "oTmHYjg8ZJBWQ4sHU0UJHdcLqLXm"}}
	Customers = []Customer{LiNa, Wang, ZhangWei, EmilyChen, DavidLi, ChenJing}
	// LiuYang is a WeChat fan with no CRM record: he writes to the
	// official account and from the mini-program (the unionid makes them
	// one customer), uses the app under an account of its own, then logs
	// into the app with WeChat and a number the app verified by SMS, which
	// merges the app account into the fan automatically (unionid), and
	// calls from that number: one customer, stitched by the identity graph.
	LiuYang = Customer{Name: "刘洋", Phone: "159 8765 4321", Device: "d-ly-ios", User: "u-10007",
		WeChat: &Fan{OpenID: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", MiniOpenID: "oR5Gd5Bq9TfU8yX2kL3mN4pQ6rS7", UnionID: "oTmHYjg8ZJBWQ4sHU0UJHdcLqLXk"}}
)

func (p *player) scenario(ctx context.Context, t0 time.Time) error {
	at := func(min int) string { return t0.Add(time.Duration(min) * time.Minute).Format(time.RFC3339) }
	steps := []func() error{
		// 李娜 signs up in the app, chats on the web, calls, then types another number on the web: a phone conflict.
		func() error {
			return p.app(ctx, LiNa, []map[string]any{
				profile("a-ln-1", at(0), map[string]any{"name": LiNa.Name, "phone": LiNa.Phone, "email": LiNa.Email, "gender": "female",
					"address": map[string]any{"country": "CN", "province": "浙江", "city": "杭州", "district": "西湖区"}}),
				message("a-ln-2", at(1), "app-ln-1", "inbound", "text", "我上周买的羽绒服想换成 L 码，可以吗？"),
				agentMessage("a-ln-3", at(2), "app-ln-1", "agent-07", "可以的，李女士。请提供一下订单号。"),
				message("a-ln-4", at(3), "app-ln-1", "inbound", "text", "订单号 SO-2026-1120-0042"),
			})
		},
		func() error {
			return p.web(ctx, LiNa, "v-ln-7f3a", []map[string]any{
				message("w-ln-1", at(20), "web-ln-1", "inbound", "text", "你好，换货的快递什么时候上门取件？"),
				agentMessage("w-ln-2", at(21), "web-ln-1", "agent-07", "明天上午 9 点到 12 点之间，快递员会先电话联系您。"),
				profile("w-ln-3", at(22), map[string]any{"phone": "139 1111 2222"}),
			})
		},
		func() error {
			return p.call(ctx, LiNa, "call-demo-ln-1", "inbound", at(40), at(43), [][3]any{
				{"agent", "您好，这里是 omnisync 客服中心，请问有什么可以帮您？", 0.97},
				{"caller", "我在网页上预约了换货取件，想确认一下时间。", 0.92},
				{"agent", "好的，已经为您确认，明天上午取件。", 0.95},
				{"caller", "好的，谢谢！", 0.98},
			})
		},
		// Wang Xiaoming: app profile, a web chat with a different e-mail: an e-mail conflict.
		func() error {
			return p.app(ctx, Wang, []map[string]any{
				profile("a-wxm-1", at(5), map[string]any{"name": Wang.Name, "phone": Wang.Phone, "email": Wang.Email, "vip_level": 3, "tags": []string{"vip", "repeat-buyer"}}),
				message("a-wxm-2", at(6), "app-wxm-1", "inbound", "text", "Can I change the delivery address of my last order?"),
				agentMessage("a-wxm-3", at(7), "app-wxm-1", "agent-12", "Sure — what is the new address?"),
			})
		},
		func() error {
			return p.web(ctx, Wang, "v-wxm-19c2", []map[string]any{
				profile("w-wxm-1", at(30), map[string]any{"email": "wxm1990@example.net"}),
				message("w-wxm-2", at(31), "web-wxm-1", "inbound", "text", "Please send the invoice to my new e-mail."),
			})
		},
		// 张伟: web and a call; the CRM sets his VIP level and e-mail (the CRM outranks every channel).
		func() error {
			return p.web(ctx, ZhangWei, "v-zw-88aa", []map[string]any{
				profile("w-zw-1", at(10), map[string]any{"name": ZhangWei.Name, "phone": ZhangWei.Phone, "email": "zw@example.org"}),
				message("w-zw-2", at(11), "web-zw-1", "inbound", "text", "发票抬头需要改成公司名称。"),
				agentMessage("w-zw-3", at(12), "web-zw-1", "agent-03", "好的，请把公司全称和税号发给我。"),
			})
		},
		func() error {
			return p.crm(ctx, ZhangWei, t0.Add(50*time.Minute), &events.Profile{Email: ptr(ZhangWei.Email), VIPLevel: ptr[int32](5), Tags: []string{"enterprise"}})
		},
		func() error {
			return p.call(ctx, ZhangWei, "call-demo-zw-1", "outbound", at(60), at(62), [][3]any{
				{"agent", "张先生您好，您的发票已经重新开具。", 0.96},
				{"callee", "收到了，谢谢。", 0.94},
			})
		},
		// Emily Chen: app and an outbound call.
		func() error {
			return p.app(ctx, EmilyChen, []map[string]any{
				profile("a-ec-1", at(15), map[string]any{"name": EmilyChen.Name, "phone": EmilyChen.Phone, "email": EmilyChen.Email, "birthday": "1992-04-18"}),
				message("a-ec-2", at(16), "app-ec-1", "inbound", "text", "My parcel shows delivered but I did not get it."),
			})
		},
		func() error {
			return p.call(ctx, EmilyChen, "call-demo-ec-1", "outbound", at(70), at(74), [][3]any{
				{"agent", "Hi Emily, this is Omni support calling about your parcel.", 0.95},
				{"callee", "Hi! Yes, the tracking says delivered yesterday.", 0.9},
				{"agent", "The courier left it at the reception desk; I have sent you the photo.", 0.93},
			})
		},
		// David Li: the app corrects the order number the web gave; the web then insists on another one: the
		// web ranks below the app, so its write waits for review.
		func() error {
			return p.web(ctx, DavidLi, "v-dl-0b1e", []map[string]any{
				profile("w-dl-1", at(25), map[string]any{"name": DavidLi.Name, "email": DavidLi.Email, "attributes": map[string]string{"order_no": "SO-2026-1121-0007"}}),
				message("w-dl-2", at(26), "web-dl-1", "inbound", "text", "Where is order SO-2026-1121-0007?"),
			})
		},
		func() error {
			return p.app(ctx, DavidLi, []map[string]any{
				profile("a-dl-1", at(35), map[string]any{"phone": DavidLi.Phone, "attributes": map[string]string{"order_no": "SO-2026-1121-0009"}}),
			})
		},
		func() error {
			return p.web(ctx, DavidLi, "v-dl-0b1e", []map[string]any{
				profile("w-dl-3", at(45), map[string]any{"attributes": map[string]string{"order_no": "SO-2026-1121-0011"}}),
			})
		},
		// 陈静 first writes to the official account and from the
		// mini-program (the unionid in both pushes makes them one customer),
		// the CRM writes her member profile, she chats in the app, types
		// another e-mail on the web (the CRM outranks the web: a conflict)
		// and calls: every channel on one customer.
		func() error {
			return p.wechatText(ctx, ChenJing.WeChat.OpenID, ChenJing.WeChat.UnionID, t0.Add(55*time.Minute), "你好，我想查一下会员积分。")
		},
		func() error {
			return p.miniText(ctx, ChenJing.WeChat.MiniOpenID, ChenJing.WeChat.UnionID, t0.Add(57*time.Minute), "小程序里怎么兑换优惠券？")
		},
		func() error {
			// A CRM connector writes to Kafka directly: it normalises the
			// number as the channels do.
			phone, err := normalize.Phone("phone", ChenJing.Phone)
			if err != nil {
				return err
			}
			return p.crm(ctx, ChenJing, t0.Add(64*time.Minute), &events.Profile{Name: ptr(ChenJing.Name), Phone: &phone,
				Email: ptr(ChenJing.Email), VIPLevel: ptr[int32](2), Tags: []string{"member"}})
		},
		func() error {
			return p.app(ctx, ChenJing, []map[string]any{
				message("a-cj-1", at(86), "app-cj-1", "inbound", "text", "兑换优惠券的时候提示积分不足，可我有 3000 积分。"),
				agentMessage("a-cj-2", at(87), "app-cj-1", "agent-05", "陈女士您好，我帮您查一下积分明细。"),
			})
		},
		func() error {
			return p.web(ctx, ChenJing, "v-cj-5d21", []map[string]any{
				profile("w-cj-1", at(90), map[string]any{"email": "jing.chen@example.net"}),
				message("w-cj-2", at(91), "web-cj-1", "inbound", "text", "积分明细请发到我的新邮箱。"),
			})
		},
		func() error {
			return p.call(ctx, ChenJing, "call-demo-cj-1", "inbound", at(95), at(97), [][3]any{
				{"agent", "您好，陈女士，请问有什么可以帮您？", 0.96},
				{"caller", "我在小程序里兑换优惠券没有成功。", 0.91},
				{"agent", "积分已经退回到您的账户，您可以再试一次。", 0.94},
				{"caller", "好的，谢谢！", 0.98},
			})
		},
	}
	// 刘洋: the identity graph makes one customer of the official account,
	// the mini-program, an app account and his calls.
	ly := LiuYang.WeChat
	steps = append([]func() error{
		func() error {
			return p.wechatText(ctx, ly.OpenID, ly.UnionID, t0.Add(-40*time.Minute), "你好，请问门店几点开门？")
		},
		func() error {
			return p.miniText(ctx, ly.MiniOpenID, ly.UnionID, t0.Add(-38*time.Minute), "小程序下单可以到店自提吗？")
		},
		// 陈静's number calls before the call centre knows it: a customer of
		// its own. When the call centre later names her for that number, the
		// two may be one person; numbers are recycled, so the policy only
		// suggests the merge: it waits in the review queue for an agent.
		func() error {
			return p.callFrom(ctx, "", ChenJing.Phone, "call-demo-cj-0", at(-60), at(-58), [][3]any{
				{"agent", "您好，这里是 omnisync 客服中心。", 0.96},
				{"caller", "我想问一下会员积分怎么查。", 0.9},
			})
		},
	}, steps...)
	steps = append(steps,
		func() error {
			return p.appLogin(ctx, LiuYang, false, []map[string]any{
				message("a-ly-1", at(30), "app-ly-1", "inbound", "text", "App 里怎么绑定微信？"),
			})
		},
		func() error {
			return p.appLogin(ctx, LiuYang, true, []map[string]any{
				profile("a-ly-2", at(80), map[string]any{"name": LiuYang.Name, "phone": LiuYang.Phone}),
				message("a-ly-3", at(81), "app-ly-2", "inbound", "text", "已经用微信登录了，到店自提要带什么？"),
				agentMessage("a-ly-4", at(82), "app-ly-2", "agent-05", "刘先生您好，带上取货码即可。"),
			})
		},
		func() error {
			return p.callFrom(ctx, "", LiuYang.Phone, "call-demo-ly-1", at(100), at(102), [][3]any{
				{"agent", "您好，请问有什么可以帮您？", 0.96},
				{"caller", "我想确认一下自提的时间。", 0.92},
				{"agent", "门店上午十点到晚上九点都可以取。", 0.95},
			})
		},
		func() error {
			return p.wechatText(ctx, ly.OpenID, "", t0.Add(120*time.Minute), "好的，谢谢！")
		},
	)
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

var tricklePool = []string{
	"请问今天下单明天能到吗？", "Is there a discount for members?", "我想开发票。", "The app keeps logging me out.",
	"能帮我改一下收货地址吗？", "Thanks, that solved it!", "退款什么时候到账？", "Can I pick it up in store?",
}

// trickle sends the nth message of the ongoing traffic: from named
// customers only, by web, app, the official account and the mini-program
// in turn.
func (p *player) trickle(ctx context.Context, n int) error {
	now := time.Now()
	text := tricklePool[rand.IntN(len(tricklePool))]
	id := "t-" + strconv.FormatInt(now.UnixNano(), 36)
	c := Customers[rand.IntN(len(Customers))]
	fan := ChenJing.WeChat
	switch n % 4 {
	case 0:
		return p.web(ctx, c, "v-"+c.CRMID, []map[string]any{message(id, now.Format(time.RFC3339Nano), "web-live-"+c.CRMID, "inbound", "text", text)})
	case 1:
		return p.app(ctx, c, []map[string]any{message(id, now.Format(time.RFC3339Nano), "app-live-"+c.CRMID, "inbound", "text", text)})
	case 2:
		return p.wechatText(ctx, fan.OpenID, fan.UnionID, now, text)
	default:
		return p.miniText(ctx, fan.MiniOpenID, fan.UnionID, now, text)
	}
}

func profile(id, at string, fields map[string]any) map[string]any {
	return map[string]any{"type": "profile", "id": id, "occurred_at": at, "profile": fields}
}

func message(id, at, conversation, direction, contentType, text string) map[string]any {
	return map[string]any{"type": "message", "id": id, "occurred_at": at, "conversation_id": conversation,
		"direction": direction, "content_type": contentType, "text": text}
}

func agentMessage(id, at, conversation, agent, text string) map[string]any {
	m := message(id, at, conversation, "outbound", "text", text)
	m["sender"] = map[string]any{"type": "agent", "id": agent}
	return m
}

// web posts as the customer logged in on the web site: the site's backend
// signs the customer ID with the web channel's identity secret.
func (p *player) web(ctx context.Context, c Customer, visitor string, evs []map[string]any) error {
	web := p.cfg.Credentials.Channels.Web
	return p.postJSON(ctx, "/ingest/web", web.Key, map[string]any{"visitor_id": visitor, "customer_id": c.ID(),
		"customer_hash": ingest.SignClaim(web.IdentitySecret, "customer_id", c.ID()), "events": evs})
}

// app posts as the customer logged in to the app, login signed likewise.
func (p *player) app(ctx context.Context, c Customer, evs []map[string]any) error {
	app := p.cfg.Credentials.Channels.App
	return p.postJSON(ctx, "/ingest/app", app.Key, map[string]any{
		"device_id": c.Device, "user_id": c.User, "user_hash": ingest.SignClaim(app.IdentitySecret, "user_id", c.User),
		"customer_id": c.ID(), "customer_hash": ingest.SignClaim(app.IdentitySecret, "customer_id", c.ID()),
		"app_version": "5.2.1", "platform": "ios", "events": evs})
}

// appLogin posts as c logged in to the app without naming the customer:
// the app user, and with WeChat, the unionid and the number verified by
// SMS, all signed by the backend; the identity graph finds the customer.
func (p *player) appLogin(ctx context.Context, c Customer, withWeChat bool, evs []map[string]any) error {
	app := p.cfg.Credentials.Channels.App
	body := map[string]any{
		"device_id": c.Device, "user_id": c.User, "user_hash": ingest.SignClaim(app.IdentitySecret, "user_id", c.User),
		"app_version": "5.2.1", "platform": "ios", "events": evs}
	if withWeChat {
		phone, err := normalize.Phone("phone", c.Phone)
		if err != nil {
			return err
		}
		body["phone"], body["phone_hash"] = phone, ingest.SignClaim(app.IdentitySecret, "phone", phone)
		body["wechat_unionid"] = c.WeChat.UnionID
		body["wechat_unionid_hash"] = ingest.SignClaim(app.IdentitySecret, "wechat_unionid", c.WeChat.UnionID)
	}
	return p.postJSON(ctx, "/ingest/app", app.Key, body)
}

// call posts a transcript of a call with c's number; the call centre's
// system names the customer (it looked the caller up), as a CTI does.
func (p *player) call(ctx context.Context, c Customer, callID, direction, start, end string, turns [][3]any) error {
	caller, callee := c.Phone, "4008001234"
	if direction == "outbound" {
		caller, callee = callee, c.Phone
	}
	return p.postCall(ctx, c.ID(), callID, direction, caller, callee, start, end, turns)
}

// callFrom posts an inbound call from number; customerID is "" when the
// call centre did not recognise the caller (the number finds the customer).
func (p *player) callFrom(ctx context.Context, customerID, number, callID, start, end string, turns [][3]any) error {
	return p.postCall(ctx, customerID, callID, "inbound", number, "4008001234", start, end, turns)
}

func (p *player) postCall(ctx context.Context, customerID, callID, direction, caller, callee, start, end string, turns [][3]any) error {
	var segs []map[string]any
	ms := 0
	for _, t := range turns {
		text := t[1].(string)
		dur := 1200 + 180*len([]rune(text))
		segs = append(segs, map[string]any{"speaker": t[0], "start_ms": ms, "end_ms": ms + dur, "text": text, "confidence": t[2]})
		ms += dur + 400
	}
	call := map[string]any{"call_id": callID, "direction": direction, "caller": caller, "callee": callee, "agent_id": "agent-07",
		"started_at": start, "ended_at": end, "segments": segs}
	if customerID != "" {
		call["customer_id"] = customerID
	}
	return p.postJSON(ctx, "/ingest/phone", p.cfg.Credentials.Channels.Phone.Key, call)
}

// crm publishes the CRM's edit of c's profile, as a CRM connector would:
// straight to Kafka, with the CRM ID (and a WeChat customer's unionid,
// which the membership programme bound) as verified identities.
func (p *player) crm(ctx context.Context, c Customer, at time.Time, profile *events.Profile) error {
	ids := []events.Identity{{Kind: "crm", Value: c.CRMID, Verified: true}}
	if c.WeChat != nil {
		ids = append(ids, events.Identity{Kind: "wechat_unionid", Value: c.WeChat.UnionID, Verified: true})
	}
	ev := &events.CustomerEvent{
		EventID:    ingest.EventID(events.ChannelCRM, ingest.SenderKey(c.ID(), ids), "crm-edit-"+c.CRMID+"-"+strconv.FormatInt(at.Unix(), 10), at),
		CustomerID: c.ID(), Channel: events.ChannelCRM, Source: "crm/demo", Op: events.OpUpsert,
		OccurredAt: at.UTC(), IngestedAt: time.Now().UTC(),
		Identities: ids,
		Profile:    profile,
	}
	return p.cfg.CRM.Publish(ctx, ev)
}

func ptr[T any](v T) *T { return &v }

// wechatText posts a text push to the official account; unionid, when
// not empty, is added as a third-party platform adds it.
func (p *player) wechatText(ctx context.Context, openid, unionid string, at time.Time, text string) error {
	var union string
	if unionid != "" {
		union = "<UnionId><![CDATA[" + unionid + "]]></UnionId>"
	}
	body := fmt.Sprintf(`<xml><ToUserName><![CDATA[gh_omnisync_demo]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName>%s`+
		`<CreateTime>%d</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[%s]]></Content><MsgId>%d</MsgId></xml>`,
		openid, union, at.Unix(), text, at.UnixNano()/1000)
	envelope := func(encrypt string) []byte {
		return []byte("<xml><ToUserName><![CDATA[gh_omnisync_demo]]></ToUserName><Encrypt><![CDATA[" + encrypt + "]]></Encrypt></xml>")
	}
	return p.postPush(ctx, "/ingest/wechat", p.cfg.Credentials.Channels.WeChat, "text/xml", []byte(body), envelope)
}

func (p *player) miniText(ctx context.Context, openid, unionid string, at time.Time, text string) error {
	push := map[string]any{"ToUserName": "gh_omnisync_mini", "FromUserName": openid, "CreateTime": at.Unix(),
		"MsgType": "text", "Content": text, "MsgId": at.UnixNano() / 1000}
	if unionid != "" {
		push["UnionId"] = unionid
	}
	body, _ := json.Marshal(push)
	envelope := func(encrypt string) []byte {
		b, _ := json.Marshal(map[string]string{"ToUserName": "gh_omnisync_mini", "Encrypt": encrypt})
		return b
	}
	return p.postPush(ctx, "/ingest/miniprogram", p.cfg.Credentials.Channels.MiniProgram, "application/json", body, envelope)
}

func (p *player) postJSON(ctx context.Context, path, key string, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return p.post(ctx, path, map[string]string{"Authorization": "Bearer " + key, "Content-Type": "application/json"}, body)
}

// postPush posts a WeChat push signed as WeChat signs it: encrypted in
// safe mode when the account has an EncodingAESKey (envelope wraps the
// ciphertext in the channel's format), plain text otherwise.
func (p *player) postPush(ctx context.Context, path string, cred ingest.WeChatCredential, contentType string, push []byte, envelope func(encrypt string) []byte) error {
	ts, nonce := strconv.FormatInt(time.Now().Unix(), 10), strconv.Itoa(rand.IntN(1_000_000_000))
	q := url.Values{"signature": {wechat.Sign(cred.Token, ts, nonce)}, "timestamp": {ts}, "nonce": {nonce}}
	body := push
	if cred.EncodingAESKey != "" {
		c, err := wxcrypt.New(cred.EncodingAESKey, cred.AppID)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		encrypt := c.Encrypt(push)
		q.Set("encrypt_type", "aes")
		q.Set("msg_signature", wxcrypt.MsgSignature(cred.Token, ts, nonce, encrypt))
		body = envelope(encrypt)
	}
	return p.post(ctx, path+"?"+q.Encode(), map[string]string{"Content-Type": contentType}, body)
}

// post sends one request, retrying with the retry policy for up to 10 s
// while the answer is 503.
func (p *player) post(ctx context.Context, path string, headers map[string]string, body []byte) error {
	retryCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := retry.Do(retryCtx, p.cfg.Logger, "POST "+path, func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.cfg.BaseURL+path, bytes.NewReader(body))
		if err != nil {
			return retry.Permanent(err)
		}
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := p.http.Do(req)
		if err != nil {
			return retry.Permanent(err)
		}
		answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		err = fmt.Errorf("POST %s: %s: %s", path, resp.Status, bytes.TrimSpace(answer))
		switch {
		case resp.StatusCode/100 == 2:
			return nil
		case resp.StatusCode == http.StatusServiceUnavailable:
			return err
		}
		return retry.Permanent(err)
	})
	if retry.IsPermanent(err) {
		return errors.Unwrap(err)
	}
	return err
}
