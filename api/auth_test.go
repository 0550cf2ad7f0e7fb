package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omnisync/omnisync/api"
	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/pkg/events"
)

// recorder records the decisions it is given, as Kafka would take them.
type recorder struct {
	mu     sync.Mutex
	audit  []*events.AuditEvent
	events []*events.CustomerEvent
	err    error
}

func (r *recorder) Record(_ context.Context, a *events.AuditEvent, with ...*events.CustomerEvent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.audit = append(r.audit, a)
	r.events = append(r.events, with...)
	return nil
}

func (r *recorder) recorded() ([]*events.AuditEvent, []*events.CustomerEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.audit), slices.Clone(r.events)
}

// desk is an API with accounts over the fixture, and a token per role.
type desk struct {
	f      *fixture
	h      http.Handler
	rec    *recorder
	tokens map[string]string // role → token of an account of that role
	now    time.Time
	clock  *time.Time
}

// newDesk makes the accounts viewer-1, agent-1 and admin-1; with
// passwords, each signs in with "correct horse battery" (bcrypt is slow
// under the race detector: only the tests that sign in ask for them).
func newDesk(t *testing.T, passwords bool) *desk {
	t.Helper()
	f := newFixture(t)
	d := &desk{f: f, rec: &recorder{}, tokens: map[string]string{}}
	clock := now
	d.clock = &clock
	d.h = api.Handler(api.Config{Store: f.store, Publisher: &publisher{}, Recorder: d.rec, Accounts: f.store, AdminToken: adminToken,
		Instance: "console-1", Now: func() time.Time { return *d.clock }})
	for _, role := range []string{"viewer", "agent", "admin"} {
		password := ""
		if passwords {
			password = `,"password":"correct horse battery"`
		}
		created := decode[api.AgentCreated](t, call(t, d.h, "POST", "/api/v1/agents", `{"name":"`+role+`-1","role":"`+role+`"`+password+`}`), http.StatusCreated)
		if created.Name != role+"-1" || created.Role != role || !strings.HasPrefix(created.Token, "osk_") {
			t.Fatalf("created %+v", created)
		}
		d.tokens[role] = created.Token
	}
	return d
}

// samplePath fills a route's path parameters.
func samplePath(pattern string, conflict string) string {
	_, path, _ := strings.Cut(pattern, " ")
	return strings.NewReplacer("{id}/resolve", conflict+"/resolve", "{name}", "viewer-1", "{id}", liNa).Replace(path)
}

// Every route checks the caller's role before anything else: a caller
// below the route's role gets 403 (401 without credentials) and nothing
// is published; one at or above it gets past the check.
func TestEveryRouteChecksTheRole(t *testing.T) {
	roles := api.RouteRoles()
	if len(roles) < 17 {
		t.Fatalf("only %d routes", len(roles))
	}
	rank := map[string]int{"": 0, "viewer": 1, "agent": 2, "admin": 3}
	for pattern, need := range roles {
		d := newDesk(t, false) // one per route: the roles call in rank order, admin last
		for _, role := range []string{"", "viewer", "agent", "admin"} {
			t.Run(pattern+" as "+role, func(t *testing.T) {
				conflict := merge.ConflictID(liNa, "phone", d.f.events["li-wechat"].EventID)
				auth := ""
				if role != "" {
					auth = "Bearer " + d.tokens[role]
				}
				before, _ := d.rec.recorded()
				method, _, _ := strings.Cut(pattern, " ")
				a := callAs(t, d.h, auth, method, samplePath(pattern, conflict), `{}`)
				after, published := d.rec.recorded()
				switch {
				case need == "": // sign-in: {} is wrong credentials, not a missing role
					wantError(t, a, http.StatusUnauthorized, "unauthorized", "wrong name, password or token")
				case role == "":
					wantError(t, a, http.StatusUnauthorized, "unauthorized", "Authorization: Bearer")
				case rank[role] < rank[need]:
					wantError(t, a, http.StatusForbidden, "forbidden", "needs the role "+need)
				default:
					if a.code == 401 || a.code == 403 {
						t.Errorf("%s refused: %d %s", role, a.code, a.body)
					}
				}
				if (role == "" || rank[role] < rank[need]) && (len(after) != len(before) || len(published) != 0) {
					t.Errorf("refused, yet %d audit and %d customer events were published", len(after)-len(before), len(published))
				}
			})
		}
	}
}

// A viewer's resolve is refused and nothing is published; an agent's is
// attributed to the agent whatever the body says, and a body naming
// someone else is refused.
func TestResolveIsAttributedToTheCaller(t *testing.T) {
	d := newDesk(t, false)
	target := "/api/v1/conflicts/" + merge.ConflictID(liNa, "phone", d.f.events["li-wechat"].EventID) + "/resolve"
	wantError(t, callAs(t, d.h, "Bearer "+d.tokens["viewer"], "POST", target, `{"choice":"keep_current"}`), http.StatusForbidden, "forbidden", "agent")
	wantError(t, callAs(t, d.h, "Bearer "+d.tokens["agent"], "POST", target, `{"choice":"keep_current","resolved_by":"admin-1"}`),
		http.StatusBadRequest, "invalid_request", "the resolver is the caller, agent-1")
	if _, evs := d.rec.recorded(); len(evs) != 0 {
		t.Fatalf("%d events published by refused calls", len(evs))
	}
	got := decode[api.ResolveAccepted](t, callAs(t, d.h, "Bearer "+d.tokens["agent"], "POST", target, `{"choice":"keep_current"}`), http.StatusAccepted)
	audit, evs := d.rec.recorded()
	if len(evs) != 1 || evs[0].Resolution.ResolvedBy != "agent-1" || evs[0].EventID != got.EventID {
		t.Fatalf("published %+v, want one resolution by agent-1", evs)
	}
	last := audit[len(audit)-1]
	if last.Actor != "agent-1" || last.ActorRole != "agent" || last.Action != "conflict.resolve" || last.CustomerID != liNa ||
		last.Details["resolve_event_id"] != got.EventID {
		t.Errorf("audit event %+v", last)
	}
	d.f.feed(t, evs[0])
	li := decode[api.Customer](t, call(t, d.h, "GET", "/api/v1/customers/"+liNa, ""), 200)
	if c := li.Conflicts[0]; c.ResolvedBy == nil || *c.ResolvedBy != "agent-1" {
		t.Errorf("resolved by %v, want agent-1", c.ResolvedBy)
	}
}

// session signs in and returns the session and CSRF cookies and token.
func signIn(t *testing.T, h http.Handler, name, password string) ([]*http.Cookie, string) {
	t.Helper()
	r := httptest.NewRequest("POST", "/api/v1/session", strings.NewReader(`{"name":"`+name+`","password":"`+password+`"}`))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusCreated {
		t.Fatalf("sign-in: %d %s", w.Code, w.Body)
	}
	var s api.Session
	if err := json.Unmarshal(w.Body.Bytes(), &s); err != nil || s.CSRFToken == "" {
		t.Fatalf("sign-in answer %s: %v", w.Body, err)
	}
	cookies := w.Result().Cookies()
	for _, c := range cookies {
		switch c.Name {
		case api.SessionCookie:
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Expires.IsZero() || c.Secure {
				t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, an expiry, not Secure without TLS", c)
			}
		case api.CSRFCookie:
			if c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Value != s.CSRFToken {
				t.Errorf("CSRF cookie %+v", c)
			}
		}
	}
	if len(cookies) != 2 {
		t.Fatalf("cookies %v", cookies)
	}
	return cookies, s.CSRFToken
}

func callWithCookies(h http.Handler, cookies []*http.Cookie, csrf, method, target, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	for _, c := range cookies {
		r.AddCookie(c)
	}
	if csrf != "" {
		r.Header.Set(api.CSRFHeader, csrf)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestSessions(t *testing.T) {
	d := newDesk(t, true)
	cookies, csrf := signIn(t, d.h, "agent-1", "correct horse battery")
	if w := callWithCookies(d.h, cookies, "", "GET", "/api/v1/session", ""); w.Code != 200 || !strings.Contains(w.Body.String(), `"name":"agent-1"`) {
		t.Fatalf("whoami: %d %s", w.Code, w.Body)
	}
	target := "/api/v1/conflicts/" + merge.ConflictID(liNa, "phone", d.f.events["li-wechat"].EventID) + "/resolve"
	// A cross-site form post carries the cookie (were SameSite ignored)
	// but cannot carry the CSRF header.
	if w := callWithCookies(d.h, cookies, "", "POST", target, `{"choice":"keep_current"}`); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "csrf") {
		t.Errorf("post without the CSRF token: %d %s", w.Code, w.Body)
	}
	if w := callWithCookies(d.h, cookies, "forged", "POST", target, `{"choice":"keep_current"}`); w.Code != http.StatusForbidden {
		t.Errorf("post with a wrong CSRF token: %d %s", w.Code, w.Body)
	}
	if _, evs := d.rec.recorded(); len(evs) != 0 {
		t.Fatalf("refused posts published %d events", len(evs))
	}
	if w := callWithCookies(d.h, cookies, csrf, "POST", target, `{"choice":"keep_current"}`); w.Code != http.StatusAccepted {
		t.Errorf("post with the CSRF token: %d %s", w.Code, w.Body)
	}

	// Expiry.
	*d.clock = now.Add(api.DefaultSessionTTL)
	if w := callWithCookies(d.h, cookies, "", "GET", "/api/v1/session", ""); w.Code != http.StatusUnauthorized {
		t.Errorf("expired session: %d", w.Code)
	}
	*d.clock = now

	// Sign-out ends the session.
	if w := callWithCookies(d.h, cookies, csrf, "DELETE", "/api/v1/session", ""); w.Code != http.StatusNoContent {
		t.Fatalf("sign-out: %d %s", w.Code, w.Body)
	}
	if w := callWithCookies(d.h, cookies, "", "GET", "/api/v1/session", ""); w.Code != http.StatusUnauthorized {
		t.Errorf("after sign-out: %d", w.Code)
	}
	// Wrong password, unknown name: 401 alike.
	for _, body := range []string{`{"name":"agent-1","password":"wrong password!"}`, `{"name":"nobody","password":"correct horse battery"}`} {
		a := callAs(t, d.h, "", "POST", "/api/v1/session", body)
		wantError(t, a, http.StatusUnauthorized, "unauthorized", "wrong name, password or token")
	}
}

// Disabling an account stops its token and its session at the next
// request.
func TestDisableStopsTokensAndSessions(t *testing.T) {
	d := newDesk(t, true)
	cookies, _ := signIn(t, d.h, "agent-1", "correct horse battery")
	extra := decode[api.TokenCreated](t, call(t, d.h, "POST", "/api/v1/agents/agent-1/tokens", ""), http.StatusCreated)
	for _, tok := range []string{d.tokens["agent"], extra.Token} {
		decode[api.Session](t, callAs(t, d.h, "Bearer "+tok, "GET", "/api/v1/session", ""), 200)
	}
	// Revoking one token leaves the others.
	if tok := decode[api.Token](t, call(t, d.h, "DELETE", "/api/v1/agents/agent-1/tokens/"+extra.TokenID, ""), 200); tok.RevokedAt == nil {
		t.Errorf("revoked token %+v", tok)
	}
	wantError(t, callAs(t, d.h, "Bearer "+extra.Token, "GET", "/api/v1/session", ""), 401, "unauthorized", "")
	decode[api.Session](t, callAs(t, d.h, "Bearer "+d.tokens["agent"], "GET", "/api/v1/session", ""), 200)

	if a := decode[api.Agent](t, call(t, d.h, "DELETE", "/api/v1/agents/agent-1", ""), 200); !a.Disabled {
		t.Errorf("disabled agent %+v", a)
	}
	wantError(t, callAs(t, d.h, "Bearer "+d.tokens["agent"], "GET", "/api/v1/customers", ""), 401, "unauthorized", "")
	if w := callWithCookies(d.h, cookies, "", "GET", "/api/v1/customers", ""); w.Code != http.StatusUnauthorized {
		t.Errorf("disabled account's session: %d", w.Code)
	}
	wantError(t, callAs(t, d.h, "", "POST", "/api/v1/session", `{"name":"agent-1","password":"correct horse battery"}`), 401, "unauthorized", "")

	audit, _ := d.rec.recorded()
	var actions []string
	for _, a := range audit {
		actions = append(actions, a.Actor+" "+a.Action+" "+a.Target)
	}
	want := []string{"bootstrap-admin agent.create viewer-1", "bootstrap-admin agent.create agent-1", "bootstrap-admin agent.create admin-1",
		"agent-1 session.create agent-1", "bootstrap-admin token.create agent-1", "bootstrap-admin token.revoke agent-1", "bootstrap-admin agent.disable agent-1"}
	if !slices.Equal(actions, want) {
		t.Errorf("audit trail:\n%s\nwant:\n%s", strings.Join(actions, "\n"), strings.Join(want, "\n"))
	}
}

func TestAgentsRequests(t *testing.T) {
	d := newDesk(t, true)
	for _, tc := range []struct{ body, reason string }{
		{`{"name":"Ana","role":"agent"}`, "name"},
		{`{"name":"bootstrap-admin","role":"admin"}`, "name"},
		{`{"name":"ana","role":"owner"}`, "role"},
		{`{"name":"ana","role":"agent","password":"short"}`, "at least 12"},
		{`{"name":"ana","role":"agent","extra":1}`, "extra"},
	} {
		wantError(t, call(t, d.h, "POST", "/api/v1/agents", tc.body), 400, "invalid_request", tc.reason)
	}
	wantError(t, call(t, d.h, "POST", "/api/v1/agents", `{"name":"agent-1","role":"agent"}`), 409, "exists", "agent-1")
	list := decode[api.Page[api.Agent]](t, call(t, d.h, "GET", "/api/v1/agents", ""), 200)
	if len(list.Items) != 3 || list.Items[0].Name != "admin-1" || !list.Items[0].HasPassword {
		t.Errorf("agents %+v", list.Items)
	}
	// A new password works, the old one no longer.
	decode[api.Agent](t, call(t, d.h, "PUT", "/api/v1/agents/viewer-1/password", `{"password":"a much better passphrase"}`), 200)
	signIn(t, d.h, "viewer-1", "a much better passphrase")
	wantError(t, callAs(t, d.h, "", "POST", "/api/v1/session", `{"name":"viewer-1","password":"correct horse battery"}`), 401, "unauthorized", "")
	// Kafka down: nothing changes.
	d.rec.err = errors.New("kafka: NOT_ENOUGH_REPLICAS")
	wantError(t, call(t, d.h, "POST", "/api/v1/agents", `{"name":"ana","role":"agent"}`), 503, "unavailable", "nothing changed")
	d.rec.err = nil
	wantError(t, call(t, d.h, "DELETE", "/api/v1/agents/ana", ""), 404, "not_found", "ana")
}

// Repeated failures are limited per account and per address.
func TestFailuresAreRateLimited(t *testing.T) {
	d := newDesk(t, true)
	wrong := `{"name":"agent-1","password":"not the password"}`
	codes := map[int]int{}
	for range 8 {
		codes[callAs(t, d.h, "", "POST", "/api/v1/session", wrong).code]++
	}
	if codes[401] != 5 || codes[429] != 3 {
		t.Errorf("8 wrong passwords for one account: %v, want 5 × 401 then 429", codes)
	}
	// The right password waits too while the account is limited.
	a := callAs(t, d.h, "", "POST", "/api/v1/session", `{"name":"agent-1","password":"correct horse battery"}`)
	wantError(t, a, http.StatusTooManyRequests, "too_many_failures", "wait")
	if a.header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	// Another account from the same address still signs in...
	signIn(t, d.h, "viewer-1", "correct horse battery")
	// ...until the address has used its budget of bad tokens.
	codes = map[int]int{}
	for range 40 {
		codes[callAs(t, d.h, "Bearer osk_x_y", "GET", "/api/v1/customers", "").code]++
	}
	if codes[429] == 0 {
		t.Errorf("40 bad tokens from one address: %v, want 429 at last", codes)
	}
	// Time heals.
	*d.clock = now.Add(10 * time.Minute)
	signIn(t, d.h, "agent-1", "correct horse battery")
}
