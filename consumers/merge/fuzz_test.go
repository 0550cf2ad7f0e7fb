package merge_test

import (
	"fmt"
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
// nothing; the record survives a JSON round trip and its State encodes
// with the customer_state schema.
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
		for i, it := range decodeFuzzOps(data) {
			before := r.CanonicalHash()
			next, out := it.apply(r, nil)
			if r.CanonicalHash() != before {
				t.Fatalf("item %d (%s) modified the input record", i, it)
			}
			checkInvariants(t, r, next, out)
			again, out2 := it.apply(next, nil)
			if out2.Changed || again.CanonicalHash() != next.CanonicalHash() {
				t.Fatalf("item %d (%s) applied twice changed the record: %+v then %+v", i, it, out, out2)
			}
			r = next
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
