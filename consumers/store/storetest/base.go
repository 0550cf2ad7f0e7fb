package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/pkg/events"
)

// RunBase checks Batch.Base: the same batches applied with the records
// they were folded from (so the store may write only the changed child
// rows) and without leave two stores that answer every query alike —
// also where the Base is stale (the store holds another version) or the
// store has no row for it.
func RunBase(t *testing.T, open func(t *testing.T) store.Store) {
	plain, based := open(t), open(t)
	for _, s := range []store.Store{plain, based} {
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	v1, m1 := rich(t, "cus_base")
	other, om := rich(t, "cus_other")
	v2 := fold(t, v1, upsert("cus_base", "b-e6", 6*time.Hour, events.ChannelApp, name("李四"), cleared("email"),
		ident("app_user", "", "u-base")))
	v3 := fold(t, v2, upsert("cus_base", "b-e7", 7*time.Hour, events.ChannelWeb, phone("+8613700000000"), email("new@example.com")))
	v4 := fold(t, v3, remove("cus_base", "b-del", 8*time.Hour))
	m2 := message("cus_base", "b-m2", 9*time.Hour, events.ChannelWeb, "again")
	v5 := foldMessages(t, fold(t, v4, upsert("cus_base", "b-e8", 9*time.Hour, events.ChannelApp, name("Back"),
		ident("app_user", "", "u-back"))), m2)
	v6 := fold(t, v5, upsert("cus_base", "b-e9", 10*time.Hour, events.ChannelCRM, email("crm@example.com"), full()))
	fresh := fold(t, merge.Record{}, upsert("cus_fresh", "f-e1", time.Hour, events.ChannelCRM, name("新"), ident("crm", "", "crm-fresh")))

	steps := []struct {
		name string
		recs []merge.Record
		msgs []events.MessageEvent
		base map[string]merge.Record
	}{
		{"first write", records(v1, other), []events.MessageEvent{m1, om}, nil},
		{"fields, a clear and an identity", records(v2), nil, map[string]merge.Record{"cus_base": v1}},
		{"a conflict", records(v3), nil, map[string]merge.Record{"cus_base": v2}},
		{"a delete", records(v4), nil, map[string]merge.Record{"cus_base": v3}},
		{"re-created with a message", records(v5), []events.MessageEvent{m2}, map[string]merge.Record{"cus_base": v4}},
		{"a stale base", records(v6), nil, map[string]merge.Record{"cus_base": v2}},
		{"a base the store lacks", records(fresh), nil, map[string]merge.Record{"cus_fresh": v1}},
		{"re-delivery", records(v5), nil, map[string]merge.Record{"cus_base": v4}},
	}
	for _, st := range steps {
		apply(t, plain, batch(st.recs, st.msgs...))
		b := batch(st.recs, st.msgs...)
		b.Base = st.base
		apply(t, based, b)
		for _, id := range []string{"cus_base", "cus_other", "cus_fresh"} {
			p, pok, err := plain.Customer(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			g, gok, err := based.Customer(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if pok != gok || p.CanonicalHash() != g.CanonicalHash() {
				t.Errorf("%s: Customer(%s) with Base = version %d (found %v), without %d (found %v)", st.name, id, g.Version, gok, p.Version, pok)
			}
			if pt, gt := timelineIDs(t, plain, id), timelineIDs(t, based, id); !slices.Equal(pt, gt) {
				t.Errorf("%s: timeline of %s with Base %v, without %v", st.name, id, gt, pt)
			}
		}
		for _, q := range []string{"", "张三", "李四", "Back", "新", "+8613800138000", "+8613700000000", "new@example.com", "crm@example.com",
			"other@example.com", "zhang@example.com", "u-base", "u-back", "crm-cus_base", "o-cus_base", "crm-fresh", "o-cus_other"} {
			if p, g := search(t, plain, q), search(t, based, q); !slices.Equal(p, g) {
				t.Errorf("%s: search %q with Base finds %v, without %v", st.name, q, g, p)
			}
		}
		for _, status := range []events.ConflictStatus{"", events.ConflictOpen} {
			if p, g := conflictIDs(t, plain, status), conflictIDs(t, based, status); !slices.Equal(p, g) {
				t.Errorf("%s: conflicts (%q) with Base %v, without %v", st.name, status, g, p)
			}
		}
	}
	checkCustomer(t, based, v6)
	checkCustomer(t, based, fresh)
}
