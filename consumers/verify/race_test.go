package verify_test

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/consumers/verify"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/schemas"
)

// produceStamped writes v keyed by its customer ID with record timestamp ts,
// which is the order verify --against-log folds the two topics in.
func (r *rig) produceStamped(t testing.TB, ts time.Time, v any) {
	t.Helper()
	b, err := r.serde.Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	rec := &kgo.Record{Value: b, Timestamp: ts}
	switch v := v.(type) {
	case *events.CustomerEvent:
		rec.Topic, rec.Key = schemas.CustomerEventsTopic, []byte(v.CustomerID)
	case *events.MessageEvent:
		rec.Topic, rec.Key = schemas.CustomerMessagesTopic, []byte(v.CustomerID)
	}
	if err := r.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// A DELETE and a message of the same customer race across the two topics:
// the live store folds them in one order (each materialized before the
// other is produced), verify --against-log in the other (it interleaves by
// record timestamp, and the record folded first live carries the later
// one). Customer "newer" gets a message newer than its delete, customer
// "older" one older than its delete. The store and the log agree.
func TestVerifyDeleteAndMessageRace(t *testing.T) {
	r := newRig(t)
	stores := make([]fullStore, len(backends))
	for i, be := range backends {
		stores[i], _ = be.open(t)
	}
	group := testenv.UniqueName(t, "grp")
	start := r.ends(t)
	for _, st := range stores {
		if err := st.Apply(ctx, &store.Batch{Group: group, Offsets: start}); err != nil {
			t.Fatal(err)
		}
	}
	prefix := testenv.UniqueName(t, "cus")
	newer, older := prefix+"_newer", prefix+"_older"
	del := func(customer string, at time.Duration) *events.CustomerEvent {
		return &events.CustomerEvent{EventID: customer + "-del", CustomerID: customer, Channel: events.ChannelAgent, Source: "test/agent",
			Op: events.OpDelete, OccurredAt: base.Add(at), IngestedAt: base.Add(at)}
	}
	withID := func(m *events.MessageEvent) *events.MessageEvent {
		m.Identities = []events.Identity{{Kind: "web_visitor", Value: "v-" + m.CustomerID}}
		return m
	}
	// Record timestamps a few minutes ahead: brokers refuse ones far in
	// the future (log.message.timestamp.after.max.ms).
	now := time.Now()
	later := now.Add(3 * time.Minute)
	materialize := func() {
		for _, st := range stores {
			r.materialize(t, group, st, 3*time.Minute) // other tests may write bursts meanwhile
		}
	}

	// Live: the first step, then the second. Verify: by record timestamp,
	// which puts newer's message after its delete and older's message
	// before its delete.
	r.produceStamped(t, now, upsert(newer, newer+"-e1", time.Minute, events.ChannelCRM, "Newer", "+8613800000101"))
	r.produceStamped(t, later, withID(message(newer, newer+"-m1", 12*time.Minute, "after the delete")))
	r.produceStamped(t, now, upsert(older, older+"-e1", time.Minute, events.ChannelCRM, "Older", "+8613800000102"))
	r.produceStamped(t, later, del(older, 10*time.Minute))
	materialize()
	r.produceStamped(t, now, del(newer, 10*time.Minute))
	r.produceStamped(t, now, withID(message(older, older+"-m1", 5*time.Minute, "before the delete")))
	materialize()

	cfg := verify.Config{Kafka: r.k.Config(), Serde: r.serde, Group: group, From: start, TempDir: t.TempDir(), Logger: zaptest.NewLogger(t)}
	ids := []string{newer, older}
	for i, st := range stores {
		t.Run(backends[i].name, func(t *testing.T) {
			got, ok, err := st.Customer(ctx, newer)
			if err != nil || !ok {
				t.Fatalf("live %s: ok %v, %v", newer, ok, err)
			}
			if got.LastContact == nil || got.LastContact.EventID != newer+"-m1" || len(got.AllIdentities()) != 1 || len(got.Fields) != 0 {
				t.Errorf("live %s: last contact %v, identities %v, fields %v; want the message's contact and identity only",
					newer, got.LastContact, got.AllIdentities(), got.Fields)
			}
			rep, err := verify.AgainstLog(ctx, cfg, st)
			if err != nil {
				t.Fatal(err)
			}
			if d := mine(t, rep, ids); len(d) > 0 {
				t.Fatalf("the store and the log differ where a delete and a message raced: %v", d)
			}
			if rep.Agree < len(ids) {
				t.Fatalf("%s; want both customers to agree", rep.Summary())
			}
		})
	}
}
