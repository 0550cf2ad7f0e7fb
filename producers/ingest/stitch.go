package ingest

import (
	"time"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/pkg/events"
)

// trigger is the event or message whose identities showed other customers:
// the merge requests and suggestions it causes take its channel and time.
type trigger struct {
	id       string
	channel  events.Channel
	occurred time.Time
	explicit bool // the payload named its (verified) customer
}

// stitch decides what an event does to the other customers its verified
// identities are linked to (docs/design.md, Identity graph). For each
// other customer the merge action is the weaker of the two sides' links,
// each side's being the strongest Policy.MergeAction among the event's
// identities linked to it (a signed customer ID counts as auto): a number
// once linked to a caller may since belong to someone else, so a phone
// links only as strongly as the policy says. The customers that merge
// automatically become one: the smallest ID survives, every other gets a
// MERGE request (keyed by it) and the event goes to the survivor. Every
// customer that only may be the same person gets a SUGGEST_MERGE keyed by
// the smaller of the two IDs. It returns the event's customer and the
// requests and suggestions to produce with it.
func (p *Pipeline) stitch(res Resolution, t trigger) (string, []*events.CustomerEvent) {
	if len(res.Others) == 0 {
		return res.CustomerID, nil
	}
	own, ownKind := merge.MergeAuto, "customer_id"
	if !t.explicit {
		own, ownKind = p.strongest(res.Linked)
	}
	survivor, survivorKind := res.CustomerID, ownKind
	type auto struct {
		Candidate
		kind string
	}
	var autos []auto
	var suggest []Candidate
	for _, o := range res.Others {
		a, kind := p.strongest(o.Evidence)
		switch weaker(own, a) {
		case merge.MergeAuto:
			autos = append(autos, auto{o, kind})
			if o.CustomerID < survivor {
				survivor, survivorKind = o.CustomerID, kind
			}
		case merge.MergeSuggest:
			suggest = append(suggest, o)
		}
	}
	var out []*events.CustomerEvent
	evidence := append([]events.Identity(nil), res.Linked...)
	for _, o := range autos {
		evidence = append(evidence, o.Evidence...)
	}
	request := func(absorbed, kind string) {
		out = append(out, p.mergeEvent(events.OpMerge, absorbed, survivor, absorbed, evidence, "policy/"+kind, t))
	}
	if survivor != res.CustomerID {
		request(res.CustomerID, survivorKind)
	}
	for _, o := range autos {
		if o.CustomerID != survivor {
			request(o.CustomerID, o.kind)
		}
	}
	for _, o := range suggest {
		s, a := min(survivor, o.CustomerID), max(survivor, o.CustomerID)
		ev := append(append([]events.Identity(nil), res.Linked...), o.Evidence...)
		out = append(out, p.mergeEvent(events.OpSuggestMerge, s, s, a, ev, "", t))
	}
	return survivor, out
}

// strongest returns the strongest merge action among ids and its kind.
func (p *Pipeline) strongest(ids []events.Identity) (merge.MergeAction, string) {
	best, kind := merge.MergeNever, ""
	for _, id := range ids {
		if a := p.cfg.Policy.MergeAction(id); strength[a] > strength[best] {
			best, kind = a, id.Kind
		}
	}
	return best, kind
}

var strength = map[merge.MergeAction]int{merge.MergeNever: 0, merge.MergeSuggest: 1, merge.MergeAuto: 2}

func weaker(a, b merge.MergeAction) merge.MergeAction {
	if strength[a] < strength[b] {
		return a
	}
	return b
}

// mergeEvent builds a MERGE request or a SUGGEST_MERGE keyed by key. Its ID
// is derived from the trigger's, so a re-delivered trigger gives the same.
func (p *Pipeline) mergeEvent(op events.Op, key, survivor, absorbed string, evidence []events.Identity, decidedBy string, t trigger) *events.CustomerEvent {
	return &events.CustomerEvent{
		EventID:    EventID(t.channel, string(op)+":"+absorbed+">"+survivor, t.id, t.occurred),
		CustomerID: key, Channel: t.channel, Source: p.source(t.channel), Op: op,
		OccurredAt: t.occurred, IngestedAt: p.cfg.Now().UTC().Truncate(time.Millisecond),
		Merge: &events.Merge{SurvivorID: survivor, AbsorbedID: absorbed, Evidence: evidence, DecidedBy: decidedBy},
	}
}
