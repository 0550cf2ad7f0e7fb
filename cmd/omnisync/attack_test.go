package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omnisync/omnisync/api"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/wxcrypt"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/producers/wechat"
)

// answer is an HTTP answer as an attacker sees it.
type answer struct {
	code   int
	header http.Header
	body   string
}

// field is the "field" of a JSON error answer.
func (a answer) field() string {
	var e struct {
		Field string `json:"field"`
	}
	_ = json.Unmarshal([]byte(a.body), &e)
	return e.Field
}

// deadLetter is the "dead_letter_id" of a JSON error answer.
func (a answer) deadLetter() string {
	var e struct {
		ID string `json:"dead_letter_id"`
	}
	_ = json.Unmarshal([]byte(a.body), &e)
	return e.ID
}

func send(t *testing.T, method, target string, header map[string]string, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func bearer(key string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + key, "Content-Type": "application/json"}
}

// TestAttacks runs `omnisync dev` and attacks it as a hostile client or a
// broken one would, on every endpoint; each attack gets its clear error
// and nothing it sent is stored on, or alters, an existing customer.
func TestAttacks(t *testing.T) {
	root := t.TempDir()
	dataDir := filepath.Join(root, "data")
	dev := startDev(t, dataDir, [3]string{testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)}, nil,
		"--rate-limit", "100", "--rate-burst", "100")
	web, creds := dev.credentials.Channels.Web, dev.credentials
	now := time.Now().UTC().Format(time.RFC3339)

	// The victim: logged in on the web site (the backend signed the
	// customer ID), with a name and a phone number on the profile.
	victim := "cus_victim"
	victimPhone := fmt.Sprintf("+86138%08d", time.Now().UnixNano()%1e8)
	login := fmt.Sprintf(`{"visitor_id":"v-victim","customer_id":%q,"customer_hash":%q,"events":[
		{"type":"profile","id":"p-1","occurred_at":%q,"profile":{"name":"Victim","phone":%q}},
		{"type":"message","id":"m-1","occurred_at":%q,"text":"我的订单"}]}`,
		victim, ingest.SignClaim(web.IdentitySecret, "customer_id", victim), now, victimPhone, now)
	if a := send(t, http.MethodPost, dev.http+"/ingest/web", bearer(web.Key), login); a.code != 200 {
		t.Fatalf("victim's login: %d %s", a.code, a.body)
	}
	// The profile and the message travel on two topics and may be folded
	// in two batches: wait for both (a message is stored in the batch that
	// folds it into the record).
	var before api.Customer
	eventually(t, "the victim's record and message", func() string {
		if dev.get(t, "/api/v1/customers/"+victim, &before) != http.StatusOK || before.Fields["name"].Value == nil {
			return "the profile is not materialized yet"
		}
		if len(dev.timeline(t, victim)) != 1 {
			return "the message is not materialized yet"
		}
		return ""
	})
	if dev.get(t, "/api/v1/customers/"+victim, &before) != http.StatusOK {
		t.Fatal("the victim's record is gone")
	}
	beforeTimeline := len(dev.timeline(t, victim))

	// The attacks on identity: each is either refused or lands on the
	// attacker's own anonymous customer.
	mallory := "v-mallory"
	takeover := fmt.Sprintf(`{"visitor_id":%q,"events":[
		{"type":"profile","id":"p-1","occurred_at":%q,"profile":{"name":"Mallory","phone":%q}},
		{"type":"message","id":"m-1","occurred_at":%q,"text":"改一下我的收货地址"}]}`, mallory, now, victimPhone, now)
	if a := send(t, http.MethodPost, dev.http+"/ingest/web", bearer(web.Key), takeover); a.code != 200 {
		t.Fatalf("the visitor's own profile: %d %s", a.code, a.body)
	}
	unsigned := fmt.Sprintf(`{"visitor_id":%q,"customer_id":%q,"events":[{"type":"message","id":"m-2","occurred_at":%q,"text":"hi"}]}`, mallory, victim, now)
	if a := send(t, http.MethodPost, dev.http+"/ingest/web", bearer(web.Key), unsigned); a.code != http.StatusBadRequest || a.field() != "customer_hash" || a.deadLetter() == "" {
		t.Errorf("a customer_id without customer_hash: %d %s; want 400 naming customer_hash, with a dead letter", a.code, a.body)
	}
	// Two visitors, one client event ID, one second: both are kept.
	for _, v := range []string{"v-twin-a", "v-twin-b"} {
		body := fmt.Sprintf(`{"visitor_id":%q,"events":[{"type":"message","id":"m-1","occurred_at":%q,"text":"from %s"}]}`, v, now, v)
		if a := send(t, http.MethodPost, dev.http+"/ingest/web", bearer(web.Key), body); a.code != 200 {
			t.Fatalf("%s: %d %s", v, a.code, a.body)
		}
	}
	visitorCustomer := func(v string) string { return ingest.CustomerIDFor(events.Identity{Kind: "web_visitor", Value: v}) }
	eventually(t, "the attacker's and the twins' own customers", func() string {
		for _, v := range []string{mallory, "v-twin-a", "v-twin-b"} {
			var c api.Customer
			if dev.get(t, "/api/v1/customers/"+visitorCustomer(v), &c) != http.StatusOK {
				return v + "'s customer not materialized"
			}
			if n := len(dev.timeline(t, c.ID)); n != 1 {
				return fmt.Sprintf("%s's customer has %d messages, want 1", v, n)
			}
		}
		return ""
	})

	// WeChat: dev runs in safe mode, so a plain push is refused, and a
	// signed URL replayed with another body is refused.
	oa := creds.Channels.WeChat
	t.Run("WeChat push in plain text to a safe-mode account: 401", func(t *testing.T) {
		ts, nonce := fmt.Sprint(time.Now().Unix()), "plain-1"
		q := url.Values{"signature": {wechat.Sign(oa.Token, ts, nonce)}, "timestamp": {ts}, "nonce": {nonce}}
		xml := fmt.Sprintf(`<xml><ToUserName>gh_x</ToUserName><FromUserName>o-mallory</FromUserName><CreateTime>%s</CreateTime><MsgType>text</MsgType><Content>hi</Content><MsgId>1</MsgId></xml>`, ts)
		if a := send(t, http.MethodPost, dev.http+"/ingest/wechat?"+q.Encode(), map[string]string{"Content-Type": "text/xml"}, xml); a.code != http.StatusUnauthorized {
			t.Errorf("%d %s", a.code, a.body)
		}
	})
	t.Run("WeChat signed URL replayed with another body: 401", func(t *testing.T) {
		crypter, err := wxcrypt.New(oa.EncodingAESKey, oa.AppID)
		if err != nil {
			t.Fatal(err)
		}
		ts, nonce := fmt.Sprint(time.Now().Unix()), "replay-1"
		push := func(text string) answer {
			xml := fmt.Sprintf(`<xml><ToUserName>gh_x</ToUserName><FromUserName>o-fan</FromUserName><CreateTime>%s</CreateTime><MsgType>text</MsgType><Content>%s</Content><MsgId>%d</MsgId></xml>`,
				ts, text, time.Now().UnixNano())
			enc := crypter.Encrypt([]byte(xml))
			q := url.Values{"signature": {wechat.Sign(oa.Token, ts, nonce)}, "timestamp": {ts}, "nonce": {nonce},
				"encrypt_type": {"aes"}, "msg_signature": {wxcrypt.MsgSignature(oa.Token, ts, nonce, enc)}}
			body := "<xml><ToUserName>gh_x</ToUserName><Encrypt><![CDATA[" + enc + "]]></Encrypt></xml>"
			return send(t, http.MethodPost, dev.http+"/ingest/wechat?"+q.Encode(), map[string]string{"Content-Type": "text/xml"}, body)
		}
		if a := push("first"); a.code != 200 {
			t.Fatalf("the signed push: %d %s", a.code, a.body)
		}
		if a := push("injected"); a.code != http.StatusUnauthorized {
			t.Errorf("the same nonce with another body: %d %s, want 401", a.code, a.body)
		}
	})

	t.Run("a 10 MB body: 413 with a dead letter", func(t *testing.T) {
		big := fmt.Sprintf(`{"visitor_id":%q,"events":[{"type":"message","id":"m-big","occurred_at":%q,"text":"%s"}]}`, mallory, now, strings.Repeat("x", 10<<20))
		if a := send(t, http.MethodPost, dev.http+"/ingest/web", bearer(web.Key), big); a.code != http.StatusRequestEntityTooLarge || a.deadLetter() == "" {
			t.Errorf("%d %.300s", a.code, a.body)
		}
	})
	t.Run("a 1 MB text field: 400 naming it, with a dead letter", func(t *testing.T) {
		long := fmt.Sprintf(`{"visitor_id":%q,"events":[{"type":"message","id":"m-long","occurred_at":%q,"text":"%s"}]}`, mallory, now, strings.Repeat("字", 300_000))
		a := send(t, http.MethodPost, dev.http+"/ingest/web", bearer(web.Key), long)
		if a.code != http.StatusBadRequest && a.code != http.StatusRequestEntityTooLarge || a.deadLetter() == "" {
			t.Errorf("%d %.300s", a.code, a.body)
		}
		if a.code == http.StatusBadRequest && a.field() != "events[0].text" {
			t.Errorf("field %q, want events[0].text", a.field())
		}
	})
	t.Run("invalid UTF-8 and half a surrogate pair: 400 naming the field", func(t *testing.T) {
		for _, text := range []string{"abc\xff\xfedef", `\ud800`} {
			body := fmt.Sprintf(`{"visitor_id":%q,"events":[{"type":"message","id":"m-utf","occurred_at":%q,"text":"%s"}]}`, mallory, now, text)
			if a := send(t, http.MethodPost, dev.http+"/ingest/web", bearer(web.Key), body); a.code != http.StatusBadRequest || a.field() != "events[0].text" || a.deadLetter() == "" {
				t.Errorf("%q: %d %s", text, a.code, a.body)
			}
		}
	})
	t.Run("the schema registry refuses cross-site writes", func(t *testing.T) {
		schema := `{"schema":"{\"type\":\"string\"}"}`
		if a := send(t, http.MethodPost, dev.registry+"/subjects/evil-value/versions", map[string]string{"Content-Type": "text/plain"}, schema); a.code != http.StatusUnsupportedMediaType {
			t.Errorf("text/plain POST: %d %s", a.code, a.body)
		}
		h := map[string]string{"Content-Type": "application/vnd.schemaregistry.v1+json", "Origin": "https://evil.example"}
		if a := send(t, http.MethodPost, dev.registry+"/subjects/evil-value/versions", h, schema); a.code != http.StatusForbidden {
			t.Errorf("POST from another origin: %d %s", a.code, a.body)
		}
	})
	t.Run("a flood from one client: 429 with Retry-After", func(t *testing.T) {
		codes := make(chan *http.Response, 300)
		for range cap(codes) {
			go func() {
				resp, err := http.Get(dev.http + "/healthz")
				if err == nil {
					resp.Body.Close()
				}
				codes <- resp
			}()
		}
		limited := 0
		for range cap(codes) {
			if resp := <-codes; resp != nil && resp.StatusCode == http.StatusTooManyRequests {
				limited++
				if resp.Header.Get("Retry-After") == "" {
					t.Error("429 without Retry-After")
				}
			}
		}
		if limited == 0 {
			t.Error("300 requests at once past a 100/s budget got no 429")
		}
		time.Sleep(2 * time.Second) // the budget refills for the checks below
	})
	t.Run("the console: no framing, no foreign scripts, read-only", func(t *testing.T) {
		a := send(t, http.MethodGet, dev.http+"/", nil, "")
		if csp := a.header.Get("Content-Security-Policy"); a.code != 200 || !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET /: %d, Content-Security-Policy %q", a.code, csp)
		}
		if a := send(t, http.MethodPost, dev.http+"/", map[string]string{"Content-Type": "text/plain"}, "x"); a.code != http.StatusMethodNotAllowed {
			t.Errorf("POST /: %d", a.code)
		}
	})
	t.Run("API without or with a wrong token: 401", func(t *testing.T) {
		for _, h := range []map[string]string{nil, {"Authorization": "Bearer wrong"}} {
			if a := send(t, http.MethodGet, dev.http+"/api/v1/customers", h, ""); a.code != http.StatusUnauthorized {
				t.Errorf("%v: %d", h, a.code)
			}
		}
	})

	// Nothing the attacks sent reached the victim.
	var after api.Customer
	if dev.get(t, "/api/v1/customers/"+victim, &after) != http.StatusOK {
		t.Fatal("the victim's record is gone")
	}
	if after.Version != before.Version || string(after.Fields["name"].Value) != `"Victim"` {
		t.Errorf("the victim's record changed: version %d → %d, name %s", before.Version, after.Version, after.Fields["name"].Value)
	}
	if n := len(dev.timeline(t, victim)); n != beforeTimeline {
		t.Errorf("the victim's timeline went from %d to %d messages", beforeTimeline, n)
	}
}
