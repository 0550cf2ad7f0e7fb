package crm_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/httpauth"
	"github.com/omnisync/omnisync/pkg/normalize"
	"github.com/omnisync/omnisync/producers/crm"
	"github.com/omnisync/omnisync/producers/ingest"
)

func request(key string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, crm.Path, nil)
	r.Header.Set("Authorization", "Bearer "+key)
	return r
}

// The bearer key names the source system, which scopes the CRM's IDs.
func TestKeyNamesTheSystem(t *testing.T) {
	ch := crm.New(map[string]ingest.KeyCredential{"main": {Key: "k-main"}, "erp": {Key: "k-erp"}, "off": {}})
	body := []byte(`{"changes":[{"change_id":"c1","type":"delete","crm_id":"C-1","occurred_at":"2026-11-22T09:00:00Z"}]}`)
	for key, system := range map[string]string{"k-main": "main", "k-erp": "erp"} {
		b, err := ch.Parse(request(key), body)
		if err != nil {
			t.Fatal(err)
		}
		if got := b.Customers[0].Identities; len(got) != 1 || got[0] != (events.Identity{Kind: "crm", Scope: system, Value: "C-1", Verified: true}) {
			t.Errorf("key %s: identities %+v, want crm:%s:C-1", key, got, system)
		}
	}
	for _, key := range []string{"", "k-web", "k-main "} {
		if err := ch.Authenticate(request(key)); !errors.Is(err, httpauth.ErrUnauthorized) {
			t.Errorf("key %q: %v, want unauthorized", key, err)
		}
	}
}

// Each kind of change builds its event; what does not fit its kind is
// refused naming the field.
func TestBuild(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	change := func(typ string) crm.Change {
		return crm.Change{ChangeID: "c1", Type: typ, CRMID: "C-1", OccurredAt: "2026-11-22T09:00:00+08:00"}
	}
	link := change("link")
	link.Identities = []crm.Identity{{Kind: "phone", Value: "138 0013 8000"}, {Kind: "wechat_openid", Scope: "wx1", Value: "o-1"},
		{Kind: "id_number", Value: "110101199003074512"}}
	b, err := crm.Build("main", []crm.Change{link}, now)
	if err != nil {
		t.Fatal(err)
	}
	ev := b.Customers[0]
	if ev.Op != events.OpUpsert || ev.Profile != nil || len(ev.Identities) != 4 || *ev.SourceEventID != "c1" || !ev.OccurredAt.Equal(time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)) {
		t.Fatalf("link event %+v", ev)
	}
	for _, id := range ev.Identities {
		if !id.Verified {
			t.Errorf("identity %+v of a link is not verified", id)
		}
	}
	if ev.Identities[1].Value != "+8613800138000" {
		t.Errorf("linked phone %q not normalised", ev.Identities[1].Value)
	}

	bad := func(mut func(*crm.Change)) []crm.Change {
		c := change("upsert")
		c.Profile = nil
		mut(&c)
		return []crm.Change{c}
	}
	for field, changes := range map[string][]crm.Change{
		"changes":                       nil,
		"changes[0].change_id":          bad(func(c *crm.Change) { c.ChangeID = "" }),
		"changes[0].crm_id":             bad(func(c *crm.Change) { c.CRMID = " " }),
		"changes[0].occurred_at":        bad(func(c *crm.Change) { c.OccurredAt = "yesterday" }),
		"changes[0].type":               bad(func(c *crm.Change) { c.Type = "merge" }),
		"changes[0].profile":            bad(func(c *crm.Change) {}),
		"changes[0].identities":         bad(func(c *crm.Change) { c.Type = "link" }),
		"changes[0].identities[0].kind": bad(func(c *crm.Change) { c.Type, c.Identities = "link", []crm.Identity{{Kind: "web_visitor", Value: "v"}} }),
		"changes[0].identities[0].scope": bad(func(c *crm.Change) {
			c.Type, c.Identities = "link", []crm.Identity{{Kind: "wechat_openid", Value: "o"}}
		}),
		"changes[0]":           bad(func(c *crm.Change) { c.Type, c.Clear = "delete", []string{"name"} }),
		"changes[1].change_id": append(bad(func(c *crm.Change) { c.Type = "delete" }), bad(func(c *crm.Change) { c.Type = "delete" })...),
	} {
		_, err := crm.Build("main", changes, now)
		var invalid *normalize.ValidationError
		if !errors.As(err, &invalid) || invalid.Field != field {
			t.Errorf("want field %s refused, got %v", field, err)
		}
	}
	if _, err := crm.Build("main", make([]crm.Change, crm.MaxChanges+1), now); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("%d changes: %v", crm.MaxChanges+1, err)
	}
}

// The README's example batch is accepted.
func TestExampleBatch(t *testing.T) {
	body, err := os.ReadFile("../../docs/examples/crm-changes.json")
	if err != nil {
		t.Fatal(err)
	}
	b, err := crm.New(map[string]ingest.KeyCredential{"main": {Key: "k"}}).Parse(request("k"), body)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Customers) != 3 || b.Customers[2].Op != events.OpDelete {
		t.Fatalf("example batch %+v", b.Customers)
	}
}
