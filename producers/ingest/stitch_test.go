package ingest

import (
	"testing"
	"time"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/pkg/events"
)

// graph returns a directory holding links (identity key → customer), no
// Kafka behind it.
func graph(links map[string]string) *Directory {
	d := &Directory{links: map[string]string{}, redirects: map[string]string{}, ready: make(chan struct{})}
	for k, c := range links {
		d.links[k] = c
	}
	return d
}

func vid(kind, scope, value string) events.Identity {
	return events.Identity{Kind: kind, Scope: scope, Value: value, Verified: true}
}

var (
	openid  = vid("wechat_openid", "wx-oa", "o-1")
	mpOpen  = vid("miniprogram_openid", "wx-mp", "m-1")
	unionid = vid("wechat_unionid", "", "u-1")
	caller  = vid("phone", "", "+8613800000001")
	appUser = vid("app_user", "shop", "x-1")
)

func stitchOf(d *Directory, ids ...events.Identity) (Resolution, string, []*events.CustomerEvent) {
	p := New(Config{Directory: d, Now: func() time.Time { return time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC) }})
	res := d.Resolve("", ids, map[string]string{})
	c, evs := p.stitch(res, trigger{id: "ev-1", channel: events.ChannelApp, occurred: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)})
	return res, c, evs
}

func TestResolveFollowsMerges(t *testing.T) {
	d := graph(map[string]string{IdentityKey(openid): "cus_b", IdentityKey(unionid): "cus_c"})
	d.remember(redirectOf("cus_c"), "cus_b")
	d.remember(redirectOf("cus_b"), "cus_a")
	res := d.Resolve("", []events.Identity{openid}, nil)
	if res.CustomerID != "cus_a" || len(res.Linked) != 1 || len(res.Others) != 0 {
		t.Fatalf("openid of a merged customer: %+v, want cus_a (b → a)", res)
	}
	// Both identities reach the same survivor through the chain: no candidate.
	if res := d.Resolve("", []events.Identity{openid, unionid}, nil); res.CustomerID != "cus_a" || len(res.Others) != 0 {
		t.Errorf("two identities of one merged customer: %+v", res)
	}
	// A signed customer ID of a merged customer goes to its survivor too.
	if res := d.Resolve("cus_c", nil, nil); res.CustomerID != "cus_a" {
		t.Errorf("explicit cus_c resolved to %s, want cus_a", res.CustomerID)
	}
	// Unmerged: back to itself.
	d.remember(redirectOf("cus_b"), "cus_b")
	if res := d.Resolve("", []events.Identity{openid}, nil); res.CustomerID != "cus_b" {
		t.Errorf("after unmerge: %s, want cus_b", res.CustomerID)
	}
	// Pending redirects (made earlier in the same request) count.
	if s := d.Survivor("cus_b", map[string]string{IdentityKey(redirectOf("cus_b")): "cus_0"}); s != "cus_0" {
		t.Errorf("pending redirect: %s", s)
	}
}

func TestResolveUnverifiedNeverAttaches(t *testing.T) {
	d := graph(map[string]string{IdentityKey(caller): "cus_p"})
	claimed := caller
	claimed.Verified = false
	res := d.Resolve("", []events.Identity{claimed, {Kind: "web_visitor", Value: "v-1"}}, nil)
	if res.CustomerID == "cus_p" || len(res.Others) != 0 || len(res.Unlinked) != 0 {
		t.Errorf("an unverified phone attached input or proposed a merge: %+v", res)
	}
}

func TestStitchAutoMergesToSmallerID(t *testing.T) {
	// A WeChat login in the app: the app user's customer (cus_x) and the
	// fan's (cus_f, found by unionid) are one person; both are auto kinds.
	d := graph(map[string]string{IdentityKey(appUser): "cus_x", IdentityKey(unionid): "cus_f"})
	res, c, evs := stitchOf(d, appUser, unionid, mpOpen)
	if res.CustomerID != "cus_x" || len(res.Unlinked) != 1 {
		t.Fatalf("resolution %+v", res)
	}
	if c != "cus_f" || len(evs) != 1 {
		t.Fatalf("event goes to %s with %d stitch events, want cus_f (the smaller ID) and one MERGE", c, len(evs))
	}
	m := evs[0]
	if m.Op != events.OpMerge || m.CustomerID != "cus_x" || m.Merge.AbsorbedID != "cus_x" || m.Merge.SurvivorID != "cus_f" ||
		m.Merge.DecidedBy != "policy/wechat_unionid" || len(m.Merge.Evidence) != 2 || m.Merge.PolicyHash != "" {
		t.Errorf("merge request %+v %+v", m, m.Merge)
	}
	// Deterministic: the same trigger gives the same request.
	if _, _, again := stitchOf(d, appUser, unionid, mpOpen); again[0].EventID != m.EventID {
		t.Error("a re-delivered trigger made another merge request")
	}
}

func TestStitchSuggestsOnPhone(t *testing.T) {
	// An app login with the number a caller used: numbers are recycled,
	// so the default policy suggests.
	d := graph(map[string]string{IdentityKey(appUser): "cus_x", IdentityKey(caller): "cus_p"})
	_, c, evs := stitchOf(d, appUser, caller)
	if c != "cus_x" || len(evs) != 1 {
		t.Fatalf("event goes to %s with %d stitch events, want cus_x and one suggestion", c, len(evs))
	}
	s := evs[0]
	if s.Op != events.OpSuggestMerge || s.CustomerID != "cus_p" || s.Merge.SurvivorID != "cus_p" || s.Merge.AbsorbedID != "cus_x" {
		t.Errorf("suggestion %+v %+v: want keyed by the smaller ID cus_p", s, s.Merge)
	}
	// The weaker side decides: the fan's openid (suggest) with its unionid
	// (auto) of another customer is a suggestion too.
	d = graph(map[string]string{IdentityKey(openid): "cus_o", IdentityKey(unionid): "cus_u"})
	if _, c, evs := stitchOf(d, openid, unionid); c != "cus_u" || len(evs) != 1 || evs[0].Op != events.OpSuggestMerge {
		t.Errorf("openid + unionid of two customers: %s %+v", c, evs)
	}
	// A policy that trusts openids merges them.
	pol, err := merge.ParsePolicy([]byte("merge_identities:\n  auto: [wechat_unionid, wechat_openid]\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := New(Config{Directory: d, Policy: pol})
	res := d.Resolve("", []events.Identity{openid, unionid}, nil)
	if c, evs := p.stitch(res, trigger{id: "ev-2", channel: events.ChannelWeChat}); c != "cus_o" || len(evs) != 1 || evs[0].Op != events.OpMerge || evs[0].CustomerID != "cus_u" {
		t.Errorf("with openid auto: %s %+v", c, evs)
	}
}

func TestStitchNeverKinds(t *testing.T) {
	d := graph(map[string]string{IdentityKey(appUser): "cus_x", IdentityKey(vid("device", "", "d-1")): "cus_d"})
	if _, c, evs := stitchOf(d, appUser, vid("device", "", "d-1")); c != "cus_x" || len(evs) != 0 {
		t.Errorf("a device merged or suggested: %s %+v", c, evs)
	}
}

// Only merge requests make redirects: channel input carrying an identity
// of the redirect kind is refused, so no client can point a customer at
// another.
func TestRedirectKindRefused(t *testing.T) {
	p := New(Config{Directory: graph(nil)})
	b := &Batch{Messages: []*events.MessageEvent{{Identities: []events.Identity{
		{Kind: "wechat_openid", Value: "o-1", Verified: true}, {Kind: "customer", Value: "cus_victim", Verified: true}}}}}
	bad := p.Complete(events.ChannelWeChat, b)
	if bad == nil || bad.Field != "messages[0].identities[1].kind" {
		t.Fatalf("a redirect identity in channel input: %v", bad)
	}
}
