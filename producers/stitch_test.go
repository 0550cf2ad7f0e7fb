package producers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/omnisync/omnisync/api"
	"github.com/omnisync/omnisync/consumers/materializer"
	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/consumers/store/sqlite"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/schemas"
)

// A WeChat fan writes on the official account, then in the mini-program
// (the unionid links both), calls from a number, and logs into the app
// with that number and WeChat: the policy merges the app user with the fan
// (unionid) and suggests the caller (phone); an agent confirms the
// suggestion through the API. On the shared Kafka, through the producers,
// a materializer and the API, the four customers end as one whose
// timeline holds every message once, and the fan's next official-account
// message lands on it; a new group folding the same log into an empty
// store ends with the same records.
func TestFanBecomesOneCustomer(t *testing.T) {
	k := testenv.RealKafka(t)
	e := start(t, k)
	ctx := context.Background()

	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	group := testenv.UniqueName(t, "group")
	ends := testenv.EndOffsets(t, e.cl, schemas.CustomerEventsTopic, schemas.CustomerMessagesTopic)
	start := map[string]map[int32]int64{}
	for topic, parts := range ends {
		start[topic] = map[int32]int64{}
		for p, o := range parts {
			start[topic][p] = o.EpochOffset().Offset
		}
	}
	if err := st.Apply(ctx, &store.Batch{Group: group, Offsets: start}); err != nil {
		t.Fatal(err)
	}
	// newStore opens a store whose group begins where the test began.
	newStore := func(name, group string) *sqlite.Store {
		st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if err := st.Apply(ctx, &store.Batch{Group: group, Offsets: start}); err != nil {
			t.Fatal(err)
		}
		return st
	}
	runMaterializer(t, k, e, st, group)
	apiSrv := httptest.NewServer(api.Handler(api.Config{Store: st, Publisher: api.KafkaPublisher{Client: e.cl, Serde: e.serde},
		AdminToken: "admin-token", Instance: "test"}))
	t.Cleanup(apiSrv.Close)

	openid, mpOpenid, unionid := testenv.UniqueName(t, "o"), testenv.UniqueName(t, "mp"), testenv.UniqueName(t, "u")
	user := testenv.UniqueName(t, "user")
	phone := fmt.Sprintf("+86139%08d", time.Now().UnixNano()%1e8)
	now := time.Now()
	msgID := now.UnixNano() / 1000
	var sent []string // the texts of every message, each once
	wechatPush := func(withUnion bool, text string) {
		t.Helper()
		union := ""
		if withUnion {
			union = "<UnionId><![CDATA[" + unionid + "]]></UnionId>"
		}
		msgID++
		xml := fmt.Sprintf(`<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName>`+
			`<CreateTime>%d</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[%s]]></Content><MsgId>%d</MsgId>%s</xml>`,
			openid, now.Unix(), text, msgID, union)
		if code, body := post(t, signedURL(e.url, "/ingest/wechat", "wechat-token", ""), "text/xml", xml); code != 200 || body != "success" {
			t.Fatalf("official-account push: %d %s", code, body)
		}
		sent = append(sent, text)
	}
	appPost := func(body string, want int) {
		t.Helper()
		if code, resp := postJSON(t, e.url+"/ingest/app", "app-key", body); code != want {
			t.Fatalf("app: %d %s, want %d", code, resp, want)
		}
	}
	sign := func(name, value string) string { return ingest.SignClaim("app-identity-secret", name, value) }

	// 1. The official account, its push carrying the unionid; 2. the
	// mini-program, same unionid: one customer so far.
	wechatPush(true, "公众号：我的快递到哪了？")
	msgID++
	js := fmt.Sprintf(`{"ToUserName":"gh_mp","FromUserName":%q,"CreateTime":%d,"MsgType":"text","Content":"小程序：想改收货地址","MsgId":%d,"UnionId":%q}`,
		mpOpenid, now.Unix(), msgID, unionid)
	if code, body := post(t, signedURL(e.url, "/ingest/miniprogram", "mp-token", ""), "application/json", js); code != 200 {
		t.Fatalf("mini-program push: %d %s", code, body)
	}
	sent = append(sent, "小程序：想改收货地址")
	// 3. A call from the number: a customer of its own.
	call := fmt.Sprintf(`{"call_id":"call-%s","direction":"inbound","caller":%q,"callee":"4008001234","agent_id":"agent-17",
		"started_at":%q,"ended_at":%q,"segments":[
		{"speaker":"agent","start_ms":0,"end_ms":2000,"text":"电话：您好","confidence":0.9},
		{"speaker":"caller","start_ms":2500,"end_ms":6000,"text":"电话：我想查询订单","confidence":0.8}]}`,
		user, phone, now.Add(-time.Hour).Format(time.RFC3339), now.Add(-time.Hour+time.Minute).Format(time.RFC3339))
	if code, body := postJSON(t, e.url+"/ingest/phone", "phone-key", call); code != 200 {
		t.Fatalf("phone: %d %s", code, body)
	}
	sent = append(sent, "电话：您好", "电话：我想查询订单")
	// 4. The app user, logged in: a customer of its own.
	appPost(fmt.Sprintf(`{"device_id":"d-%s","user_id":%q,"user_hash":%q,"app_version":"5.2.1","platform":"ios","events":[
		{"type":"message","id":"a1-%s","occurred_at":%q,"text":"App：第一次打开"}]}`, user, user, sign("user_id", user), user, now.Add(-30*time.Minute).Format(time.RFC3339)), 200)
	sent = append(sent, "App：第一次打开")
	// A number the backend did not sign is refused, not taken as a claim.
	appPost(fmt.Sprintf(`{"device_id":"d-%s","user_id":%q,"user_hash":%q,"phone":%q,"app_version":"5.2.1","platform":"ios","events":[
		{"type":"message","id":"bad-%s","occurred_at":%q,"text":"x"}]}`, user, user, sign("user_id", user), phone, user, now.Format(time.RFC3339)), 400)

	fan := ingest.CustomerIDFor(events.Identity{Kind: "wechat_unionid", Value: unionid, Verified: true})
	caller := ingest.CustomerIDFor(events.Identity{Kind: "phone", Value: phone, Verified: true})
	appCustomer := ingest.CustomerIDFor(events.Identity{Kind: "app_user", Value: user, Verified: true})
	for _, id := range []string{fan, caller, appCustomer} {
		awaitRecord(t, st, id, func(r merge.Record) bool { return r.LastContact != nil })
	}

	// 5. The app login with the verified number and WeChat: unionid (auto)
	// merges the app user and the fan; the phone suggests the caller.
	appPost(fmt.Sprintf(`{"device_id":"d-%s","user_id":%q,"user_hash":%q,"phone":%q,"phone_hash":%q,"wechat_unionid":%q,"wechat_unionid_hash":%q,
		"app_version":"5.2.1","platform":"ios","events":[{"type":"message","id":"a2-%s","occurred_at":%q,"text":"App：微信登录了"}]}`,
		user, user, sign("user_id", user), phone, sign("phone", phone), unionid, sign("wechat_unionid", unionid), user, now.Add(-10*time.Minute).Format(time.RFC3339)), 200)
	sent = append(sent, "App：微信登录了")
	pair := min(fan, appCustomer)
	awaitRecord(t, st, pair, func(r merge.Record) bool { return len(r.Absorbed) == 1 })

	// The suggestion waits in the review queue with its evidence.
	agent := func(method, path, body string, v any) int {
		t.Helper()
		req, _ := http.NewRequest(method, apiSrv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer admin-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if v != nil {
			_ = json.NewDecoder(resp.Body).Decode(v)
		}
		return resp.StatusCode
	}
	var suggestion api.Conflict
	await(t, "the merge suggestion in the review queue", func() bool {
		var queue api.Page[api.Conflict]
		agent("GET", "/api/v1/conflicts?limit=500", "", &queue)
		for _, c := range queue.Items {
			if c.Field == merge.SuggestionField && (c.CustomerID == min(pair, caller)) {
				suggestion = c
				return true
			}
		}
		return false
	})
	var cand merge.Suggestion
	if err := json.Unmarshal(suggestion.Candidate, &cand); err != nil || cand.CustomerID != max(pair, caller) ||
		!slices.ContainsFunc(cand.Evidence, func(e merge.Evidence) bool { return e.Kind == "phone" && e.Value == phone }) ||
		suggestion.CandidateChannel != "APP" {
		t.Fatalf("suggestion %+v (candidate %s): want %s with the phone as evidence, from the app", suggestion, suggestion.Candidate, max(pair, caller))
	}
	var accepted api.ResolveAccepted
	if code := agent("POST", "/api/v1/conflicts/"+suggestion.ID+"/resolve", `{"choice":"take_candidate"}`, &accepted); code != http.StatusAccepted || accepted.MergeEventID == "" {
		t.Fatalf("confirm: %d %+v", code, accepted)
	}

	// One customer: the smallest ID, every other merged into it.
	final := min(fan, caller, appCustomer)
	survivorOf := func(id string) string {
		for range 3 {
			next, err := st.Redirect(ctx, id)
			if err != nil || next == "" {
				break
			}
			id = next
		}
		return id
	}
	await(t, "the three customers merged into "+final, func() bool {
		return survivorOf(fan) == final && survivorOf(caller) == final && survivorOf(appCustomer) == final
	})
	awaitRecord(t, st, final, func(r merge.Record) bool { return !r.NeedsReview })
	// The API's MERGE request wrote the directory's redirect: the
	// producers send the absorbed customer's identities to the survivor.
	await(t, "the confirmed merge's redirect in the identity directory", func() bool {
		return e.dir.Survivor(max(pair, caller), nil) == final && e.dir.Survivor(fan, nil) == final && e.dir.Survivor(appCustomer, nil) == final
	})
	// The fan writes again on the official account, without the unionid:
	// the openid's customer is merged, so the message goes to the survivor.
	wechatPush(false, "公众号：收到了，谢谢")
	var timeline api.Page[api.Message]
	await(t, "every message once on the one timeline", func() bool {
		agent("GET", "/api/v1/customers/"+final+"/timeline?limit=500", "", &timeline)
		return len(timeline.Items) >= len(sent)
	})
	var texts []string
	for _, m := range timeline.Items {
		if m.Text != nil {
			texts = append(texts, *m.Text)
		}
	}
	slices.Sort(texts)
	slices.Sort(sent)
	if !slices.Equal(texts, sent) {
		t.Errorf("timeline texts %q, want each of %q once", texts, sent)
	}
	// A replay by a new group into an empty store folds the same log to
	// the same records.
	group2 := testenv.UniqueName(t, "replay")
	st2 := newStore("replay.db", group2)
	runMaterializer(t, k, e, st2, group2)
	ids := []string{fan, caller, appCustomer}
	await(t, "the replayed store equal to the live one", func() bool {
		a, err1 := st.Load(ctx, ids)
		b, err2 := st2.Load(ctx, ids)
		if err1 != nil || err2 != nil {
			return false
		}
		for _, id := range ids {
			if a[id].CanonicalHash() != b[id].CanonicalHash() {
				return false
			}
		}
		return true
	})
	var c api.Customer
	agent("GET", "/api/v1/customers/"+final, "", &c)
	if len(c.AlsoKnownAs) != 2 || !slices.Contains(c.Channels, "WECHAT") || !slices.Contains(c.Channels, "MINIPROGRAM") ||
		!slices.Contains(c.Channels, "PHONE") || !slices.Contains(c.Channels, "APP") {
		t.Errorf("the one customer: also known as %+v, channels %v", c.AlsoKnownAs, c.Channels)
	}
}

// runMaterializer runs a member of group folding into st until the test ends.
func runMaterializer(t *testing.T, k testenv.Kafka, e *env, st *sqlite.Store, group string) {
	t.Helper()
	m, err := materializer.New(materializer.Config{Kafka: k.Config(), Group: group, Store: st, Serde: e.serde, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("materializer of %s: %v", group, err)
		}
	})
}

// awaitRecord waits until customer id's stored record satisfies ok.
func awaitRecord(t *testing.T, st *sqlite.Store, id string, ok func(merge.Record) bool) merge.Record {
	t.Helper()
	var r merge.Record
	await(t, "customer "+id, func() bool {
		got, err := st.Load(context.Background(), []string{id})
		r = got[id]
		return err == nil && ok(r)
	})
	return r
}

func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not so after 60 s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
