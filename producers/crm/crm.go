// Package crm is the producer of the business's CRM systems: POST
// /ingest/crm with a JSON batch of changes (profile upserts, deletes and
// identity links), each with the CRM's own change ID, authenticated with
// the bearer key of the source system that sends it (channels.crm in the
// credentials: one key per system).
//
// The CRM vouches for its own customer ID: every change carries the
// verified identity crm:<system>:<crm_id>, which the identity directory
// resolves to an omnisync customer (the first change of a CRM ID derives
// one and links it). A link change adds identities the CRM vouches for
// (an app user, a WeChat unionid, a phone number…) to that customer: each
// not yet in the directory is linked to it; one already linked to another
// customer keeps its link (customers are never merged automatically).
package crm

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/httpauth"
	"github.com/omnisync/omnisync/pkg/normalize"
	"github.com/omnisync/omnisync/producers/chatjson"
	"github.com/omnisync/omnisync/producers/ingest"
)

// Path is the channel's endpoint.
const Path = "/ingest/crm"

// Limits on a batch.
const (
	MaxChanges    = 100
	MaxIdentities = 10 // per link change
)

// IdentityKind is the kind of the identity a CRM's customer ID is; its
// scope is the source system's name.
const IdentityKind = "crm"

// Request is the body a CRM posts.
type Request struct {
	Changes []Change `json:"changes"`
}

// Change is one change of the CRM.
type Change struct {
	ChangeID   string `json:"change_id"` // the CRM's ID of the change; a change sent again is absorbed
	Type       string `json:"type"`      // upsert, delete or link
	CRMID      string `json:"crm_id"`    // the CRM's ID of the customer
	OccurredAt string `json:"occurred_at"`

	Profile *chatjson.Profile `json:"profile,omitempty"` // upsert
	Clear   []string          `json:"clear,omitempty"`   // upsert

	Identities []Identity `json:"identities,omitempty"` // link
}

// Identity is an identity a link change vouches for.
type Identity struct {
	Kind  string `json:"kind"`            // app_user, wechat_unionid, wechat_openid, miniprogram_openid, phone, email or id_number
	Scope string `json:"scope,omitempty"` // the WeChat app ID of an openid
	Value string `json:"value"`
}

// Channel is the CRM channel.
type Channel struct {
	systems map[string]ingest.KeyCredential
	now     func() time.Time
}

// New returns the channel; systems maps each source system's name to its
// bearer key.
func New(systems map[string]ingest.KeyCredential) *Channel {
	return &Channel{systems: systems, now: time.Now}
}

// Channel names the channel.
func (c *Channel) Channel() events.Channel { return events.ChannelCRM }

// Authenticate checks that the bearer key is one of the systems'.
func (c *Channel) Authenticate(r *http.Request) error {
	_, err := c.system(r)
	return err
}

// system returns the source system whose key the request carries.
func (c *Channel) system(r *http.Request) (string, error) {
	names := make([]string, 0, len(c.systems))
	for n := range c.systems {
		names = append(names, n)
	}
	slices.Sort(names)
	found := ""
	for _, n := range names { // every key is compared, so the time taken says nothing about which matched
		if httpauth.CheckBearer(r, c.systems[n].Key) == nil && found == "" {
			found = n
		}
	}
	if found == "" {
		return "", fmt.Errorf("%w: the bearer key is no CRM system's", httpauth.ErrUnauthorized)
	}
	return found, nil
}

// Parse decodes and checks a batch of changes.
func (c *Channel) Parse(r *http.Request, body []byte) (*ingest.Batch, error) {
	system, err := c.system(r)
	if err != nil {
		return nil, err
	}
	var req Request
	if err := chatjson.Decode(body, &req); err != nil {
		return nil, err
	}
	return Build(system, req.Changes, c.now())
}

// Build validates a source system's changes into a batch of customer
// events.
func Build(system string, changes []Change, now time.Time) (*ingest.Batch, error) {
	if len(changes) == 0 {
		return nil, normalize.Invalid("changes", "no changes")
	}
	if len(changes) > MaxChanges {
		return nil, normalize.Invalid("changes", "%d changes, at most %d per batch", len(changes), MaxChanges)
	}
	b := &ingest.Batch{}
	seen := map[string]bool{}
	for i, ch := range changes {
		field := fmt.Sprintf("changes[%d]", i)
		changeID, err := normalize.ID(field+".change_id", ch.ChangeID)
		if err != nil {
			return nil, err
		}
		if seen[changeID] {
			return nil, normalize.Invalid(field+".change_id", "%q appears twice in the batch", changeID)
		}
		seen[changeID] = true
		crmID, err := normalize.ID(field+".crm_id", ch.CRMID)
		if err != nil {
			return nil, err
		}
		at, err := chatjson.Timestamp(field+".occurred_at", ch.OccurredAt, now)
		if err != nil {
			return nil, err
		}
		owner := []events.Identity{{Kind: IdentityKind, Scope: system, Value: crmID, Verified: true}}
		var ev *events.CustomerEvent
		switch ch.Type {
		case "upsert":
			if len(ch.Identities) > 0 {
				return nil, normalize.Invalid(field+".identities", "only a link change carries identities")
			}
			ev, err = chatjson.ProfileEvent(field, chatjson.Event{Profile: ch.Profile, Clear: ch.Clear}, chatjson.Context{Identities: owner, Now: now})
			if err != nil {
				return nil, err
			}
		case "delete":
			if ch.Profile != nil || len(ch.Clear) > 0 || len(ch.Identities) > 0 {
				return nil, normalize.Invalid(field, "a delete carries no profile, clear or identities")
			}
			ev = &events.CustomerEvent{Op: events.OpDelete, Identities: owner, Clears: []string{}}
		case "link":
			if ch.Profile != nil || len(ch.Clear) > 0 {
				return nil, normalize.Invalid(field, "a link carries identities only (send the profile as an upsert)")
			}
			ids, err := linked(field+".identities", ch.Identities)
			if err != nil {
				return nil, err
			}
			ev = &events.CustomerEvent{Op: events.OpUpsert, Identities: append(owner, ids...), Clears: []string{}}
		default:
			return nil, normalize.Invalid(field+".type", "%q: want upsert, delete or link", ch.Type)
		}
		ev.SourceEventID, ev.OccurredAt, ev.Source = &changeID, at, ingest.SystemSource(events.ChannelCRM, system)
		b.Customers = append(b.Customers, ev)
	}
	return b, nil
}

// linkable are the identity kinds a link change may vouch for, and
// whether each needs a scope (the WeChat app ID of an openid). Session
// identities (device, web visitor) are never verified; another CRM's ID is
// that CRM's to vouch for.
var linkable = map[string]bool{
	"app_user": false, "wechat_unionid": false, "phone": false, "email": false, "id_number": false,
	"wechat_openid": true, "miniprogram_openid": true,
}

// linked checks a link change's identities into verified identities.
func linked(field string, in []Identity) ([]events.Identity, error) {
	if len(in) == 0 {
		return nil, normalize.Invalid(field, "a link change needs at least one identity")
	}
	if len(in) > MaxIdentities {
		return nil, normalize.Invalid(field, "%d identities, at most %d per change", len(in), MaxIdentities)
	}
	out := make([]events.Identity, 0, len(in))
	for i, id := range in {
		f := fmt.Sprintf("%s[%d]", field, i)
		scoped, ok := linkable[id.Kind]
		if !ok {
			return nil, normalize.Invalid(f+".kind", "%q: want app_user, wechat_unionid, wechat_openid, miniprogram_openid, phone, email or id_number", id.Kind)
		}
		var value string
		var err error
		switch id.Kind {
		case "phone":
			value, err = normalize.Phone(f+".value", id.Value)
		case "email":
			value, err = normalize.Email(f+".value", id.Value)
		default:
			value, err = normalize.ID(f+".value", id.Value)
		}
		if err != nil {
			return nil, err
		}
		scope := ""
		switch {
		case scoped:
			if scope, err = normalize.ID(f+".scope", id.Scope); err != nil {
				return nil, normalize.Invalid(f+".scope", "an %s needs the WeChat app ID it belongs to", id.Kind)
			}
		case id.Scope != "":
			return nil, normalize.Invalid(f+".scope", "a %s has no scope", id.Kind)
		}
		out = append(out, events.Identity{Kind: id.Kind, Scope: scope, Value: value, Verified: true})
	}
	return out, nil
}
