// Package identity names the entries of the identity directory (the
// compacted identities topic every producer follows): channel identities
// linked to customers, and redirects from a merged customer to its
// survivor (docs/design.md, Identity graph).
package identity

import (
	"strings"
	"time"

	"github.com/omnisync/omnisync/pkg/events"
)

// RedirectKind is the kind of a directory entry that redirects a customer
// ID: {kind: customer, value: A} linked to S means A is merged into S;
// linked to A itself, that A is not (any more) merged.
const RedirectKind = "customer"

// Key is an identity's key in the directory: kind:scope:value, e.g.
// wechat_openid:wx8f3a:o6_bm… or phone::+86138….
func Key(id events.Identity) string {
	return strings.Join([]string{id.Kind, id.Scope, id.Value}, ":")
}

// Redirect returns the directory entry that a MERGE or UNMERGE request
// makes: the absorbed customer redirected to the survivor, or back to
// itself. ok is false for any other event (emitted hand-offs and releases,
// which carry a policy hash, included: the request already made the entry).
func Redirect(ev *events.CustomerEvent, source string, now time.Time) (link *events.IdentityLink, ok bool) {
	m := ev.Merge
	if m == nil || m.PolicyHash != "" || m.AbsorbedID == "" || m.SurvivorID == "" {
		return nil, false
	}
	to := ""
	switch {
	case ev.Op == events.OpMerge && ev.CustomerID == m.AbsorbedID:
		to = m.SurvivorID
	case ev.Op == events.OpUnmerge && ev.CustomerID == m.SurvivorID:
		to = m.AbsorbedID
	default:
		return nil, false
	}
	return &events.IdentityLink{
		Identity:   events.Identity{Kind: RedirectKind, Value: m.AbsorbedID, Verified: true},
		CustomerID: to, Channel: ev.Channel, Source: source, EventID: ev.EventID, LinkedAt: now.UTC(),
	}, true
}
