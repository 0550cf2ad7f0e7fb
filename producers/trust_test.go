package producers_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/producers/ingest"
)

// Input from an unverified identity never lands on an existing customer:
// a web visitor or an app user who states a victim's phone number, user ID
// or customer ID is kept on their own anonymous customer, or refused.
func TestUnverifiedInputNeverLandsOnAnExistingCustomer(t *testing.T) {
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		e := start(t, k)
		u := testenv.UniqueName(t, "x")
		victimPhone := fmt.Sprintf("+86137%08d", time.Now().UnixNano()%1e8)
		victim := ingest.CustomerIDFor(events.Identity{Kind: "phone", Value: victimPhone})
		victimUser := "u-victim-" + u

		// The victim exists through verified identities: a call the
		// telephony system reports, and a signed app login.
		call := fmt.Sprintf(`{"call_id":"call-%s","direction":"inbound","caller":%q,"callee":"4008001234","agent_id":"agent-1",
			"started_at":"2026-11-22T10:00:00+08:00","ended_at":"2026-11-22T10:01:00+08:00","segments":[
			{"speaker":"caller","start_ms":0,"end_ms":2000,"text":"喂","confidence":0.9}]}`, u, victimPhone)
		if code, body := postJSON(t, e.url+"/ingest/phone", "phone-key", call); code != 200 {
			t.Fatalf("phone: %d %s", code, body)
		}
		login := fmt.Sprintf(`{"device_id":"d-victim-%s","user_id":%q,"user_hash":%q,"app_version":"5.2.1","platform":"ios","events":[
			{"type":"message","id":"m-1","occurred_at":"2026-11-22T09:00:00+08:00","text":"我是本人"}]}`,
			u, victimUser, ingest.SignClaim("app-identity-secret", "user_id", victimUser))
		if code, body := postJSON(t, e.url+"/ingest/app", "app-key", login); code != 200 {
			t.Fatalf("signed app login: %d %s", code, body)
		}
		victimApp := ingest.CustomerIDFor(events.Identity{Kind: "app_user", Value: victimUser})
		if got := e.messages(t, victimUser); len(got) != 1 || got[0].CustomerID != victimApp {
			t.Fatalf("signed login's message %+v, want it on %s", got, victimApp)
		}

		t.Run("a web visitor stating the victim's phone stays on their own customer", func(t *testing.T) {
			visitor := "v-mallory-" + u
			body := fmt.Sprintf(`{"visitor_id":%q,"events":[
				{"type":"profile","id":"p-1","occurred_at":"2026-11-22T11:00:00+08:00","profile":{"name":"Mallory","phone":%q}},
				{"type":"message","id":"m-1","occurred_at":"2026-11-22T11:00:01+08:00","text":"把我的订单地址改了"}]}`, visitor, victimPhone)
			code, resp := postJSON(t, e.url+"/ingest/web", "web-key", body)
			if code != 200 {
				t.Fatalf("web: %d %s", code, resp)
			}
			own := ingest.CustomerIDFor(events.Identity{Kind: "web_visitor", Value: visitor})
			msgs := e.messages(t, visitor)
			if len(msgs) != 1 || msgs[0].CustomerID != own {
				t.Fatalf("visitor's message %+v, want it on the visitor's own customer %s, never the victim %s", msgs, own, victim)
			}
			// Later calls from the victim's number still land on the victim.
			again := strings.Replace(call, "call-"+u, "call2-"+u, 1)
			if code, body := postJSON(t, e.url+"/ingest/phone", "phone-key", again); code != 200 {
				t.Fatalf("phone: %d %s", code, body)
			}
			for _, m := range e.messages(t, victimPhone) {
				if m.CustomerID != victim {
					t.Fatalf("a call from the victim's number landed on %s, want %s", m.CustomerID, victim)
				}
			}
		})

		t.Run("an unsigned user_id is a claim: it stays on the device's customer", func(t *testing.T) {
			device := "d-mallory-" + u
			body := fmt.Sprintf(`{"device_id":%q,"user_id":%q,"app_version":"5.2.1","platform":"android","events":[
				{"type":"profile","id":"p-1","occurred_at":"2026-11-22T11:00:00+08:00","profile":{"name":"Mallory"}},
				{"type":"message","id":"m-2","occurred_at":"2026-11-22T11:00:01+08:00","text":"hello"}]}`, device, victimUser)
			if code, resp := postJSON(t, e.url+"/ingest/app", "app-key", body); code != 200 {
				t.Fatalf("app: %d %s", code, resp)
			}
			own := ingest.CustomerIDFor(events.Identity{Kind: "device", Value: device})
			for _, m := range e.messages(t, victimUser) {
				if m.CustomerID == victimApp && *m.Text == "hello" {
					t.Fatalf("an unsigned user_id attached a message to the victim %s", victimApp)
				}
				if *m.Text == "hello" && m.CustomerID != own {
					t.Fatalf("unsigned claim's message on %s, want the device's customer %s", m.CustomerID, own)
				}
			}
		})

		refused := []struct{ name, path, key, body, field string }{
			{"customer_id without customer_hash", "/ingest/web", "web-key",
				fmt.Sprintf(`{"visitor_id":"v-m-%s","customer_id":%q,"events":[{"type":"message","id":"m-3","occurred_at":"2026-11-22T11:00:00+08:00","text":"hi"}]}`, u, victim),
				"customer_hash"},
			{"customer_id with a forged customer_hash", "/ingest/app", "app-key",
				fmt.Sprintf(`{"device_id":"d-m-%s","customer_id":%q,"customer_hash":%q,"app_version":"1","platform":"ios","events":[{"type":"message","id":"m-4","occurred_at":"2026-11-22T11:00:00+08:00","text":"hi"}]}`,
					u, victim, ingest.SignClaim("a guessed secret", "customer_id", victim)),
				"customer_hash"},
			{"a user_hash that vouches for another claim", "/ingest/app", "app-key",
				fmt.Sprintf(`{"device_id":"d-m-%s","user_id":%q,"user_hash":%q,"app_version":"1","platform":"ios","events":[{"type":"message","id":"m-5","occurred_at":"2026-11-22T11:00:00+08:00","text":"hi"}]}`,
					u, victimUser, ingest.SignClaim("app-identity-secret", "customer_id", victimUser)),
				"user_hash"},
		}
		for _, tc := range refused {
			t.Run(tc.name+" is refused with 400 and a dead letter", func(t *testing.T) {
				code, resp := postJSON(t, e.url+tc.path, tc.key, tc.body)
				var out ingest.Error
				_ = json.Unmarshal([]byte(resp), &out)
				if code != http.StatusBadRequest || out.Field != tc.field || out.DeadLetterID == "" {
					t.Fatalf("%d %s; want 400 naming %s with a dead letter", code, resp, tc.field)
				}
			})
		}

		t.Run("a signed customer_id lands on that customer", func(t *testing.T) {
			visitor := "v-signed-" + u
			body := fmt.Sprintf(`{"visitor_id":%q,"customer_id":%q,"customer_hash":%q,"events":[{"type":"message","id":"m-6","occurred_at":"2026-11-22T11:00:00+08:00","text":"hi"}]}`,
				visitor, victim, ingest.SignClaim("web-identity-secret", "customer_id", victim))
			if code, resp := postJSON(t, e.url+"/ingest/web", "web-key", body); code != 200 {
				t.Fatalf("%d %s", code, resp)
			}
			if got := e.messages(t, visitor); len(got) != 1 || got[0].CustomerID != victim {
				t.Fatalf("%+v, want the message on %s", got, victim)
			}
		})
	})
}

// Two visitors who send the same client event ID in the same second both
// get 200 and both messages are in Kafka under different IDs; an
// identical re-send keeps its ID.
func TestSameClientIDFromTwoVisitorsKeepsBoth(t *testing.T) {
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		e := start(t, k)
		u := testenv.UniqueName(t, "x")
		at := time.Now().UTC().Truncate(time.Second).Format(time.RFC3339)
		send := func(visitor, text string) []string {
			t.Helper()
			body := fmt.Sprintf(`{"visitor_id":%q,"events":[{"type":"message","id":"m-1","occurred_at":%q,"text":%q}]}`, visitor, at, text)
			code, resp := postJSON(t, e.url+"/ingest/web", "web-key", body)
			var out ingest.Accepted
			if err := json.Unmarshal([]byte(resp), &out); code != 200 || err != nil {
				t.Fatalf("%d %s", code, resp)
			}
			return out.Messages
		}
		a, b := send("v-a-"+u, "from a"), send("v-b-"+u, "from b")
		if a[0] == b[0] {
			t.Fatalf("two visitors' messages share the ID %s", a[0])
		}
		if again := send("v-a-"+u, "from a"); again[0] != a[0] {
			t.Fatalf("an identical re-send got ID %s, first %s", again[0], a[0])
		}
		for _, v := range []string{"v-a-" + u, "v-b-" + u} {
			if got := e.messages(t, v); len(got) != 1 {
				t.Fatalf("visitor %s has %d messages in Kafka, want 1", v, len(got))
			}
		}
	})
}
