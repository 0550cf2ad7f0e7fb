package verify_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/omnisync/omnisync/consumers/materializer"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/consumers/verify"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/schemas"
)

// verify --repair while a member of the group keeps applying live traffic
// to the customers being repaired: the repair restores the damage, and no
// live event is lost (with a repair that wrote the fold as of the offsets
// verify began at, the messages applied meanwhile were removed and the
// member, re-seeking to the store's offsets, never wrote them again).
func TestRepairWhileMembersRun(t *testing.T) {
	r := newRig(t)
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			st, exec := be.open(t)
			group := testenv.UniqueName(t, "grp")
			start := r.ends(t)
			if err := st.Apply(ctx, &store.Batch{Group: group, Offsets: start}); err != nil {
				t.Fatal(err)
			}
			prefix := testenv.UniqueName(t, "cus")
			var ids []string
			var history []any
			for i := range 4 {
				id := fmt.Sprintf("%s_%d", prefix, i)
				ids = append(ids, id)
				history = append(history, upsert(id, id+"-e1", time.Minute, events.ChannelCRM, "Name "+id, "+86138000000"+fmt.Sprint(i)),
					message(id, id+"-m1", 2*time.Minute, "hello"))
			}
			r.produce(t, history...)

			// The live member runs from here to the end.
			m, err := materializer.New(materializer.Config{Kafka: r.k.Config(), Group: group, Store: st, Serde: r.serde, Logger: zaptest.NewLogger(t).Named("member")})
			if err != nil {
				t.Fatal(err)
			}
			runCtx, stopMember := context.WithCancel(ctx)
			memberDone := make(chan error, 1)
			go func() { memberDone <- m.Run(runCtx) }()
			defer func() {
				stopMember()
				if err := <-memberDone; err != nil {
					t.Errorf("member: %v", err)
				}
			}()
			waitCaughtUp(t, r, st, group)

			// Damage: a message of each of the three live customers (the
			// member never writes an old message again), and the fourth
			// customer, which gets no more traffic.
			for _, id := range ids[:3] {
				exec(`DELETE FROM messages WHERE message_id = ?`, id+"-m1")
			}
			exec(`DELETE FROM customers WHERE customer_id = ?`, ids[3])

			// Live traffic to the first three customers: a message each
			// time, a new name every other time.
			var mu sync.Mutex
			sent := map[string][]string{}
			lastName := map[string]string{}
			trafficCtx, stopTraffic := context.WithCancel(ctx)
			trafficDone := make(chan struct{})
			go func() {
				defer close(trafficDone)
				for i := 0; trafficCtx.Err() == nil; i++ {
					id := ids[i%3]
					at := 3*time.Minute + time.Duration(i)*time.Second
					values := []any{message(id, fmt.Sprintf("%s-live%05d", id, i), at, "live")}
					name := fmt.Sprintf("Live %d", i)
					if i%2 == 0 {
						values = append(values, upsert(id, fmt.Sprintf("%s-live-e%05d", id, i), at, events.ChannelApp, name, "+86137000000"+fmt.Sprint(i%3)))
					}
					if err := r.produceErr(values...); err != nil {
						t.Errorf("live traffic: %v", err)
						return
					}
					mu.Lock()
					sent[id] = append(sent[id], fmt.Sprintf("%s-live%05d", id, i))
					if i%2 == 0 {
						lastName[id] = name
					}
					mu.Unlock()
					time.Sleep(10 * time.Millisecond)
				}
			}()
			defer func() { stopTraffic(); <-trafficDone }()
			time.Sleep(time.Second) // traffic flows before verify begins, and on through it

			cfg := verify.Config{Kafka: r.k.Config(), Serde: r.serde, Group: group, From: start, TempDir: t.TempDir(), Logger: zaptest.NewLogger(t).Named("verify")}
			repair := cfg
			repair.Repair = true
			rep, err := verify.AgainstLog(ctx, repair, st)
			if err != nil {
				t.Fatal(err)
			}
			var differ []string
			for _, d := range mine(t, rep, ids) {
				differ = append(differ, d.CustomerID)
			}
			for _, id := range ids {
				if !slices.Contains(differ, id) {
					t.Errorf("damaged customer %s not found differing: %s, %v", id, rep.Summary(), rep.Differ)
				}
			}
			if rep.Repaired != len(rep.Differ) {
				t.Errorf("repaired %d customers; want the %d that differ", rep.Repaired, len(rep.Differ))
			}

			time.Sleep(time.Second) // the member applies traffic after the repair too
			stopTraffic()
			<-trafficDone
			waitCaughtUp(t, r, st, group)

			rep, err = verify.AgainstLog(ctx, cfg, st)
			if err != nil {
				t.Fatal(err)
			}
			if d := mine(t, rep, ids); len(d) > 0 {
				t.Errorf("after the repair: %s, differences %v; want every customer to agree", rep.Summary(), d)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, id := range ids[:3] {
				var got []string
				var after *store.Cursor
				for {
					page, err := st.Timeline(ctx, id, after, 100)
					if err != nil {
						t.Fatal(err)
					}
					for _, m := range page {
						got = append(got, m.MessageID)
					}
					if len(page) < 100 {
						break
					}
					after = &store.Cursor{At: page[len(page)-1].OccurredAt.UnixMilli(), ID: page[len(page)-1].MessageID}
				}
				want := append([]string{id + "-m1"}, sent[id]...)
				for _, w := range want {
					if !slices.Contains(got, w) {
						t.Errorf("customer %s: message %s lost (store holds %d of the %d sent)", id, w, len(got), len(want))
					}
				}
				rec, ok, err := st.Customer(ctx, id)
				if err != nil || !ok {
					t.Fatalf("customer %s: ok %v, %v", id, ok, err)
				}
				if got, want := rec.Fields["name"].Value, fmt.Sprintf("%q", lastName[id]); got != want {
					t.Errorf("customer %s: name %s; want the last sent, %s", id, got, want)
				}
			}
			rec, ok, err := st.Customer(ctx, ids[3])
			if err != nil || !ok || rec.Fields["name"].Value != fmt.Sprintf("%q", "Name "+ids[3]) {
				t.Errorf("customer %s removed from the store is not restored: ok %v, %v, %v", ids[3], ok, rec.Fields, err)
			}
			t.Logf("live traffic: %d messages", len(sent[ids[0]])+len(sent[ids[1]])+len(sent[ids[2]]))
		})
	}
}

// waitCaughtUp waits until st holds, for group, the offsets the topics
// end at now.
func waitCaughtUp(t *testing.T, r *rig, st store.Store, group string) {
	t.Helper()
	ends := r.ends(t)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		held, err := st.Offsets(ctx, group)
		if err == nil && store.Covers(held, ends) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the member has not caught up after 2 minutes: store holds %v, want %v (%v)", held, ends, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// produceErr is produce for another goroutine than the test's.
func (r *rig) produceErr(values ...any) error {
	var recs []*kgo.Record
	for _, v := range values {
		b, err := r.serde.Encode(v)
		if err != nil {
			return err
		}
		topic := schemas.CustomerEventsTopic
		var key string
		switch v := v.(type) {
		case *events.CustomerEvent:
			key = v.CustomerID
		case *events.MessageEvent:
			topic, key = schemas.CustomerMessagesTopic, v.CustomerID
		}
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(key), Value: b})
	}
	return r.cl.ProduceSync(ctx, recs...).FirstErr()
}
