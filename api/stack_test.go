package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/omnisync/omnisync/api"
	"github.com/omnisync/omnisync/consumers/materializer"
	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store/sqlite"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// stack is the API over a real Kafka, registry and materializer, on topics
// of its own.
type stack struct {
	srv                                *httptest.Server
	cl                                 *kgo.Client
	serde                              *codec.Serde
	st                                 *sqlite.Store
	events, messages, state, auditName string
	kcfg                               kafka.Config
	audit                              *api.AuditLog
}

func newStack(t *testing.T) *stack {
	t.Helper()
	k := testenv.RealKafka(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	reg, _ := testenv.Registry(t)
	serde, err := codec.New(ctx, reg)
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{serde: serde, kcfg: k.Config(), events: testenv.UniqueName(t, "events"), messages: testenv.UniqueName(t, "messages"),
		state: testenv.UniqueName(t, "state"), auditName: testenv.UniqueName(t, "audit")}
	s.cl, err = kafka.NewClient(s.kcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.cl.Close)
	adm := kadm.NewClient(s.cl)
	if _, err := adm.CreateTopics(ctx, 3, 1, nil, s.events, s.messages, s.state); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopics(ctx, 1, 1, nil, s.auditName); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = adm.DeleteTopics(context.Background(), s.events, s.messages, s.state, s.auditName) })
	s.st, err = sqlite.Open(ctx, filepath.Join(t.TempDir(), "omnisync.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.st.Close() })
	log := zaptest.NewLogger(t)
	mat, err := materializer.New(materializer.Config{Kafka: s.kcfg, Group: testenv.UniqueName(t, "group"), Store: s.st, Serde: serde,
		PublishState: true, EventsTopic: s.events, MessagesTopic: s.messages, StateTopic: s.state, Logger: log.Named("materializer")})
	if err != nil {
		t.Fatal(err)
	}
	s.audit, err = api.NewAuditLog(s.kcfg, s.auditName, serde, log.Named("audit"))
	if err != nil {
		t.Fatal(err)
	}
	live, err := api.NewLive(s.kcfg, s.state, serde, log.Named("live"))
	if err != nil {
		t.Fatal(err)
	}
	for _, run := range []func(context.Context) error{mat.Run, s.audit.Run, live.Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("background: %v", err)
			}
		}()
	}
	<-live.Ready()
	pub := api.KafkaPublisher{Client: s.cl, Serde: serde, EventsTopic: s.events, AuditTopic: s.auditName}
	s.srv = httptest.NewServer(api.Handler(api.Config{Store: s.st, Publisher: pub, Recorder: pub, Accounts: s.st, Audit: s.audit,
		Live: live, AdminToken: adminToken, Instance: "stack-test", Logger: log.Named("api")}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *stack) produce(t *testing.T, items ...any) {
	t.Helper()
	var recs []*kgo.Record
	for _, it := range items {
		b, err := s.serde.Encode(it)
		if err != nil {
			t.Fatal(err)
		}
		switch it := it.(type) {
		case *events.CustomerEvent:
			recs = append(recs, &kgo.Record{Topic: s.events, Key: []byte(it.CustomerID), Value: b})
		case *events.MessageEvent:
			recs = append(recs, &kgo.Record{Topic: s.messages, Key: []byte(it.CustomerID), Value: b})
		}
	}
	if err := s.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// req sends a request with a bearer token (or none) and decodes a JSON answer.
func (s *stack) req(t *testing.T, token, method, path, body string, out any) int {
	t.Helper()
	r, err := http.NewRequest(method, s.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

func within(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sse reads a live stream into a channel of events.
func sse(t *testing.T, s *stack, token, query, lastID string) <-chan api.LiveEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r, _ := http.NewRequestWithContext(ctx, "GET", s.srv.URL+"/api/v1/live"+query, nil)
	r.Header.Set("Authorization", "Bearer "+token)
	if lastID != "" {
		r.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("live: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := make(chan api.LiveEvent, 100)
	go func() {
		defer resp.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		event := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && event == "change":
				var ev api.LiveEvent
				if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev) == nil {
					out <- ev
				}
			case strings.HasPrefix(line, "data: ") && event == "resync":
				out <- api.LiveEvent{ID: "resync"}
			}
		}
	}()
	return out
}

func nextChange(t *testing.T, ch <-chan api.LiveEvent, want func(api.LiveEvent) bool) api.LiveEvent {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatal("the live stream ended")
			}
			if want(ev) {
				return ev
			}
		case <-timeout:
			t.Fatal("no such live event within 30 s")
		}
	}
}

// The agent desk on the real stack: roles, attribution in the record, the
// log and the audit trail, live push, disabling, and the audit trail
// rebuilt from the log.
func TestAgentDeskOnTheRealStack(t *testing.T) {
	s := newStack(t)
	customer := testenv.UniqueName(t, "cus")
	tokens := map[string]string{}
	for _, role := range []string{"viewer", "agent"} {
		var created api.AgentCreated
		if code := s.req(t, adminToken, "POST", "/api/v1/agents", `{"name":"`+role+`-1","role":"`+role+`"}`, &created); code != 201 {
			t.Fatalf("add %s: %d", role, code)
		}
		tokens[role] = created.Token
	}
	feed := sse(t, s, tokens["viewer"], "?customer="+url.QueryEscape(customer), "")

	web := upsert(customer, events.ChannelWeb, now, events.Profile{Name: ptr("李娜"), Phone: ptr("+8613800138000")})
	wechat := upsert(customer, events.ChannelWeChat, now.Add(time.Minute), events.Profile{Phone: ptr("+8613911112222")})
	s.produce(t, web, wechat)
	conflictID := merge.ConflictID(customer, "phone", wechat.EventID)
	ev := nextChange(t, feed, func(ev api.LiveEvent) bool { return ev.OpenConflicts == 1 })
	if ev.CustomerID != customer || ev.CommittedAt.IsZero() {
		t.Errorf("live event %+v", ev)
	}

	target := "/api/v1/conflicts/" + conflictID + "/resolve"
	if code := s.req(t, tokens["viewer"], "POST", target, `{"choice":"take_candidate"}`, nil); code != 403 {
		t.Errorf("viewer's resolve: %d, want 403", code)
	}
	if code := s.req(t, tokens["agent"], "POST", target, `{"choice":"take_candidate","resolved_by":"viewer-1"}`, nil); code != 400 {
		t.Errorf("agent's resolve in another's name: %d, want 400", code)
	}
	ends := testenv.EndOffsets(t, s.cl, s.events)
	var total int64
	for _, o := range ends[s.events] {
		total += o.EpochOffset().Offset
	}
	if total != 2 {
		t.Fatalf("the events topic holds %d records after the refused resolves, want the 2 upserts", total)
	}
	var accepted api.ResolveAccepted
	if code := s.req(t, tokens["agent"], "POST", target, `{"choice":"take_candidate"}`, &accepted); code != 202 {
		t.Fatalf("agent's resolve: %d", code)
	}
	ev = nextChange(t, feed, func(ev api.LiveEvent) bool { return slices.Contains(ev.Changes, "resolution") })
	if ev.OpenConflicts != 0 || !slices.Contains(ev.Changes, "field") {
		t.Errorf("live event of the resolution %+v", ev)
	}
	// The record.
	var c api.Customer
	s.req(t, tokens["viewer"], "GET", "/api/v1/customers/"+customer, "", &c)
	if len(c.Conflicts) != 1 || c.Conflicts[0].ResolvedBy == nil || *c.Conflicts[0].ResolvedBy != "agent-1" {
		t.Errorf("the record's conflict %+v, want resolved by agent-1", c.Conflicts)
	}
	// The log.
	logCl, err := kafka.NewClient(s.kcfg, kgo.ConsumeTopics(s.events), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer logCl.Close()
	var resolution *events.CustomerEvent
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for resolution == nil && ctx.Err() == nil {
		logCl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			var ev events.CustomerEvent
			if s.serde.Decode(ctx, r.Value, &ev) == nil && ev.Op == events.OpResolve {
				resolution = &ev
			}
		})
	}
	if resolution == nil || resolution.EventID != accepted.EventID || resolution.Resolution.ResolvedBy != "agent-1" {
		t.Errorf("the RESOLVE event in the log: %+v", resolution)
	}
	// The audit trail.
	var trail api.Page[api.AuditEntry]
	within(t, 10*time.Second, "the resolution in /api/v1/audit", func() bool {
		s.req(t, adminToken, "GET", "/api/v1/audit?actor=agent-1&action=conflict.resolve&customer="+customer, "", &trail)
		return len(trail.Items) == 1
	})
	if e := trail.Items[0]; e.Target != conflictID || e.Details["resolve_event_id"] != accepted.EventID || e.ActorRole != "agent" {
		t.Errorf("audit entry %+v", e)
	}
	if code := s.req(t, tokens["agent"], "GET", "/api/v1/audit", "", nil); code != 403 {
		t.Errorf("an agent reads the audit trail: %d, want 403", code)
	}

	// A new message reaches the stream.
	msg := message(customer, events.ChannelWeChat, now.Add(2*time.Minute), "还在吗？")
	s.produce(t, msg)
	nextChange(t, feed, func(ev api.LiveEvent) bool { return slices.Contains(ev.Changes, "message") })

	// Resuming with Last-Event-ID replays what came after it.
	resumed := sse(t, s, tokens["viewer"], "?customer="+url.QueryEscape(customer), ev.ID)
	if got := nextChange(t, resumed, func(api.LiveEvent) bool { return true }); !slices.Contains(got.Changes, "message") {
		t.Errorf("resumed after the resolution, got %+v first, want the message", got)
	}
	if got := nextChange(t, sse(t, s, tokens["viewer"], "", "0-999999999"), func(api.LiveEvent) bool { return true }); got.ID != "resync" {
		t.Errorf("resuming from an unknown ID: %+v, want resync", got)
	}

	// Disabling stops the agent's token at the next request.
	if code := s.req(t, tokens["agent"], "GET", "/api/v1/customers/"+customer, "", nil); code != 200 {
		t.Fatalf("agent before disabling: %d", code)
	}
	if code := s.req(t, adminToken, "DELETE", "/api/v1/agents/agent-1", "", nil); code != 200 {
		t.Fatalf("disable: %d", code)
	}
	if code := s.req(t, tokens["agent"], "GET", "/api/v1/customers/"+customer, "", nil); code != 401 {
		t.Errorf("disabled agent's token: %d, want 401", code)
	}

	// The audit trail rebuilt from the log is the one the API serves.
	var served api.Page[api.AuditEntry]
	within(t, 10*time.Second, "the disabling in /api/v1/audit", func() bool {
		s.req(t, adminToken, "GET", "/api/v1/audit?limit=500", "", &served)
		return len(served.Items) == 4 // 2 × agent.create, conflict.resolve, agent.disable
	})
	rebuilt, err := api.NewAuditLog(s.kcfg, s.auditName, s.serde, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = rebuilt.Run(rctx) }()
	defer func() { rcancel(); <-done }()
	var again []events.AuditEvent
	within(t, 20*time.Second, "the rebuilt audit trail", func() bool {
		again, _ = rebuilt.Audit(context.Background(), api.AuditFilter{}, "", 500)
		return len(again) >= len(served.Items)
	})
	for i, e := range served.Items {
		if again[i].EventID != e.ID || again[i].Actor != e.Actor || again[i].Action != e.Action {
			t.Errorf("rebuilt entry %d: %+v, served %+v", i, again[i], e)
		}
	}
}
