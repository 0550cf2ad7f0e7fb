package producers_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/ksuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/pkg/wxcrypt"
	"github.com/omnisync/omnisync/producers"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/producers/wechat"
	"github.com/omnisync/omnisync/schemas"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func testCredentials() ingest.Credentials {
	var c ingest.Credentials
	c.Channels.Web.Key, c.Channels.App.Key, c.Channels.Phone.Key = "web-key", "app-key", "phone-key"
	c.Channels.Web.IdentitySecret, c.Channels.App.IdentitySecret = "web-identity-secret", "app-identity-secret"
	c.Channels.WeChat = ingest.WeChatCredential{AppID: "wx-test-oa", Token: "wechat-token"}
	c.Channels.MiniProgram = ingest.WeChatCredential{AppID: "wx-test-mp", Token: "mp-token"}
	return c
}

type env struct {
	k     testenv.Kafka
	serde *codec.Serde
	url   string
	cl    *kgo.Client
	p     *ingest.Pipeline
	dir   *ingest.Directory
	// from is where the messages topic ended when the test began: the
	// test reads its own messages only, not every other test's; dlqFrom
	// likewise for the dead-letter topic.
	from, dlqFrom map[int32]kgo.Offset
}

func start(t *testing.T, k testenv.Kafka) *env {
	t.Helper()
	return startWith(t, k, testCredentials())
}

func startWith(t *testing.T, k testenv.Kafka, creds ingest.Credentials) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cl, err := kafka.NewClient(k.Config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if _, err := kafka.Provision(ctx, kadm.NewClient(cl), kafka.DefaultLayout.Topics()); err != nil {
		t.Fatal(err)
	}
	reg, _ := testenv.Registry(t)
	serde, err := codec.New(ctx, reg)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := ingest.NewDirectory(k.Config(), serde, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	go dir.Run(ctx)
	<-dir.Ready()
	p := ingest.New(ingest.Config{Client: cl, Serde: serde, Directory: dir, Logger: zaptest.NewLogger(t), Metrics: ingest.NewMetrics(prometheus.NewRegistry())})
	mux := http.NewServeMux()
	if err := producers.Mount(mux, p, creds, "all"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	from := testenv.EndOffsets(t, cl, schemas.CustomerMessagesTopic, schemas.DeadLetterTopic)
	return &env{k: k, serde: serde, url: srv.URL, cl: cl, p: p, dir: dir, from: from[schemas.CustomerMessagesTopic], dlqFrom: from[schemas.DeadLetterTopic]}
}

// messages returns the messages of customers whose sender is senderID,
// checking each is keyed by its customer ID on the murmur2 partition. It
// reads each partition up to its end offset when called (other tests
// write to the shared topic meanwhile: counting records would stop early
// on a busy partition and miss ours on another).
func (e *env) messages(t *testing.T, senderID string) []events.MessageEvent {
	t.Helper()
	ctx := context.Background()
	ends, err := kadm.NewClient(e.cl).ListEndOffsets(ctx, schemas.CustomerMessagesTopic)
	if err != nil {
		t.Fatal(err)
	}
	behind := map[int32]int64{} // partition → end offset not yet reached
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > e.from[o.Partition].EpochOffset().Offset {
			behind[o.Partition] = o.Offset
		}
	})
	c, err := kafka.NewClient(e.k.Config(), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{schemas.CustomerMessagesTopic: e.from}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var out []events.MessageEvent
	for len(behind) > 0 {
		fs := c.PollFetches(pctx)
		if pctx.Err() != nil {
			t.Fatalf("partitions %v of %s not read to their end", behind, schemas.CustomerMessagesTopic)
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := behind[r.Partition]
			if !ok || r.Offset >= end {
				return // written after the call
			}
			if r.Offset+1 >= end {
				delete(behind, r.Partition)
			}
			var m events.MessageEvent
			if err := e.serde.Decode(ctx, r.Value, &m); err != nil || m.SenderID != senderID {
				return
			}
			if string(r.Key) != m.CustomerID || r.Partition != testenv.PartitionFor(m.CustomerID, int32(len(ends.Offsets()[schemas.CustomerMessagesTopic]))) {
				t.Errorf("message keyed %q on partition %d; want its customer %q on murmur2's partition", r.Key, r.Partition, m.CustomerID)
			}
			out = append(out, m)
		})
	}
	return out
}

// signedURL signs a push URL with a fresh nonce, as WeChat does for each
// push (its re-sends of one push reuse the URL).
func signedURL(base, path, token string, extra string) string {
	ts, nonce := fmt.Sprint(time.Now().Unix()), ksuid.New().String()
	return fmt.Sprintf("%s%s?signature=%s&timestamp=%s&nonce=%s%s", base, path, wechat.Sign(token, ts, nonce), ts, nonce, extra)
}

func post(t *testing.T, url, contentType, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A WeChat push and its re-send (same MsgId) make one event in Kafka; the
// mini-program push carrying the same unionid lands on the same customer.
func TestWeChatResendAndUnionIDLinking(t *testing.T) {
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		e := start(t, k)
		openid := testenv.UniqueName(t, "o")
		unionid := testenv.UniqueName(t, "u")
		now := time.Now().Unix()
		xml := fmt.Sprintf(`<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName>`+
			`<CreateTime>%d</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[我的快递到哪了？]]></Content>`+
			`<MsgId>%d</MsgId><UnionId><![CDATA[%s]]></UnionId></xml>`, openid, now, now*1000+7, unionid)
		push := signedURL(e.url, "/ingest/wechat", "wechat-token", "")
		for i := range 3 { // WeChat re-sends up to three times, with the same URL
			code, body := post(t, push, "text/xml", xml)
			if code != 200 || body != "success" {
				t.Fatalf("push %d: %d %q", i, code, body)
			}
		}
		got := e.messages(t, openid)
		if len(got) != 1 {
			t.Fatalf("%d events for one push and two re-sends, want 1", len(got))
		}

		mpOpenid := testenv.UniqueName(t, "mp")
		js := fmt.Sprintf(`{"ToUserName":"gh_mp","FromUserName":%q,"CreateTime":%d,"MsgType":"text","Content":"hello","MsgId":%d,"UnionId":%q}`,
			mpOpenid, now, now*1000+8, unionid)
		if code, body := post(t, signedURL(e.url, "/ingest/miniprogram", "mp-token", ""), "application/json", js); code != 200 {
			t.Fatalf("mini-program push: %d %s", code, body)
		}
		mp := e.messages(t, mpOpenid)
		if len(mp) != 1 || mp[0].CustomerID != got[0].CustomerID {
			t.Fatalf("mini-program message on customer %v, WeChat message on %s: the unionid should link them", mp, got[0].CustomerID)
		}
	})
}

// The GET handshake echoes echostr only with a valid signature.
func TestWeChatHandshake(t *testing.T) {
	e := start(t, testenv.Embedded(t, ""))
	resp, err := http.Get(signedURL(e.url, "/ingest/wechat", "wechat-token", "&echostr=abc123"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "abc123" {
		t.Fatalf("handshake: %d %q", resp.StatusCode, b)
	}
	resp, _ = http.Get(signedURL(e.url, "/ingest/wechat", "wrong-token", "&echostr=abc123"))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("handshake with a wrong signature: %d", resp.StatusCode)
	}
}

func postJSON(t *testing.T, url, key, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The web, app and phone examples arrive in Kafka, decode, and sit on the
// partition murmur2 gives for their customer. A signed app login lands on
// the customer it names; the phone number typed into the app profile is
// only a claim, so a call from that number lands on the caller's own
// customer, and a second call from it on the same one.
func TestWebAppPhoneChannelsEndToEnd(t *testing.T) {
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		e := start(t, k)
		u := testenv.UniqueName(t, "x")
		phoneNumber := fmt.Sprintf("+86139%08d", time.Now().UnixNano()%1e8)
		customer := "cus_" + u

		app := fmt.Sprintf(`{"device_id":"d-%s","user_id":"u-%s","customer_id":%q,"customer_hash":%q,"app_version":"5.2.1","platform":"android","events":[
			{"type":"profile","id":"p-%s","occurred_at":"2026-11-22T09:10:00+08:00","profile":{"name":"王小明","phone":%q}},
			{"type":"message","id":"m-%s","occurred_at":"2026-11-22T09:10:12+08:00","text":"我要改地址"}]}`,
			u, u, customer, ingest.SignClaim("app-identity-secret", "customer_id", customer), u, phoneNumber, u)
		if code, body := postJSON(t, e.url+"/ingest/app", "app-key", app); code != 200 {
			t.Fatalf("app: %d %s", code, body)
		}
		web := fmt.Sprintf(`{"visitor_id":"v-%s","events":[{"type":"message","id":"w-%s","occurred_at":"2026-11-22T09:20:00+08:00","text":"hello"}]}`, u, u)
		if code, body := postJSON(t, e.url+"/ingest/web", "web-key", web); code != 200 {
			t.Fatalf("web: %d %s", code, body)
		}
		call := func(n int) string {
			return fmt.Sprintf(`{"call_id":"call-%s-%d","direction":"inbound","caller":%q,"callee":"4008001234","agent_id":"agent-17",
			"started_at":"2026-11-22T10:00:00+08:00","ended_at":"2026-11-22T10:01:00+08:00","segments":[
			{"speaker":"agent","start_ms":0,"end_ms":2000,"text":"您好","confidence":0.9},
			{"speaker":"caller","start_ms":2500,"end_ms":6000,"text":"我想查询订单","confidence":0.8}]}`, u, n, phoneNumber)
		}
		for n := range 2 {
			if code, body := postJSON(t, e.url+"/ingest/phone", "phone-key", call(n)); code != 200 {
				t.Fatalf("phone: %d %s", code, body)
			}
		}
		if code, _ := postJSON(t, e.url+"/ingest/phone", "web-key", call(0)); code != http.StatusUnauthorized {
			t.Fatalf("phone with the web key: %d", code)
		}

		if got := e.messages(t, "u-"+u); len(got) != 1 || got[0].CustomerID != customer || got[0].Channel != events.ChannelApp {
			t.Fatalf("app messages %+v", got)
		}
		if got := e.messages(t, "v-"+u); len(got) != 1 || got[0].CustomerID != ingest.CustomerIDFor(events.Identity{Kind: "web_visitor", Value: "v-" + u}) {
			t.Fatalf("web messages %+v", got)
		}
		caller := e.messages(t, phoneNumber)
		callerID := ingest.CustomerIDFor(events.Identity{Kind: "phone", Value: phoneNumber})
		if len(caller) != 2 || caller[0].Transcript == nil || caller[0].Transcript.Segment != 1 {
			t.Fatalf("the caller's transcript segments: %+v", caller)
		}
		for _, m := range caller {
			if m.CustomerID != callerID {
				t.Fatalf("call segment on %s, want the caller's own customer %s (the app profile's phone is only a claim)", m.CustomerID, callerID)
			}
		}
	})
}

// A captured push URL cannot carry another body: the pipeline answers 401
// and produces nothing; in safe mode the encrypted push is taken and a
// plain one refused.
func TestWeChatReplayAndSafeMode(t *testing.T) {
	k := testenv.Embedded(t, "")
	openid := testenv.UniqueName(t, "o")
	now := time.Now().Unix()
	xml := func(openid string, msgID int64, text string) string {
		return fmt.Sprintf(`<xml><ToUserName>gh_test</ToUserName><FromUserName>%s</FromUserName><CreateTime>%d</CreateTime>`+
			`<MsgType>text</MsgType><Content>%s</Content><MsgId>%d</MsgId></xml>`, openid, now, text, msgID)
	}
	ts := fmt.Sprint(now)
	query := func(token, nonce string) string {
		return fmt.Sprintf("?signature=%s&timestamp=%s&nonce=%s", wechat.Sign(token, ts, nonce), ts, nonce)
	}

	e := start(t, k)
	captured := e.url + "/ingest/wechat" + query("wechat-token", testenv.UniqueName(t, "n"))
	if code, body := post(t, captured, "text/xml", xml(openid, now*1000+1, "real")); code != 200 || body != "success" {
		t.Fatalf("push: %d %q", code, body)
	}
	if code, body := post(t, captured, "text/xml", xml(openid, now*1000+2, "forged")); code != http.StatusUnauthorized || !strings.Contains(body, "already used") {
		t.Fatalf("the captured URL with another body: %d %s, want 401", code, body)
	}
	if got := e.messages(t, openid); len(got) != 1 || *got[0].Text != "real" {
		t.Fatalf("messages %+v, want the real one only", got)
	}

	creds := testCredentials()
	creds.Channels.WeChat.EncodingAESKey = wxcrypt.NewKey()
	e = startWith(t, k, creds)
	c, err := wxcrypt.New(creds.Channels.WeChat.EncodingAESKey, creds.Channels.WeChat.AppID)
	if err != nil {
		t.Fatal(err)
	}
	safeOpenid := testenv.UniqueName(t, "o")
	nonce := testenv.UniqueName(t, "n")
	enc := c.Encrypt([]byte(xml(safeOpenid, now*1000+3, "encrypted")))
	u := e.url + "/ingest/wechat" + query("wechat-token", nonce) + "&encrypt_type=aes&msg_signature=" + wxcrypt.MsgSignature("wechat-token", ts, nonce, enc)
	if code, body := post(t, u, "text/xml", "<xml><ToUserName>gh_test</ToUserName><Encrypt><![CDATA["+enc+"]]></Encrypt></xml>"); code != 200 || body != "success" {
		t.Fatalf("encrypted push: %d %q", code, body)
	}
	if code, body := post(t, e.url+"/ingest/wechat"+query("wechat-token", testenv.UniqueName(t, "n")), "text/xml", xml(safeOpenid, now*1000+4, "plain")); code != http.StatusUnauthorized {
		t.Fatalf("plain push with a key configured: %d %s, want 401", code, body)
	}
	if got := e.messages(t, safeOpenid); len(got) != 1 || *got[0].Text != "encrypted" {
		t.Fatalf("messages %+v, want the encrypted one only", got)
	}
}
