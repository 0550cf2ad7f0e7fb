package api_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/omnisync/omnisync/api"
	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/consumers/store/sqlite"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/producers/ingest"
)

const adminToken = "adm-7Hq2xK9pLm4Rt8Vw"

// The customers of the fixture.
const (
	liNa      = "cus_28dm0m3j1456fswk9g9ty" // 李娜: web, CRM, WeChat, phone, mini-program; open phone conflict
	wilson    = "cus_dr4zh8qqbcdxraxssvnr8" // James Wilson: app, web; resolved e-mail conflict
	wangFang  = "cus_g3k7x2m9q4w8z1c5v6b0n" // 王芳: CRM, import; open id_number conflict
	zhangWei  = "cus_p9t4r7e2w5q8y1u3i6o0a" // 张伟: deleted on request
	wechatApp = "gh_3d8a9f3a2b1c"
)

var t0 = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func ptr[T any](v T) *T { return &v }

func source(ch events.Channel) string { return "producer/" + strings.ToLower(string(ch)) + "@ingest-1" }

func upsert(customer string, ch events.Channel, when time.Time, p events.Profile, ids ...events.Identity) *events.CustomerEvent {
	return &events.CustomerEvent{
		EventID: ingest.EventID(ch, customer, customer+when.String(), when), CustomerID: customer, Channel: ch, Source: source(ch),
		Op: events.OpUpsert, OccurredAt: when, IngestedAt: when.Add(400 * time.Millisecond), Identities: ids, Profile: &p,
	}
}

func message(customer string, ch events.Channel, when time.Time, text string) *events.MessageEvent {
	return &events.MessageEvent{
		MessageID: ingest.EventID(ch, customer, customer+text, when), CustomerID: customer, ConversationID: strings.ToLower(string(ch)) + "-conv-1",
		Channel: ch, Source: source(ch), Direction: events.DirectionInbound, SenderType: events.SenderCustomer, SenderID: customer,
		ContentType: events.ContentText, Text: ptr(text), OccurredAt: when, IngestedAt: when.Add(300 * time.Millisecond),
	}
}

// fixture is a SQLite store filled the way the materializer fills it.
type fixture struct {
	store  *sqlite.Store
	events map[string]*events.CustomerEvent // by a short name
	msgs   map[string][]events.MessageEvent // by customer, in timeline order
}

// feed applies events and messages in order, as one materializer batch:
// load the stored records, merge, write records and messages together.
func (f *fixture) feed(t *testing.T, items ...any) {
	t.Helper()
	ctx := context.Background()
	ids := map[string]bool{}
	for _, it := range items {
		switch it := it.(type) {
		case *events.CustomerEvent:
			ids[it.CustomerID] = true
		case *events.MessageEvent:
			ids[it.CustomerID] = true
		}
	}
	stored, err := f.store.Load(ctx, slices.Collect(maps.Keys(ids)))
	if err != nil {
		t.Fatal(err)
	}
	policy := merge.DefaultPolicy()
	changed := map[string]merge.Record{}
	b := &store.Batch{Group: "api-test", PolicyHash: policy.Hash()}
	for _, it := range items {
		var id string
		var o merge.Outcome
		switch it := it.(type) {
		case *events.CustomerEvent:
			id = it.CustomerID
			r, ok := changed[id]
			if !ok {
				r = stored[id]
			}
			r, o = merge.Apply(r, it, policy)
			changed[id] = r
		case *events.MessageEvent:
			id = it.CustomerID
			r, ok := changed[id]
			if !ok {
				r = stored[id]
			}
			r, o = merge.ApplyMessage(r, it, policy)
			changed[id] = r
			b.Messages = append(b.Messages, *it)
		}
		if o.Ignored != "" {
			t.Fatalf("fixture event for %s ignored: %s", id, o.Ignored)
		}
	}
	for _, r := range changed {
		b.Records = append(b.Records, r)
	}
	if err := f.store.Apply(ctx, b); err != nil {
		t.Fatal(err)
	}
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "omnisync.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{store: st, events: map[string]*events.CustomerEvent{}, msgs: map[string][]events.MessageEvent{}}

	ev := f.events
	ev["li-web"] = upsert(liNa, events.ChannelWeb, at(30*time.Minute),
		events.Profile{Name: ptr("李娜"), Phone: ptr("+8613800138000"), Email: ptr("li.na@example.com")},
		events.Identity{Kind: "web_visitor", Value: "v-7f3a9c21"})
	ev["li-crm"] = upsert(liNa, events.ChannelCRM, at(time.Hour),
		events.Profile{VIPLevel: ptr(int32(3)), Tags: []string{"vip", "华东"}}, events.Identity{Kind: "crm", Value: "CRM-100234"})
	// WeChat ranks below web: a different phone is held back for review.
	ev["li-wechat"] = upsert(liNa, events.ChannelWeChat, at(2*time.Hour+41*time.Minute),
		events.Profile{Phone: ptr("+8613911112222")}, events.Identity{Kind: "wechat_openid", Scope: wechatApp, Value: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"})

	ev["jw-app"] = upsert(wilson, events.ChannelApp, at(time.Hour),
		events.Profile{Name: ptr("James Wilson"), Phone: ptr("+8613700137000"), Email: ptr("james.wilson@example.co.uk")},
		events.Identity{Kind: "app_user", Value: "u-20331"}, events.Identity{Kind: "device", Value: "d-5e0c2b44-ios"})
	ev["jw-web"] = upsert(wilson, events.ChannelWeb, at(90*time.Minute), events.Profile{Email: ptr("jwilson@example.com")})

	ev["wf-crm"] = upsert(wangFang, events.ChannelCRM, at(20*time.Minute),
		events.Profile{Name: ptr("王芳"), Phone: ptr("+8613600136000"), IDNumber: ptr("110101199003074512")},
		events.Identity{Kind: "crm", Value: "CRM-100871"})
	ev["wf-import"] = upsert(wangFang, events.ChannelImport, at(50*time.Minute), events.Profile{IDNumber: ptr("110101199003074513")})

	ev["zw-web"] = upsert(zhangWei, events.ChannelWeb, at(10*time.Minute),
		events.Profile{Name: ptr("张伟"), Phone: ptr("+8613500135000")}, events.Identity{Kind: "web_visitor", Value: "v-deleted-1"})
	ev["zw-delete"] = &events.CustomerEvent{
		EventID: ingest.EventID(events.ChannelCRM, zhangWei, "privacy-42", at(3*time.Hour)), CustomerID: zhangWei, Channel: events.ChannelCRM,
		Source: "crm-sync@salesforce-cn", Op: events.OpDelete, OccurredAt: at(3 * time.Hour), IngestedAt: at(3 * time.Hour),
	}

	// Li Na's timeline: five channels, a two-turn call, and two messages
	// at the same millisecond (ordered by ID).
	web := message(liNa, events.ChannelWeb, at(31*time.Minute), "你好，我的订单什么时候发货？")
	web.Metadata = map[string]string{"page": "https://shop.example.com/orders/SO-20261122-0042"}
	webReply := message(liNa, events.ChannelWeb, at(32*time.Minute), "您好，订单已于今天上午发出。")
	webReply.Direction, webReply.SenderType, webReply.SenderID = events.DirectionOutbound, events.SenderAgent, "agent-17"
	img := message(liNa, events.ChannelWeChat, at(2*time.Hour+41*time.Minute), "")
	img.Text, img.ContentType = nil, events.ContentImage
	img.Attachments = []events.Attachment{{URL: "https://mmbiz.example.com/img/8812.jpg", MIMEType: "image/jpeg", SizeBytes: 48213}}
	loc := message(liNa, events.ChannelMiniProgram, at(2*time.Hour+41*time.Minute), "")
	loc.Text, loc.ContentType = nil, events.ContentLocation
	loc.Location = &events.Location{Latitude: 31.2304, Longitude: 121.4737, PrecisionM: 15, Label: "上海市黄浦区人民广场"}
	var call []*events.MessageEvent
	for i, turn := range []struct {
		speaker, text string
		start, end    int64
	}{{"agent", "您好，请问有什么可以帮您？", 0, 3800}, {"caller", "我想改一下收货地址。", 4200, 9100}} {
		m := message(liNa, events.ChannelPhone, at(3*time.Hour).Add(time.Duration(turn.start)*time.Millisecond), turn.text)
		m.ConversationID, m.ContentType = "call:call-20261122-0007", events.ContentTranscript
		m.Transcript = &events.TranscriptSegment{CallID: "call-20261122-0007", Segment: int32(i), Speaker: turn.speaker,
			StartMS: turn.start, EndMS: turn.end, Confidence: 0.9}
		call = append(call, m)
	}
	app := message(wilson, events.ChannelApp, at(70*time.Minute), "Can I change the delivery address?")
	zw := message(zhangWei, events.ChannelWeb, at(11*time.Minute), "请删除我的个人信息")

	f.feed(t, ev["li-web"], web, webReply, ev["jw-app"], app, ev["wf-crm"], ev["zw-web"], zw)
	f.feed(t, ev["li-crm"], ev["jw-web"], ev["wf-import"], img, loc)
	f.feed(t, ev["li-wechat"], call[0], call[1], ev["zw-delete"])

	// An agent kept Wilson's app e-mail.
	jw, _, err := st.Customer(context.Background(), wilson)
	if err != nil || len(jw.Conflicts) != 1 {
		t.Fatalf("Wilson's e-mail conflict: %v, %+v", err, jw.Conflicts)
	}
	ev["jw-resolve"] = &events.CustomerEvent{
		EventID: "3MRdRmIVbDVTbpPCJKKIC8xDSAv", CustomerID: wilson, Channel: events.ChannelAgent, Source: "api@console-1",
		Op: events.OpResolve, OccurredAt: at(100 * time.Minute), IngestedAt: at(100 * time.Minute),
		Resolution: &events.Resolution{ConflictID: jw.Conflicts[0].ID, Field: "email", Choice: events.ChoiceKeepCurrent, ResolvedBy: "emma.clarke"},
	}
	f.feed(t, ev["jw-resolve"])

	for _, m := range []*events.MessageEvent{web, webReply, img, loc, call[0], call[1]} {
		f.msgs[liNa] = append(f.msgs[liNa], *m)
	}
	slices.SortFunc(f.msgs[liNa], func(a, b events.MessageEvent) int {
		if c := a.OccurredAt.Compare(b.OccurredAt); c != 0 {
			return c
		}
		return strings.Compare(a.MessageID, b.MessageID)
	})
	f.msgs[wilson] = []events.MessageEvent{*app}
	return f
}

// publisher records the events it is given; err fails them.
type publisher struct {
	mu     sync.Mutex
	events []*events.CustomerEvent
	err    error
}

func (p *publisher) Publish(_ context.Context, ev *events.CustomerEvent) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	p.events = append(p.events, ev)
	return nil
}

func (p *publisher) published() []*events.CustomerEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.events)
}

var now = time.Date(2026, 11, 22, 4, 10, 0, 123_000_000, time.UTC)

func newServer(t *testing.T, f *fixture, pub api.Publisher) http.Handler {
	t.Helper()
	return api.Handler(api.Config{Store: f.store, Publisher: pub, AdminToken: adminToken, Instance: "console-1", Now: func() time.Time { return now }})
}

type answer struct {
	code   int
	header http.Header
	body   []byte
}

// call sends a request with the admin token.
func call(t *testing.T, h http.Handler, method, target, body string) answer {
	t.Helper()
	return callAs(t, h, "Bearer "+adminToken, method, target, body)
}

func callAs(t *testing.T, h http.Handler, auth, method, target, body string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, target, rd)
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if ct := w.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("%s %s: Content-Type %q", method, target, ct)
	}
	return answer{code: w.Code, header: w.Header(), body: w.Body.Bytes()}
}

// decode decodes the answer's body strictly into T, failing on a code other
// than want.
func decode[T any](t *testing.T, a answer, want int) T {
	t.Helper()
	if a.code != want {
		t.Fatalf("status %d, want %d: %s", a.code, want, a.body)
	}
	var v T
	dec := json.NewDecoder(strings.NewReader(string(a.body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decoding %s: %v", a.body, err)
	}
	return v
}

func wantError(t *testing.T, a answer, code int, kind, reasonHas string) {
	t.Helper()
	e := decode[api.Error](t, a, code)
	if e.Error != kind || !strings.Contains(e.Reason, reasonHas) {
		t.Errorf("error %+v, want %s with a reason containing %q", e, kind, reasonHas)
	}
}

func TestAuthorization(t *testing.T) {
	f := newFixture(t)
	h := newServer(t, f, &publisher{})
	for _, tc := range []struct {
		name, auth string
		code       int
	}{
		{"no header", "", http.StatusUnauthorized},
		{"wrong token", "Bearer adm-wrong", http.StatusUnauthorized},
		{"token with a suffix", "Bearer " + adminToken + "x", http.StatusUnauthorized},
		{"basic auth", "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+adminToken)), http.StatusUnauthorized},
		{"right token", "Bearer " + adminToken, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, target := range []string{"/api/v1/customers", "/api/v1/customers/" + liNa, "/api/v1/conflicts"} {
				a := callAs(t, h, tc.auth, "GET", target, "")
				if a.code != tc.code {
					t.Fatalf("GET %s: %d, want %d: %s", target, a.code, tc.code, a.body)
				}
				if tc.code == http.StatusUnauthorized {
					wantError(t, a, http.StatusUnauthorized, "unauthorized", "Authorization: Bearer")
					if got := a.header.Get("WWW-Authenticate"); got != `Bearer realm="omnisync"` {
						t.Errorf("WWW-Authenticate %q", got)
					}
				}
			}
			// A resolution is published only with the token.
			pub := &publisher{}
			target := "/api/v1/conflicts/" + merge.ConflictID(liNa, "phone", f.events["li-wechat"].EventID) + "/resolve"
			a := callAs(t, newServer(t, f, pub), tc.auth, "POST", target, `{"choice":"keep_current","resolved_by":"bootstrap-admin"}`)
			code, published := http.StatusAccepted, 1
			if tc.code == http.StatusUnauthorized {
				code, published = http.StatusUnauthorized, 0
			}
			if a.code != code || len(pub.published()) != published {
				t.Errorf("resolve: %d with %d events published, want %d with %d", a.code, len(pub.published()), code, published)
			}
		})
	}
}

func ids(p api.Page[api.CustomerSummary]) []string {
	var out []string
	for _, c := range p.Items {
		out = append(out, c.ID)
	}
	return out
}

func TestSearchCustomers(t *testing.T) {
	f := newFixture(t)
	h := newServer(t, f, &publisher{})
	// Most recently updated first: Li Na (2:41), Wilson (1:40), Wang Fang (0:50).
	all := []string{liNa, wilson, wangFang}
	for _, tc := range []struct {
		q    string
		want []string
	}{
		{"", all},
		{"   ", all},
		{"李", []string{liNa}},
		{"李娜", []string{liNa}},
		{"王芳", []string{wangFang}},
		{"wilson", []string{wilson}},
		{"WILSON", []string{wilson}},
		{"James W", []string{wilson}},
		{"13800138000", []string{liNa}},
		{"+86136", []string{wangFang}},
		{"8613", all},
		{"li.na@example.com", []string{liNa}},
		{"@EXAMPLE.CO.UK", []string{wilson}},
		{"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", []string{liNa}},
		{"CRM-100871", []string{wangFang}},
		{"d-5e0c2b44-ios", []string{wilson}},
		{wangFang, []string{wangFang}},
		{"%", nil},
		{"_", nil},
		{"张伟", nil},             // deleted
		{"+8613500135000", nil}, // the deleted customer's phone
		{"v-deleted-1", nil},    // and identity
		{zhangWei, nil},         // and ID
		{"nobody@example.com", nil},
	} {
		t.Run(tc.q, func(t *testing.T) {
			p := decode[api.Page[api.CustomerSummary]](t, call(t, h, "GET", "/api/v1/customers?q="+url.QueryEscape(tc.q), ""), http.StatusOK)
			if diff := cmp.Diff(tc.want, ids(p)); diff != "" {
				t.Errorf("q=%q (-want +got):\n%s", tc.q, diff)
			}
			if p.NextCursor != "" {
				t.Errorf("a short page has next_cursor %q", p.NextCursor)
			}
			if p.Items == nil {
				t.Error("items is null, want []")
			}
		})
	}

	rec, _, err := f.store.Customer(context.Background(), liNa)
	if err != nil {
		t.Fatal(err)
	}
	p := decode[api.Page[api.CustomerSummary]](t, call(t, h, "GET", "/api/v1/customers?q=13800138000", ""), http.StatusOK)
	// Every channel used: web and CRM (fields, identities), the mini-program
	// (an earlier message), WeChat (identity) and phone (the latest message).
	want := api.CustomerSummary{
		ID: liNa, Version: rec.Version, Name: ptr("李娜"), Phone: ptr("+8613800138000"), Email: ptr("li.na@example.com"),
		NeedsReview: true, OpenConflicts: 1, Channels: []string{"WEB", "MINIPROGRAM", "WECHAT", "PHONE", "CRM"},
		LastContactAt: ptr(at(3*time.Hour + 4200*time.Millisecond)), LastContactChannel: ptr("PHONE"), UpdatedAt: rec.UpdatedAt,
	}
	if diff := cmp.Diff([]api.CustomerSummary{want}, p.Items); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}
	c := decode[api.Customer](t, call(t, h, "GET", "/api/v1/customers/"+liNa, ""), http.StatusOK)
	if diff := cmp.Diff(want.Channels, c.Channels); diff != "" {
		t.Errorf("the customer view's channels differ from the list's (-list +view):\n%s", diff)
	}
}

func TestSearchCustomersPages(t *testing.T) {
	h := newServer(t, newFixture(t), &publisher{})
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		p := decode[api.Page[api.CustomerSummary]](t, call(t, h, "GET", "/api/v1/customers?limit=2&cursor="+url.QueryEscape(cursor), ""), http.StatusOK)
		got = append(got, ids(p)...)
		if len(p.Items) == 2 && p.NextCursor == "" {
			t.Fatal("a full page without next_cursor")
		}
		if cursor = p.NextCursor; cursor == "" {
			break
		}
	}
	if diff := cmp.Diff([]string{liNa, wilson, wangFang}, got); diff != "" {
		t.Errorf("paged search (-want +got):\n%s", diff)
	}
}

func TestCustomer(t *testing.T) {
	f := newFixture(t)
	h := newServer(t, f, &publisher{})
	li := decode[api.Customer](t, call(t, h, "GET", "/api/v1/customers/"+liNa, ""), http.StatusOK)

	web, crm, wechat := f.events["li-web"], f.events["li-crm"], f.events["li-wechat"]
	field := func(ev *events.CustomerEvent, value string) api.Field {
		return api.Field{Value: json.RawMessage(value), Channel: string(ev.Channel), Source: ev.Source, OccurredAt: ev.OccurredAt, EventID: ev.EventID}
	}
	wantFields := map[string]api.Field{
		"name":      field(web, `"李娜"`),
		"phone":     field(web, `"+8613800138000"`), // WeChat's phone is held back
		"email":     field(web, `"li.na@example.com"`),
		"vip_level": field(crm, `3`),
		"tags":      field(crm, `["vip","华东"]`),
	}
	if diff := cmp.Diff(wantFields, li.Fields); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
	wantIDs := []api.Identity{
		{Kind: "crm", Value: "CRM-100234"}, {Kind: "web_visitor", Value: "v-7f3a9c21"},
		{Kind: "wechat_openid", Scope: wechatApp, Value: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
	}
	if diff := cmp.Diff(wantIDs, li.Identities); diff != "" {
		t.Errorf("identities (-want +got):\n%s", diff)
	}
	wantConflicts := []api.Conflict{{
		ID: merge.ConflictID(liNa, "phone", wechat.EventID), CustomerID: liNa, Field: "phone",
		Current: json.RawMessage(`"+8613800138000"`), Candidate: json.RawMessage(`"+8613911112222"`),
		CandidateEventID: wechat.EventID, CandidateChannel: "WECHAT", CandidateSource: wechat.Source, DetectedAt: wechat.OccurredAt, Status: "OPEN",
	}}
	if diff := cmp.Diff(wantConflicts, li.Conflicts); diff != "" {
		t.Errorf("conflicts (-want +got):\n%s", diff)
	}
	rec, _, err := f.store.Customer(context.Background(), liNa)
	if err != nil {
		t.Fatal(err)
	}
	if li.ID != liNa || li.Deleted || !li.NeedsReview || li.Version != rec.Version || li.PolicyHash != merge.DefaultPolicy().Hash() ||
		!li.UpdatedAt.Equal(rec.UpdatedAt) || li.LastContactChannel == nil || *li.LastContactChannel != "PHONE" {
		t.Errorf("customer %+v", li)
	}

	jw := decode[api.Customer](t, call(t, h, "GET", "/api/v1/customers/"+wilson, ""), http.StatusOK)
	if len(jw.Conflicts) != 1 || jw.Conflicts[0].Status != "KEPT_CURRENT" || jw.Conflicts[0].ResolvedBy == nil ||
		*jw.Conflicts[0].ResolvedBy != "emma.clarke" || jw.Conflicts[0].ResolvedAt == nil || !jw.Conflicts[0].ResolvedAt.Equal(at(100*time.Minute)) ||
		jw.NeedsReview || string(jw.Fields["email"].Value) != `"james.wilson@example.co.uk"` {
		t.Errorf("Wilson after the resolution: %+v", jw)
	}

	// A deleted customer is answered, empty, and marked.
	a := call(t, h, "GET", "/api/v1/customers/"+zhangWei, "")
	zw := decode[api.Customer](t, a, http.StatusOK)
	if !zw.Deleted || len(zw.Fields) != 0 || len(zw.Identities) != 0 || len(zw.Conflicts) != 0 || zw.LastContactAt != nil {
		t.Errorf("deleted customer: %+v", zw)
	}
	var raw map[string]any
	if err := json.Unmarshal(a.body, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"fields", "identities", "conflicts"} {
		if raw[k] == nil {
			t.Errorf("deleted customer: %s is null, want empty", k)
		}
	}

	wantError(t, call(t, h, "GET", "/api/v1/customers/cus_unknown00000000000000", ""), http.StatusNotFound, "not_found", "cus_unknown")
}

// timelineOf pages through a customer's timeline.
func timelineOf(t *testing.T, h http.Handler, customer string, limit int) (msgs []api.Message, pages int) {
	t.Helper()
	cursor := ""
	for {
		q := url.Values{"cursor": {cursor}}
		if limit > 0 {
			q.Set("limit", strconv.Itoa(limit))
		}
		p := decode[api.Page[api.Message]](t, call(t, h, "GET", "/api/v1/customers/"+customer+"/timeline?"+q.Encode(), ""), http.StatusOK)
		pages++
		msgs = append(msgs, p.Items...)
		if limit > 0 && len(p.Items) > limit {
			t.Fatalf("page of %d items with limit %d", len(p.Items), limit)
		}
		if cursor = p.NextCursor; cursor == "" || pages > 20 {
			return msgs, pages
		}
	}
}

func TestTimeline(t *testing.T) {
	f := newFixture(t)
	h := newServer(t, f, &publisher{})
	var want []string
	for _, m := range f.msgs[liNa] {
		want = append(want, m.MessageID)
	}
	for _, limit := range []int{0, 1, 2, 4, 6, 7, 500} {
		msgs, pages := timelineOf(t, h, liNa, limit)
		var got []string
		for _, m := range msgs {
			got = append(got, m.ID)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("limit %d: timeline (-want +got):\n%s", limit, diff)
		}
		// A full page has a cursor, so a last full page is followed by an empty one.
		if wantPages := len(want)/max(limit, 1) + 1; limit > 0 && limit <= len(want) && pages != wantPages {
			t.Errorf("limit %d: %d pages, want %d", limit, pages, wantPages)
		}
	}

	msgs, _ := timelineOf(t, h, liNa, 0)
	byID := map[string]api.Message{}
	channels := map[string]bool{}
	for _, m := range msgs {
		byID[m.ID] = m
		channels[m.Channel] = true
	}
	if len(channels) < 4 {
		t.Errorf("timeline channels %v, want web, WeChat, mini-program and phone", channels)
	}
	for _, src := range f.msgs[liNa] {
		m := byID[src.MessageID]
		if m.Channel != string(src.Channel) || m.Source != src.Source || !m.OccurredAt.Equal(src.OccurredAt) ||
			m.ContentType != string(src.ContentType) || m.Direction != string(src.Direction) || m.ConversationID != src.ConversationID ||
			!cmp.Equal(m.Text, src.Text) || m.Tags == nil || m.Metadata == nil || m.Attachments == nil {
			t.Errorf("message %s: %+v, from %+v", src.MessageID, m, src)
		}
		switch {
		case src.Transcript != nil:
			want := api.TranscriptSegment(*src.Transcript)
			if m.Transcript == nil || *m.Transcript != want {
				t.Errorf("transcript %+v, want %+v", m.Transcript, want)
			}
		case src.Location != nil:
			if m.Location == nil || *m.Location != api.Location(*src.Location) {
				t.Errorf("location %+v, want %+v", m.Location, src.Location)
			}
		case len(src.Attachments) > 0:
			want := []api.Attachment{{URL: src.Attachments[0].URL, MIMEType: "image/jpeg", SizeBytes: 48213}}
			if diff := cmp.Diff(want, m.Attachments); diff != "" {
				t.Errorf("attachments (-want +got):\n%s", diff)
			}
		}
	}
	// The location's JSON has the API's snake_case names.
	a := call(t, h, "GET", "/api/v1/customers/"+liNa+"/timeline", "")
	if !strings.Contains(string(a.body), `"location":{"latitude":31.2304,"longitude":121.4737,"precision_m":15,"label":"上海市黄浦区人民广场"}`) {
		t.Errorf("location JSON not found in %s", a.body)
	}

	for _, customer := range []string{zhangWei, "cus_unknown00000000000000"} {
		if msgs, _ := timelineOf(t, h, customer, 0); len(msgs) != 0 {
			t.Errorf("%s: %d messages, want none", customer, len(msgs))
		}
	}
	if msgs, _ := timelineOf(t, h, wilson, 0); len(msgs) != 1 || msgs[0].Channel != "APP" {
		t.Errorf("Wilson's timeline: %+v", msgs)
	}
}

func TestPagingParameters(t *testing.T) {
	h := newServer(t, newFixture(t), &publisher{})
	bad := []struct{ query, reason string }{
		{"limit=0", "limit"}, {"limit=501", "limit"}, {"limit=x", "limit"}, {"limit=-1", "limit"}, {"limit=1.5", "limit"},
		{"cursor=!!!", "cursor"}, {"cursor=" + base64.RawURLEncoding.EncodeToString([]byte("garbage")), "cursor"},
		{"cursor=" + base64.RawURLEncoding.EncodeToString([]byte(`[1,2,3]`)), "cursor"},
		{"cursor=" + base64.RawURLEncoding.EncodeToString([]byte(`["x","y"]`)), "cursor"},
	}
	for _, path := range []string{"/api/v1/customers", "/api/v1/customers/" + liNa + "/timeline", "/api/v1/conflicts"} {
		for _, tc := range bad {
			wantError(t, call(t, h, "GET", path+"?"+tc.query, ""), http.StatusBadRequest, "invalid_request", tc.reason)
		}
		for _, q := range []string{"limit=1", "limit=500", "limit=50&cursor="} {
			if a := call(t, h, "GET", path+"?"+q, ""); a.code != http.StatusOK {
				t.Errorf("GET %s?%s: %d %s", path, q, a.code, a.body)
			}
		}
	}
}

func TestConflicts(t *testing.T) {
	f := newFixture(t)
	h := newServer(t, f, &publisher{})
	wfID := merge.ConflictID(wangFang, "id_number", f.events["wf-import"].EventID)
	liID := merge.ConflictID(liNa, "phone", f.events["li-wechat"].EventID)
	jwID := f.events["jw-resolve"].Resolution.ConflictID
	type row struct{ ID, Customer, Name, Status string }
	list := func(query string) []row {
		p := decode[api.Page[api.Conflict]](t, call(t, h, "GET", "/api/v1/conflicts"+query, ""), http.StatusOK)
		var out []row
		for _, c := range p.Items {
			r := row{ID: c.ID, Customer: c.CustomerID, Status: c.Status}
			if c.CustomerName != nil {
				r.Name = *c.CustomerName
			}
			out = append(out, r)
		}
		return out
	}
	// Oldest first: Wang Fang (0:50), Wilson (1:30, resolved), Li Na (2:41).
	wf, jw, li := row{wfID, wangFang, "王芳", "OPEN"}, row{jwID, wilson, "James Wilson", "KEPT_CURRENT"}, row{liID, liNa, "李娜", "OPEN"}
	for _, tc := range []struct {
		query string
		want  []row
	}{
		{"", []row{wf, li}},
		{"?status=open", []row{wf, li}},
		{"?status=OPEN", []row{wf, li}},
		{"?status=all", []row{wf, jw, li}},
		{"?status=kept_current", []row{jw}},
		{"?status=took_candidate", nil},
		{"?status=all&limit=2", []row{wf, jw}},
	} {
		if diff := cmp.Diff(tc.want, list(tc.query)); diff != "" {
			t.Errorf("GET /api/v1/conflicts%s (-want +got):\n%s", tc.query, diff)
		}
	}
	wantError(t, call(t, h, "GET", "/api/v1/conflicts?status=closed", ""), http.StatusBadRequest, "invalid_request", "status")

	// Paging one by one gives every conflict once.
	var got []string
	cursor := ""
	for range 10 {
		p := decode[api.Page[api.Conflict]](t, call(t, h, "GET", "/api/v1/conflicts?status=all&limit=1&cursor="+cursor, ""), http.StatusOK)
		for _, c := range p.Items {
			got = append(got, c.ID)
		}
		if cursor = p.NextCursor; cursor == "" {
			break
		}
	}
	if diff := cmp.Diff([]string{wfID, jwID, liID}, got); diff != "" {
		t.Errorf("paged conflicts (-want +got):\n%s", diff)
	}

	// The resolved one carries who and when.
	p := decode[api.Page[api.Conflict]](t, call(t, h, "GET", "/api/v1/conflicts?status=kept_current", ""), http.StatusOK)
	if c := p.Items[0]; c.ResolvedBy == nil || *c.ResolvedBy != "emma.clarke" || c.ResolvedAt == nil || string(c.Candidate) != `"jwilson@example.com"` {
		t.Errorf("resolved conflict %+v", c)
	}
}

func TestResolve(t *testing.T) {
	f := newFixture(t)
	liID := merge.ConflictID(liNa, "phone", f.events["li-wechat"].EventID)
	jwID := f.events["jw-resolve"].Resolution.ConflictID
	target := "/api/v1/conflicts/" + liID + "/resolve"
	for _, tc := range []struct {
		name, target, body string
		code               int
		kind, reason       string
	}{
		{"unknown choice", target, `{"choice":"merge","resolved_by":"bootstrap-admin"}`, 400, "invalid_request", "choice"},
		{"no choice", target, `{"resolved_by":"bootstrap-admin"}`, 400, "invalid_request", "choice"},
		{"set_value without value", target, `{"choice":"set_value","resolved_by":"bootstrap-admin"}`, 400, "invalid_request", "value"},
		{"set_value with a blank value", target, `{"choice":"set_value","value":"  ","resolved_by":"bootstrap-admin"}`, 400, "invalid_request", "value"},
		{"keep_current with a value", target, `{"choice":"keep_current","value":"+8613800138000","resolved_by":"bootstrap-admin"}`, 400, "invalid_request", "value"},
		{"take_candidate with a value", target, `{"choice":"take_candidate","value":"x","resolved_by":"bootstrap-admin"}`, 400, "invalid_request", "value"},
		{"someone else as resolved_by", target, `{"choice":"keep_current","resolved_by":"王芳"}`, 400, "invalid_request", "the resolver is the caller, bootstrap-admin"},
		{"unknown field", target, `{"choice":"keep_current","resolved_by":"bootstrap-admin","note":"checked"}`, 400, "invalid_request", "note"},
		{"not JSON", target, `choice=keep_current`, 400, "invalid_request", "body"},
		{"empty body", target, ``, 400, "invalid_request", "body"},
		{"a body over 64 KiB", target, `{"choice":"set_value","resolved_by":"bootstrap-admin","value":"` + strings.Repeat("8", 70_000) + `"}`, 413, "too_large", "65536"},
		{"invalid UTF-8 in value", target, "{\"choice\":\"set_value\",\"resolved_by\":\"王芳\",\"value\":\"+86138\xff\xfe\"}", 400, "invalid_request", "value"},
		{"half a surrogate pair in resolved_by", target, `{"choice":"keep_current","resolved_by":"\ud800"}`, 400, "invalid_request", "resolved_by"},
		{"resolved_by over 128 characters", target, `{"choice":"keep_current","resolved_by":"` + strings.Repeat("王", 129) + `"}`, 400, "invalid_request", "resolved_by"},
		{"unknown conflict", "/api/v1/conflicts/00000000000000000000000000000000/resolve", `{"choice":"keep_current","resolved_by":"bootstrap-admin"}`, 404, "not_found", "00000000000000000000000000000000"},
		{"already resolved", "/api/v1/conflicts/" + jwID + "/resolve", `{"choice":"take_candidate","resolved_by":"bootstrap-admin"}`, 409, "already_resolved", "KEPT_CURRENT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub := &publisher{}
			wantError(t, call(t, newServer(t, f, pub), "POST", tc.target, tc.body), tc.code, tc.kind, tc.reason)
			if n := len(pub.published()); n != 0 {
				t.Errorf("%d events published", n)
			}
		})
	}

	for _, tc := range []struct {
		name, body string
		choice     events.ResolutionChoice
		value      *string
		status     string
		phone      string
	}{
		{"take_candidate", `{"choice":"take_candidate","resolved_by":" bootstrap-admin "}`, events.ChoiceTakeCandidate, nil, "TOOK_CANDIDATE", `"+8613911112222"`},
		{"keep_current", `{"choice":"KEEP_CURRENT","resolved_by":"bootstrap-admin"}`, events.ChoiceKeepCurrent, nil, "KEPT_CURRENT", `"+8613800138000"`},
		{"keep_current without resolved_by", `{"choice":"keep_current"}`, events.ChoiceKeepCurrent, nil, "KEPT_CURRENT", `"+8613800138000"`},
		{"keep_current with a blank resolved_by", `{"choice":"keep_current","resolved_by":" "}`, events.ChoiceKeepCurrent, nil, "KEPT_CURRENT", `"+8613800138000"`},
		{"set_value", `{"choice":"set_value","value":"+8613800138001","resolved_by":"bootstrap-admin"}`, events.ChoiceSetValue, ptr("+8613800138001"), "SET_VALUE", `"+8613800138001"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t) // each resolution on a fresh store
			pub := &publisher{}
			h := newServer(t, f, pub)
			got := decode[api.ResolveAccepted](t, call(t, h, "POST", target, tc.body), http.StatusAccepted)
			evs := pub.published()
			if len(evs) != 1 {
				t.Fatalf("%d events published, want 1", len(evs))
			}
			ev := evs[0]
			want := &events.CustomerEvent{
				EventID: got.EventID, CustomerID: liNa, Channel: events.ChannelAgent, Source: "api@console-1", Op: events.OpResolve,
				OccurredAt: now, IngestedAt: now,
				Resolution: &events.Resolution{ConflictID: liID, Field: "phone", Choice: tc.choice, Value: tc.value, ResolvedBy: "bootstrap-admin"},
			}
			if diff := cmp.Diff(want, ev); diff != "" {
				t.Errorf("published event (-want +got):\n%s", diff)
			}
			if got.ConflictID != liID || got.CustomerID != liNa || got.EventID == "" {
				t.Errorf("answer %+v", got)
			}
			// The conflict stays open until the event is materialised.
			if c := decode[api.Customer](t, call(t, h, "GET", "/api/v1/customers/"+liNa, ""), 200).Conflicts[0]; c.Status != "OPEN" {
				t.Errorf("before materialising: %s", c.Status)
			}
			f.feed(t, ev)
			li := decode[api.Customer](t, call(t, h, "GET", "/api/v1/customers/"+liNa, ""), 200)
			if c := li.Conflicts[0]; c.Status != tc.status || c.ResolvedBy == nil || *c.ResolvedBy != "bootstrap-admin" || li.NeedsReview {
				t.Errorf("after materialising: %+v", c)
			}
			if phone := li.Fields["phone"]; string(phone.Value) != tc.phone {
				t.Errorf("phone %s, want %s", phone.Value, tc.phone)
			} else if tc.choice != events.ChoiceKeepCurrent && (phone.Channel != "AGENT" || phone.EventID != got.EventID) {
				t.Errorf("phone written by %s %s, want the resolution %s", phone.Channel, phone.EventID, got.EventID)
			}
			wantError(t, call(t, h, "POST", target, tc.body), http.StatusConflict, "already_resolved", tc.status)
		})
	}

	// The web channel, its clock 20 h ahead, sends the current phone again
	// after the conflict opened: the field's register is stamped after any
	// resolution the API can publish now. The resolution accepted with 202
	// must still take effect once materialised.
	for _, tc := range []struct{ body, status, phone string }{
		{`{"choice":"take_candidate","resolved_by":"bootstrap-admin"}`, "TOOK_CANDIDATE", `"+8613911112222"`},
		{`{"choice":"set_value","value":"+8613800138001","resolved_by":"bootstrap-admin"}`, "SET_VALUE", `"+8613800138001"`},
	} {
		t.Run(tc.status+" over a value stamped ahead", func(t *testing.T) {
			f := newFixture(t)
			ahead := upsert(liNa, events.ChannelWeb, now.Add(20*time.Hour), events.Profile{Phone: ptr("+8613800138000")})
			f.feed(t, ahead)
			pub := &publisher{}
			h := newServer(t, f, pub)
			got := decode[api.ResolveAccepted](t, call(t, h, "POST", target, tc.body), http.StatusAccepted)
			for _, ev := range pub.published() {
				f.feed(t, ev)
			}
			li := decode[api.Customer](t, call(t, h, "GET", "/api/v1/customers/"+liNa, ""), 200)
			if c := li.Conflicts[0]; c.Status != tc.status || li.NeedsReview {
				t.Errorf("after materialising: conflict %s, needs review %v; want %s and no review", c.Status, li.NeedsReview, tc.status)
			}
			phone := li.Fields["phone"]
			if string(phone.Value) != tc.phone || phone.EventID != got.EventID || !phone.OccurredAt.After(ahead.OccurredAt) {
				t.Errorf("phone %s by %s at %v, want %s by the resolution %s after %v",
					phone.Value, phone.EventID, phone.OccurredAt, tc.phone, got.EventID, ahead.OccurredAt)
			}
		})
	}

	t.Run("Kafka down", func(t *testing.T) {
		pub := &publisher{err: errors.New("kafka: NOT_ENOUGH_REPLICAS")}
		a := call(t, newServer(t, f, pub), "POST", target, `{"choice":"keep_current","resolved_by":"bootstrap-admin"}`)
		wantError(t, a, http.StatusServiceUnavailable, "unavailable", "retry")
		if got := a.header.Get("Retry-After"); got != "5" {
			t.Errorf("Retry-After %q, want 5", got)
		}
	})
}

func TestUnknownAPIPath(t *testing.T) {
	h := newServer(t, newFixture(t), &publisher{})
	for _, r := range []struct{ method, target string }{
		{"GET", "/api/v1/nothing"},
		{"GET", "/api/v2/customers"},
		{"DELETE", "/api/v1/customers/" + liNa},
		{"POST", "/api/v1/customers"},
		{"GET", "/api/v1/conflicts/x/resolve"},
	} {
		wantError(t, call(t, h, r.method, r.target, ""), http.StatusNotFound, "not_found", r.target)
	}
}

func TestSyncStatusRoute(t *testing.T) {
	f := newFixture(t)
	wantError(t, call(t, newServer(t, f, &publisher{}), "GET", "/api/v1/sync/status", ""), http.StatusNotFound, "not_found", "sync status")
	h := api.Handler(api.Config{Store: f.store, Publisher: &publisher{}, AdminToken: adminToken,
		Status: api.NewStatus(prometheus.NewRegistry(), nil, []string{"web", "phone"})})
	s := decode[api.SyncStatus](t, call(t, h, "GET", "/api/v1/sync/status", ""), http.StatusOK)
	if len(s.Channels) != 2 || s.Channels[0].Channel != "phone" || s.Channels[1].Channel != "web" || s.Errors == nil || s.Groups == nil {
		t.Errorf("status %+v", s)
	}
}

func TestConflict(t *testing.T) {
	f := newFixture(t)
	h := newServer(t, f, &publisher{})
	liID := merge.ConflictID(liNa, "phone", f.events["li-wechat"].EventID)
	c := decode[api.Conflict](t, call(t, h, "GET", "/api/v1/conflicts/"+liID, ""), http.StatusOK)
	if c.ID != liID || c.CustomerID != liNa || c.CustomerName == nil || *c.CustomerName != "李娜" || c.Field != "phone" ||
		string(c.Current) != `"+8613800138000"` || string(c.Candidate) != `"+8613911112222"` || c.CandidateChannel != "WECHAT" || c.Status != "OPEN" {
		t.Errorf("conflict %+v", c)
	}
	jwID := f.events["jw-resolve"].Resolution.ConflictID
	if c := decode[api.Conflict](t, call(t, h, "GET", "/api/v1/conflicts/"+jwID, ""), http.StatusOK); c.Status != "KEPT_CURRENT" || c.ResolvedBy == nil {
		t.Errorf("resolved conflict %+v", c)
	}
	wantError(t, call(t, h, "GET", "/api/v1/conflicts/00000000000000000000000000000000", ""), http.StatusNotFound, "not_found", "00000000000000000000000000000000")
}
