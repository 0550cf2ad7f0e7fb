package merge_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/pkg/events"
)

// The model-based test of the customer merge: random logs of upserts,
// resolutions, messages, re-sent events, MERGE and UNMERGE requests for
// four customers on two partitions, folded by a simulated materializer
// that cuts batches at random, crashes before or after producing what a
// batch emitted (so emitted events reach the log twice), and reloads
// records from JSON. Then:
//
//   - a replay of the final log, cut and crashed differently, gives every
//     customer the record of the live run (same CanonicalHash);
//   - each record agrees with refMerge, a plain restatement of the merge
//     rules over refModel, walking the customer's partition in log order;
//   - a customer's own record (the record itself, or Own while it has
//     absorbed others) has the content its own events alone fold to: an
//     unmerge gives both sides back exactly, plus what arrived since.

// mergeCustomers and their partitions: merges within and across.
var (
	mergeCustomers = []string{"cus_a", "cus_b", "cus_c", "cus_d"}
	partitionOf    = map[string]int{"cus_a": 0, "cus_b": 0, "cus_c": 1, "cus_d": 1}
)

// simLog is the two partitions of the events and messages topics.
type simLog [2][]item

// runner is a simulated materializer with its store.
type runner struct {
	log    *simLog
	rng    *rand.Rand
	recs   map[string]merge.Record
	cursor [2]int
	reload bool // keep records as JSON between batches, as a store does
	stats  *mergeStats
}

type mergeStats struct{ batches, crashes, emitted, absorbs, unmerges, ignored int }

// step folds one batch of a partition that has records left; false when
// every partition is folded to its end.
func (r *runner) step(t testing.TB, p *merge.Policy) bool {
	var pending []int
	for i := range r.log {
		if r.cursor[i] < len(r.log[i]) {
			pending = append(pending, i)
		}
	}
	if len(pending) == 0 {
		return false
	}
	part := pending[r.rng.IntN(len(pending))]
	end := min(r.cursor[part]+1+r.rng.IntN(6), len(r.log[part]))
	batch := r.log[part][r.cursor[part]:end]
	tentative := map[string]merge.Record{}
	var emit []events.CustomerEvent
	var counts mergeStats // of this batch, counted when it is committed
	for _, it := range batch {
		c := it.customer()
		rec, ok := tentative[c]
		if !ok {
			rec = r.recs[c]
		}
		next, out := it.apply(rec, p)
		checkInvariants(t, rec, next, out, it.msg != nil)
		if it.ev != nil && it.ev.Op == events.OpMerge && it.ev.Merge != nil && it.ev.Merge.PolicyHash != "" && out.Changed {
			counts.absorbs++
		}
		if it.ev != nil && it.ev.Op == events.OpUnmerge && it.ev.Merge != nil && it.ev.Merge.PolicyHash == "" && out.Changed {
			counts.unmerges++
		}
		if out.Ignored != "" {
			counts.ignored++
		}
		tentative[c] = next
		emit = append(emit, out.Emit...)
	}
	r.stats.batches++
	switch r.rng.IntN(10) {
	case 0: // crash before Kafka acknowledged the emitted events
		r.stats.crashes++
		return true
	case 1: // crash after, before the store commit: emitted again next time
		r.produce(emit)
		r.stats.crashes++
		return true
	}
	r.produce(emit)
	r.stats.absorbs += counts.absorbs
	r.stats.unmerges += counts.unmerges
	r.stats.ignored += counts.ignored
	for c, rec := range tentative {
		if r.reload {
			b, err := json.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			rec = merge.Record{}
			if err := json.Unmarshal(b, &rec); err != nil {
				t.Fatal(err)
			}
		}
		r.recs[c] = rec
	}
	r.cursor[part] = end
	return true
}

func (r *runner) produce(evs []events.CustomerEvent) {
	for _, e := range evs {
		r.log[partitionOf[e.CustomerID]] = append(r.log[partitionOf[e.CustomerID]], item{ev: &e})
		r.stats.emitted++
	}
}

// drain folds until every partition is folded to its end.
func (r *runner) drain(t testing.TB, p *merge.Policy) {
	for n := 0; r.step(t, p); n++ {
		if n > 1_000_000 {
			t.Fatal("emitted events do not end")
		}
	}
}

// mergeItem returns the next generated request or own event.
func (g *generator) mergeItem(live map[string]merge.Record) item {
	c := g.customers[g.rng.IntN(len(g.customers))]
	switch x := g.rng.IntN(100); {
	case x < 6: // MERGE request: c absorbed into another
		s := g.customers[g.rng.IntN(len(g.customers))]
		if s == c || s > c && g.rng.IntN(8) > 0 {
			break // merges go to the smaller ID; some requests break the rule
		}
		e := g.event(events.OpMerge, c)
		e.Channel, e.Source = events.ChannelAgent, "console"
		e.Merge = &events.Merge{SurvivorID: s, AbsorbedID: c, DecidedBy: "agent-1"}
		return item{ev: e}
	case x < 10: // UNMERGE request of one of c's absorptions
		as := live[c].Absorbed
		if len(as) == 0 {
			break
		}
		a := as[g.rng.IntN(len(as))]
		e := g.event(events.OpUnmerge, c)
		e.Channel, e.Source = events.ChannelAgent, "console"
		e.Merge = &events.Merge{MergeID: a.MergeID, SurvivorID: c, AbsorbedID: a.CustomerID, DecidedBy: "agent-1"}
		return item{ev: e}
	case x < 15: // an agent decides a conflict of the merged record
		var open []merge.Conflict
		for _, cf := range live[c].Conflicts {
			if cf.Open() {
				open = append(open, cf)
			}
		}
		if len(open) == 0 {
			break
		}
		cf := open[g.rng.IntN(len(open))]
		e := g.event(events.OpResolve, c)
		e.Channel, e.Source = events.ChannelAgent, "console"
		e.Resolution = &events.Resolution{
			ConflictID: cf.ID, Field: cf.Field, ResolvedBy: "agent-1",
			Choice: []events.ResolutionChoice{events.ChoiceKeepCurrent, events.ChoiceTakeCandidate}[g.rng.IntN(2)],
		}
		return item{ev: e}
	}
	var it item
	switch x := g.rng.IntN(100); {
	case x < 8 && len(g.past[c]) > 0:
		it = g.past[c][g.rng.IntN(len(g.past[c]))]
	case x < 16:
		it = g.resolution(c)
	case x < 28:
		it = item{msg: g.message(c)}
	default:
		it = item{ev: g.upsert(c)}
	}
	g.records[c], _ = it.apply(g.records[c], nil)
	g.past[c] = append(g.past[c], it)
	return it
}

// refMerge is the reference fold of one customer's partition with merges:
// refModels for the merged record and for the customer's own events, and
// the merge bookkeeping, each rule written out plainly.
type refMerge struct {
	customer string
	merged   *refModel
	own      *refModel // nil unless something is absorbed
	absorbed []refAbsorption
	ended    map[string]bool
	frozen   string // the merge ID this customer is absorbed by
	survivor string
}

type refAbsorption struct {
	mergeID, customer string
	snapshot          merge.Record
}

func newRefMerge(c string) *refMerge {
	return &refMerge{customer: c, merged: newRefModel(c), ended: map[string]bool{}}
}

// clone returns a deep copy of m.
func (m *refModel) clone() *refModel {
	c := *m
	c.writes = slices.Clone(m.writes)
	c.keys = maps.Clone(m.keys)
	c.conflicts = map[string]*refConflict{}
	for id, x := range m.conflicts {
		y := *x
		c.conflicts[id] = &y
	}
	c.identities = maps.Clone(m.identities)
	c.messages = slices.Clone(m.messages)
	return &c
}

func (r *refMerge) apply(it item, hash string) {
	e := it.ev
	if e == nil || e.Merge == nil {
		r.merged.apply(it)
		if r.own != nil {
			r.own.apply(it)
		}
		return
	}
	m := e.Merge
	if m.PolicyHash != "" && m.PolicyHash != hash || m.SurvivorID > m.AbsorbedID {
		return
	}
	id := m.MergeID
	switch {
	case e.Op == events.OpMerge && m.PolicyHash == "": // request: freeze
		if id == "" {
			id = e.EventID
		}
		if r.ended[id] || r.frozen != "" {
			return
		}
		r.frozen, r.survivor = id, m.SurvivorID
	case e.Op == events.OpMerge: // hand-off: absorb
		var snap merge.Record
		if err := json.Unmarshal([]byte(*m.SnapshotJSON), &snap); err != nil {
			panic(err)
		}
		if r.ended[id] {
			return
		}
		i := slices.IndexFunc(r.absorbed, func(a refAbsorption) bool { return a.mergeID == id })
		var prev *merge.Record
		if i >= 0 {
			if snap.Version <= r.absorbed[i].snapshot.Version {
				return
			}
			old := r.absorbed[i].snapshot
			prev = &old
			r.absorbed[i].snapshot = snap
		} else {
			r.absorbed = append(r.absorbed, refAbsorption{id, m.AbsorbedID, snap})
		}
		if r.own == nil {
			r.own = r.merged.clone()
		}
		r.merged.absorb(snap, prev)
	case m.PolicyHash == "": // unmerge request: split
		if r.frozen != "" || r.ended[id] {
			return
		}
		r.ended[id] = true
		i := slices.IndexFunc(r.absorbed, func(a refAbsorption) bool { return a.mergeID == id })
		if i < 0 {
			return
		}
		r.absorbed = slices.Delete(r.absorbed, i, i+1)
		r.merged = r.own.clone()
		for _, a := range r.absorbed {
			r.merged.absorb(a.snapshot, nil)
		}
		if len(r.absorbed) == 0 {
			r.own = nil
		}
	default: // release
		r.ended[id] = true
		if r.frozen == id {
			r.frozen, r.survivor = "", ""
		}
	}
}

// absorb folds snapshot a into the model: what changed since prev.
func (m *refModel) absorb(a merge.Record, prev *merge.Record) {
	for _, f := range sortedKeys(a.Fields) {
		g := a.Fields[f]
		if prev != nil {
			if pg, ok := prev.Fields[f]; ok && pg.Value == g.Value && pg.Stamp.EventID == g.Stamp.EventID &&
				pg.Stamp.At.Equal(g.Stamp.At) && pg.Channel == g.Channel && pg.Source == g.Source {
				continue
			}
		}
		w := refWrite{field: f, value: g.Value, stamp: g.Stamp, channel: g.Channel, source: g.Source}
		if !refKeyFields[f] {
			m.writes = append(m.writes, w)
			continue
		}
		cur, ok := m.keys[f]
		switch {
		case !ok:
			m.keys[f] = w
		case cur.stamp.At.Equal(w.stamp.At) && cur.stamp.EventID == w.stamp.EventID:
		case newer(w.stamp, cur.stamp):
			m.keyWrite(w)
		case refWins(w, cur):
			// The survivor's newer write stands.
		default:
			id := merge.ConflictID(m.customer, f, cur.stamp.EventID)
			if m.conflicts[id] != nil {
				continue
			}
			m.keys[f] = w
			if !m.settled(f, w.value, cur.value) {
				m.conflicts[id] = &refConflict{f, w.value, cur.value, cur.stamp.EventID, events.ConflictOpen}
			}
		}
	}
	for _, id := range a.Identities {
		if prev == nil || !slices.Contains(prev.Identities, id) {
			m.addIdentities([]events.Identity{id})
		}
	}
	for _, c := range a.Conflicts {
		if prev != nil && slices.ContainsFunc(prev.Conflicts, func(x merge.Conflict) bool {
			return x.ID == c.ID && x.Status == c.Status
		}) {
			continue
		}
		if x := m.conflicts[c.ID]; x == nil || x.status == events.ConflictOpen && !c.Open() {
			m.conflicts[c.ID] = &refConflict{c.Field, c.Current, c.Candidate, c.CandidateEventID, c.Status}
		}
	}
	// What a's messages brought, as messages that bring just that: the
	// last contact, and each sighting (verified) at its stamps, on no
	// channel, so a last contact of the same stamp keeps its own.
	var msgs []*events.MessageEvent
	if lc := a.LastContact; lc != nil {
		msgs = append(msgs, &events.MessageEvent{MessageID: lc.EventID, OccurredAt: lc.At, Channel: a.LastContactChannel})
	}
	for _, x := range a.Sightings {
		id := events.Identity{Kind: x.Kind, Scope: x.Scope, Value: x.Value}
		msgs = append(msgs, &events.MessageEvent{MessageID: x.Seen.EventID, OccurredAt: x.Seen.At, Identities: []events.Identity{id}})
		if v := x.Verified; v != nil {
			id.Verified = true
			msgs = append(msgs, &events.MessageEvent{MessageID: v.EventID, OccurredAt: v.At, Identities: []events.Identity{id}})
		}
	}
	for _, msg := range msgs {
		if m.admitted(refStamp(msg.OccurredAt, msg.MessageID)) {
			m.messages = append(m.messages, msg)
		}
	}
}

// mergeModelSeeds is how many random logs TestMergeModel checks.
const mergeModelSeeds = 60

func TestMergeModel(t *testing.T) {
	p := merge.DefaultPolicy()
	stats := &mergeStats{}
	var frozenSeen, withAbsorbed, conflicts int
	for seed := range uint64(mergeModelSeeds) {
		g := &generator{
			rng:       rand.New(rand.NewPCG(seed, 0x6d657267)),
			customers: mergeCustomers,
			records:   map[string]merge.Record{},
			past:      map[string][]item{},
		}
		log := &simLog{}
		live := &runner{log: log, rng: rand.New(rand.NewPCG(seed, 1)), recs: map[string]merge.Record{}, stats: stats}
		for range 300 {
			if g.rng.IntN(2) == 0 {
				it := g.mergeItem(live.recs)
				log[partitionOf[it.customer()]] = append(log[partitionOf[it.customer()]], it)
			} else {
				live.step(t, p)
			}
		}
		live.drain(t, p)

		// A replay with other batches and crashes, through JSON.
		replay := &runner{log: log, rng: rand.New(rand.NewPCG(seed, 2)), recs: map[string]merge.Record{}, reload: true, stats: &mergeStats{}}
		replay.drain(t, p)
		for _, c := range mergeCustomers {
			if got, want := replay.recs[c].CanonicalHash(), live.recs[c].CanonicalHash(); got != want {
				t.Fatalf("seed %d, %s: replay differs from the live run:\nlive   %s\nreplay %s", seed, c, js(live.recs[c]), js(replay.recs[c]))
			}
		}

		// A replay under another policy ignores what the live run emitted,
		// emits its own at the end of the log and folds those; a second
		// replay under that policy agrees with it. Every third seed, to
		// keep the test quick under -race.
		if seed%3 == 0 {
			p2 := mustPolicy(t, "conflict_window: 1h")
			other := &runner{log: log, rng: rand.New(rand.NewPCG(seed, 3)), recs: map[string]merge.Record{}, stats: &mergeStats{}}
			other.drain(t, p2)
			again := &runner{log: log, rng: rand.New(rand.NewPCG(seed, 4)), recs: map[string]merge.Record{}, reload: true, stats: &mergeStats{}}
			again.drain(t, p2)
			for _, c := range mergeCustomers {
				if got, want := again.recs[c].CanonicalHash(), other.recs[c].CanonicalHash(); got != want {
					t.Fatalf("seed %d, %s: two replays under another policy differ:\nfirst  %s\nsecond %s", seed, c, js(other.recs[c]), js(again.recs[c]))
				}
			}
		}

		// The reference, and each customer's own events.
		for _, c := range mergeCustomers {
			ref := newRefMerge(c)
			var ownRec merge.Record
			for _, it := range log[partitionOf[c]] {
				if it.customer() != c {
					continue
				}
				ref.apply(it, p.Hash())
				if it.ev == nil || it.ev.Merge == nil {
					ownRec, _ = it.apply(ownRec, p)
				}
			}
			rec := replay.recs[c]
			errs := ref.merged.contentErrs(rec)
			if ref.own != nil {
				if rec.Own == nil {
					errs = append(errs, "no own record, the model has one")
				} else {
					errs = append(errs, ref.own.contentErrs(*rec.Own)...)
				}
			} else if rec.Own != nil {
				errs = append(errs, "an own record, the model has none")
			}
			var frozen string
			if rec.MergedInto != nil {
				frozen = rec.MergedInto.MergeID
				frozenSeen++
			}
			if frozen != ref.frozen {
				errs = append(errs, fmt.Sprintf("merged by %q, model %q", frozen, ref.frozen))
			}
			if len(errs) > 0 {
				t.Fatalf("seed %d, %s: record and reference differ:\n%v\nrecord %s", seed, c, errs, js(rec))
			}
			mine := rec
			if rec.Own != nil {
				mine = *rec.Own
				withAbsorbed++
			}
			if mine.ContentHash() != ownRec.ContentHash() {
				t.Fatalf("seed %d, %s: own record differs from the fold of its own events:\nrecord %s\nown    %s", seed, c, js(mine), js(ownRec))
			}
			conflicts += len(rec.Conflicts)
		}
	}
	t.Logf("%d seeds: %d batches, %d crashes, %d events emitted, %d hand-offs absorbed, %d unmerges, %d ignored; at the end %d frozen, %d with absorbed, %d conflicts",
		mergeModelSeeds, stats.batches, stats.crashes, stats.emitted, stats.absorbs, stats.unmerges, stats.ignored, frozenSeen, withAbsorbed, conflicts)
	if stats.absorbs == 0 || stats.unmerges == 0 || stats.crashes == 0 || frozenSeen == 0 || withAbsorbed == 0 {
		t.Error("the generator does not exercise merges, unmerges and crashes")
	}
}
