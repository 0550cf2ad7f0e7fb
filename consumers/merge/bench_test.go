package merge_test

import (
	"maps"
	"testing"
	"time"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/pkg/events"
)

// BenchmarkApply measures one event (op = event) of a generated log with
// late arrivals, duplicates, conflicts, resolutions and deletes. The
// baseline is a plain mutable last-write-wins map fed the same writes: the
// price of purity, copy-on-write and the conflict rules is the ratio.
func BenchmarkApply(b *testing.B) {
	customers := []string{"cus_a", "cus_b", "cus_c"}
	log := genStream(1, customers, 1000)

	b.Run("stream/baseline=mutable-lww-map", func(b *testing.B) {
		type reg struct {
			value string
			stamp merge.Stamp
		}
		var state map[string]map[string]reg
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if i%len(log) == 0 {
				state = map[string]map[string]reg{}
			}
			it := log[i%len(log)]
			i++
			if it.ev == nil {
				continue
			}
			fields := state[it.ev.CustomerID]
			if fields == nil {
				fields = map[string]reg{}
				state[it.ev.CustomerID] = fields
			}
			s := merge.Stamp{At: it.ev.OccurredAt, EventID: it.ev.EventID}
			for f, v := range refProfileValues(it.ev) {
				if cur, ok := fields[f]; !ok || s.After(cur.stamp) {
					fields[f] = reg{v, s}
				}
			}
		}
	})

	b.Run("stream/merge", func(b *testing.B) {
		var records map[string]merge.Record
		p := merge.DefaultPolicy()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if i%len(log) == 0 {
				records = map[string]merge.Record{}
			}
			it := log[i%len(log)]
			i++
			records[it.customer()], _ = it.apply(records[it.customer()], p)
		}
	})

	// Re-delivery of events already applied, to the final records: mostly
	// the stale path, which should not allocate.
	final := map[string]merge.Record{}
	for _, it := range log {
		final[it.customer()], _ = it.apply(final[it.customer()], nil)
	}
	b.Run("redelivered/merge", func(b *testing.B) {
		p := merge.DefaultPolicy()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			it := log[i%len(log)]
			i++
			it.apply(final[it.customer()], p)
		}
	})
}

// BenchmarkApplyMerged measures one event (op = event) of the same log for
// customers that have each absorbed another: every event folds into the
// merged record and into the survivor's own record, which an unmerge gives
// back. The baseline is the log for customers that never merged.
func BenchmarkApplyMerged(b *testing.B) {
	customers := []string{"cus_a", "cus_b", "cus_c"}
	log := genStream(1, customers, 1000)
	merged := map[string]merge.Record{}
	for _, c := range customers {
		w := newWorld(b)
		other := "cus_z" + c // greater: merges go to the smaller ID
		w.apply(upsert("z-"+c, -time.Hour, crm, forCustomer(other), set("phone", "+8613800000009"), set("name", "Zed"),
			set("attributes.color", "green"), ident("crm", "z"+c)))
		req := event(events.OpMerge, "m-"+c, 0, agent, forCustomer(other))
		req.Merge = &events.Merge{SurvivorID: c, AbsorbedID: other}
		w.apply(req)
		merged[c] = w.recs[c]
	}
	p := merge.DefaultPolicy()
	for _, bc := range []struct {
		name  string
		start map[string]merge.Record
	}{{"stream/baseline=unmerged", map[string]merge.Record{}}, {"stream/merged", merged}} {
		b.Run(bc.name, func(b *testing.B) {
			var records map[string]merge.Record
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i%len(log) == 0 {
					records = maps.Clone(bc.start)
				}
				it := log[i%len(log)]
				i++
				records[it.customer()], _ = it.apply(records[it.customer()], p)
			}
		})
	}
}
