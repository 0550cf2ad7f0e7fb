package merge_test

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/pkg/avro"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/schemas"
)

// fuzzOpSize is how many bytes describe one event of a fuzzed sequence.
const fuzzOpSize = 7

var (
	fuzzChannels = []events.Channel{crm, agent, events.ChannelImport, app, web, events.ChannelMiniProgram, wechat, phone, events.ChannelUnknown, "BOGUS", ""}
	fuzzFields   = []string{"phone", "email", "id_number", "attributes.order_no", "name", "vip_level", "tags", "attributes.color"}
	fuzzValues   = []string{"1", "2", "<&>"}
)

// decodeFuzzOps turns bytes into at most 48 events and messages, fuzzOpSize
// bytes each: kind, channel and source, time (2 bytes), field mask, clear
// mask or value choice, event ID. Event IDs come from a small pool, so
// re-sends and clashing IDs are common.
func decodeFuzzOps(data []byte) []item {
	var items []item
	for len(data) >= fuzzOpSize && len(items) < 48 {
		b := data[:fuzzOpSize]
		data = data[fuzzOpSize:]
		ch := fuzzChannels[int(b[1])%len(fuzzChannels)]
		at := time.Duration(int16(uint16(b[2])<<8|uint16(b[3]))) * time.Minute
		id := fmt.Sprintf("e%02d", b[6]%40)
		e := event(events.OpUpsert, id, at, ch, from(fmt.Sprintf("src-%d", b[1]>>7)))
		switch b[0] % 8 {
		case 0, 1, 2, 3:
			for i, f := range fuzzFields {
				if b[4]>>i&1 == 0 {
					continue
				}
				if b[5]>>i&1 == 1 {
					e.Clears = append(e.Clears, f)
				} else {
					setField(e, f, fuzzValues[(int(b[0]>>3)+i)%len(fuzzValues)])
				}
			}
			if b[0]&0x80 != 0 {
				e.Clears = append(e.Clears, "bogus")
				e.Identities = append(e.Identities, events.Identity{Kind: "phone", Value: fuzzValues[b[5]%3]})
			}
		case 4:
			e.Op = events.OpDelete
		case 5:
			e.Op = events.OpResolve
			field := fuzzFields[b[4]%uint8(len(fuzzFields))]
			choice := []events.ResolutionChoice{events.ChoiceKeepCurrent, events.ChoiceTakeCandidate, events.ChoiceSetValue, events.ChoiceUnknown}[b[0]>>3%4]
			var value *string
			switch b[0] >> 5 % 4 {
			case 1:
				value = ptr(fuzzValues[b[5]%3])
			case 2:
				value = ptr("not json [")
			}
			e.Resolution = &events.Resolution{
				ConflictID: merge.ConflictID(cust, field, fmt.Sprintf("e%02d", b[5]%40)),
				Choice:     choice, Value: value, ResolvedBy: "agent",
			}
			if b[0]&0x80 != 0 {
				e.Resolution.Field = field
			}
		case 6:
			m := message(id, at, ch)
			if b[4]&1 == 1 {
				m.Identities = []events.Identity{{Kind: "wechat_openid", Scope: "wx", Value: fuzzValues[b[5]%3]}}
			}
			items = append(items, item{msg: m})
			continue
		case 7:
			switch b[4] % 4 {
			case 0:
				e.Op = events.OpUnknown
			case 1:
				e.CustomerID = "cus_other"
			case 2:
				e.EventID = ""
			default:
				e.Op = "FUTURE_OP"
			}
		}
		items = append(items, item{ev: e})
	}
	return items
}

// FuzzApply applies fuzzed event sequences and checks what must hold for
// any input: no panic; the input record is never modified; the version
// grows by one exactly when the record changed; NeedsReview says whether a
// conflict is open; re-applying an event right after itself changes
// nothing (but a message's count in the version); every customer's record
// is the same whatever the interleaving of the customer events and the
// messages, each kept in order; the record survives a JSON round trip and
// its State encodes with the customer_state schema.
func FuzzApply(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{
		0, 0, 0, 0, 0x0f, 0, 1, // CRM sets phone, email, id_number, order_no
		0x08, 6, 0, 60, 0x0f, 0, 2, // WECHAT disagrees an hour later: conflicts
		5, 0, 0, 120, 0, 2, 3, // resolve phone's conflict from e02: keep
		0x0d, 0, 0, 130, 1, 2, 4, // take candidate for email's
		4, 1, 1, 0, 0, 0, 5, // delete
		0, 4, 0, 0, 0xff, 0x0f, 6, // older upsert: ignored
		6, 3, 2, 0, 1, 0, 7, // newer message
	})
	f.Add([]byte{
		0, 3, 0, 0, 0x02, 0, 1, 0x08, 0x87, 0, 1, 0x02, 0, 2, // APP sources disagree on email within the window
		0x10, 0x87, 5, 160, 0x02, 0, 3, // and exactly a day after the first
		7, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 7, 0, 0, 0, 2, 0, 0, // ignored kinds
	})

	text := schemas.Current(schemas.CustomerState)
	codec, err := goavro.NewCodec(text)
	if err != nil {
		f.Fatal(err)
	}
	schema, err := avro.Parse(text)
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		var r merge.Record
		items := decodeFuzzOps(data)
		for i, it := range items {
			before := r.CanonicalHash()
			next, out := it.apply(r, nil)
			if r.CanonicalHash() != before {
				t.Fatalf("item %d (%s) modified the input record", i, it)
			}
			checkInvariants(t, r, next, out, it.msg != nil)
			again, out2 := it.apply(next, nil)
			if again.ContentHash() != next.ContentHash() || it.msg == nil && (out2.Changed || again.CanonicalHash() != next.CanonicalHash()) {
				// A message counts in the version each time it is folded.
				t.Fatalf("item %d (%s) applied twice changed the record: %+v then %+v", i, it, out, out2)
			}
			r = next
		}

		// The records depend on the customer events' order and the
		// messages, not on how the two topics interleave.
		evs, msgs := splitTopics(items)
		want := foldItems(items)
		h := fnv.New64a()
		h.Write(data)
		rng := rand.New(rand.NewPCG(h.Sum64(), 1))
		for k, order := range [][]item{slices.Concat(evs, msgs), slices.Concat(msgs, evs), interleave(rng, evs, msgs), interleave(rng, evs, msgs)} {
			got := foldItems(order)
			for c, w := range want {
				if got[c].CanonicalHash() != w.CanonicalHash() {
					t.Fatalf("interleaving %d, %s: the record depends on the interleaving:\nin order    %s\ninterleaved %s", k, c, js(w), js(got[c]))
				}
			}
		}

		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var back merge.Record
		if err := back.UnmarshalJSON(b); err != nil {
			t.Fatal(err)
		}
		if back.CanonicalHash() != r.CanonicalHash() {
			t.Fatalf("JSON round trip changed the record:\n%s", b)
		}
		native, err := avro.ToNative(schema, r.State())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := codec.BinaryFromNative(nil, native); err != nil {
			t.Fatalf("state does not encode: %v", err)
		}
	})
}

// fuzzMergeCustomers are the customers of FuzzMerge, greatest ID last.
var fuzzMergeCustomers = []string{"cus_1", "cus_2", "cus_3"}

// FuzzMerge folds fuzzed sequences of upserts, deletes, resolutions,
// messages, MERGE and UNMERGE requests for three customers, delivering
// what the folds emit late, twice or in between, and checks what must hold
// for any input: no panic; the invariants of every fold; a fold repeated
// right after itself changes nothing and emits nothing; what is emitted
// encodes and comes to an end; each customer's record, refolded from the
// events it received through JSON, is the same; and without deletes each
// customer's own record has the content its own events alone fold to.
func FuzzMerge(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{
		0, 0, 0, 1, 0x0f, // cus_1 upserts
		0, 2, 1, 2, 0x0f, // cus_3 upserts
		3, 2, 0, 3, 0, // MERGE cus_3 into cus_1
		6, 0, 0, 4, 0, // deliver the hand-off
		0, 2, 2, 5, 0x03, // a straggler for cus_3
		6, 0, 0, 6, 0, 7, 0, 0, 7, 0, // deliver it, twice
		4, 0, 0, 8, 0, // UNMERGE cus_1's first absorption
	})
	f.Add([]byte{3, 1, 0, 1, 0, 6, 0, 0, 2, 0, 1, 0, 0, 3, 0, 6, 0, 0, 4, 0, 6, 0, 0, 5, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		p := merge.DefaultPolicy()
		recs := map[string]merge.Record{}
		received := map[string][]*events.CustomerEvent{} // every event each customer got, in order
		own := map[string][]item{}                       // each customer's own events and messages
		var pending, emitted []events.CustomerEvent
		deleted := false
		deliver := func(it item) {
			c := it.customer()
			prev := recs[c]
			next, out := it.apply(prev, p)
			checkInvariants(t, prev, next, out, it.msg != nil)
			again, out2 := it.apply(next, p)
			if it.msg != nil {
				// A message counts in the version each time it is folded
				// (and a merged customer hands its new version off).
				if again.ContentHash() != next.ContentHash() || again.Own != nil && again.Own.ContentHash() != next.Own.ContentHash() ||
					len(out2.Emit) > 0 && next.MergedInto == nil {
					t.Fatalf("%s applied twice changed the record or emitted: %+v", it, out2)
				}
				again, out2 = next, merge.Outcome{}
			}
			if out2.Changed || len(out2.Emit) > 0 || again.CanonicalHash() != next.CanonicalHash() {
				t.Fatalf("%s applied twice changed the record or emitted: %+v", it, out2)
			}
			recs[c] = next
			if it.ev != nil {
				received[c] = append(received[c], it.ev)
			}
			pending = append(pending, out.Emit...)
			emitted = append(emitted, out.Emit...)
		}
		var n int
		for len(data) >= 5 && n < 64 {
			b := data[:5]
			data = data[5:]
			n++
			c := fuzzMergeCustomers[int(b[1])%3]
			at := time.Duration(b[3]) * time.Hour
			id := fmt.Sprintf("e%03d", n)
			var it item
			switch b[0] % 9 {
			case 0: // upsert
				ch := []events.Channel{crm, app, wechat, phone}[b[2]%4]
				e := upsert(id, at, ch, forCustomer(c), from(fmt.Sprintf("src-%d", b[2]>>7)))
				for i, fld := range fuzzFields {
					if b[4]>>i&1 == 1 {
						setField(e, fld, fuzzValues[(int(b[2])+i)%len(fuzzValues)])
					}
				}
				if b[2]&0x40 != 0 {
					e.Identities = []events.Identity{{Kind: "phone", Value: fuzzValues[b[4]%3], Verified: b[2]&0x20 != 0}}
				}
				it = item{ev: e}
			case 1: // message
				m := message(id, at, []events.Channel{web, app}[b[2]%2])
				m.CustomerID = c
				it = item{msg: m}
			case 2: // resolve an open conflict
				open := slices.IndexFunc(recs[c].Conflicts, merge.Conflict.Open)
				if open < 0 {
					continue
				}
				cf := recs[c].Conflicts[open]
				e := event(events.OpResolve, id, at, agent, forCustomer(c), from("console"))
				e.Resolution = &events.Resolution{ConflictID: cf.ID, Field: cf.Field, ResolvedBy: "agent",
					Choice: []events.ResolutionChoice{events.ChoiceKeepCurrent, events.ChoiceTakeCandidate}[b[2]%2]}
				it = item{ev: e}
			case 3: // MERGE request: c into another, whatever the ID order
				s := fuzzMergeCustomers[int(b[2])%3]
				e := event(events.OpMerge, id, at, agent, forCustomer(c), from("console"))
				e.Merge = &events.Merge{SurvivorID: s, AbsorbedID: c}
				it = item{ev: e}
			case 4: // UNMERGE request of one of c's absorptions, or of a made-up merge
				e := event(events.OpUnmerge, id, at, agent, forCustomer(c), from("console"))
				e.Merge = &events.Merge{MergeID: "no-such-merge", SurvivorID: c, AbsorbedID: fuzzMergeCustomers[2]}
				if as := recs[c].Absorbed; len(as) > 0 {
					a := as[int(b[2])%len(as)]
					e.Merge.MergeID, e.Merge.AbsorbedID = a.MergeID, a.CustomerID
				}
				it = item{ev: e}
			case 5: // delete
				it = item{ev: remove(id, at, forCustomer(c))}
				deleted = true
			case 6, 7: // deliver the oldest emitted event (7: and again later)
				if len(pending) == 0 {
					continue
				}
				e := pending[0]
				pending = pending[1:]
				if b[0]%9 == 7 {
					pending = append(pending, e)
				}
				deliver(item{ev: &e})
				continue
			case 8: // re-send an earlier event of c
				if len(own[c]) == 0 {
					continue
				}
				it = own[c][int(b[2])%len(own[c])]
			}
			if it.ev == nil || it.ev.Merge == nil {
				own[c] = append(own[c], it)
			}
			deliver(it)
		}
		for steps := 0; len(pending) > 0; steps++ {
			if steps > 10_000 {
				t.Fatal("emitted events do not come to an end")
			}
			e := pending[0]
			pending = pending[1:]
			deliver(item{ev: &e})
		}
		checkEmitsEncode(t, emitted)

		for _, c := range fuzzMergeCustomers {
			// Refolded through JSON from what c received (messages are
			// left out, so compare with a refold of the same).
			var refold merge.Record
			for _, e := range received[c] {
				b, err := json.Marshal(refold)
				if err != nil {
					t.Fatal(err)
				}
				refold = merge.Record{}
				if err := json.Unmarshal(b, &refold); err != nil {
					t.Fatal(err)
				}
				refold, _ = merge.Apply(refold, e, p)
			}
			var direct merge.Record
			for _, e := range received[c] {
				direct, _ = merge.Apply(direct, e, p)
			}
			if refold.CanonicalHash() != direct.CanonicalHash() {
				t.Fatalf("%s: refold through JSON differs", c)
			}
			if deleted {
				continue
			}
			var ownRec merge.Record
			for _, it := range own[c] {
				ownRec, _ = it.apply(ownRec, p)
			}
			mine := recs[c]
			if mine.Own != nil {
				mine = *mine.Own
			}
			if mine.ContentHash() != ownRec.ContentHash() {
				t.Fatalf("%s: own record differs from its own events' fold:\nrecord %s\nown    %s", c, js(mine), js(ownRec))
			}
		}
	})
}
