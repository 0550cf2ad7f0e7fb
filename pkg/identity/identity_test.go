package identity_test

import (
	"testing"
	"time"

	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/identity"
)

func TestRedirect(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	m := func(op events.Op, key, policyHash string) *events.CustomerEvent {
		return &events.CustomerEvent{EventID: "e1", CustomerID: key, Op: op, Channel: events.ChannelAgent,
			Merge: &events.Merge{SurvivorID: "cus_a", AbsorbedID: "cus_b", PolicyHash: policyHash}}
	}
	for _, tc := range []struct {
		name string
		ev   *events.CustomerEvent
		to   string // "" when no redirect
	}{
		{"merge request", m(events.OpMerge, "cus_b", ""), "cus_a"},
		{"unmerge request", m(events.OpUnmerge, "cus_a", ""), "cus_b"},
		{"hand-off", m(events.OpMerge, "cus_a", "h"), ""},
		{"release", m(events.OpUnmerge, "cus_b", "h"), ""},
		{"suggestion", m(events.OpSuggestMerge, "cus_a", ""), ""},
		{"upsert", &events.CustomerEvent{EventID: "e2", CustomerID: "cus_b", Op: events.OpUpsert}, ""},
	} {
		link, ok := identity.Redirect(tc.ev, "api@test", now)
		switch {
		case tc.to == "" && ok:
			t.Errorf("%s: redirect %+v, want none", tc.name, link)
		case tc.to != "" && (!ok || link.CustomerID != tc.to || link.Identity.Kind != identity.RedirectKind ||
			link.Identity.Value != "cus_b" || !link.Identity.Verified || link.EventID != "e1" || !link.LinkedAt.Equal(now)):
			t.Errorf("%s: redirect %+v (%v), want cus_b -> %s", tc.name, link, ok, tc.to)
		}
	}
	if k := identity.Key(events.Identity{Kind: "wechat_openid", Scope: "wx1", Value: "o-1"}); k != "wechat_openid:wx1:o-1" {
		t.Errorf("key %q", k)
	}
}
