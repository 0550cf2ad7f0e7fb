package verify_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/omnisync/omnisync/consumers/materializer"
	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/consumers/store/postgres"
	"github.com/omnisync/omnisync/consumers/store/sqlite"
	"github.com/omnisync/omnisync/consumers/verify"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/schemas"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

var ctx = context.Background()

// rig is the real Kafka with the topics and a schema registry.
type rig struct {
	k     testenv.Kafka
	serde *codec.Serde
	cl    *kgo.Client
}

func newRig(t testing.TB) *rig {
	t.Helper()
	k := testenv.RealKafka(t)
	cl, err := kafka.NewClient(k.Config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if _, err := kafka.Provision(ctx, kadm.NewClient(cl), kafka.Layout{Partitions: 6}.Topics()); err != nil {
		t.Fatal(err)
	}
	reg, _ := testenv.Registry(t)
	serde, err := codec.New(ctx, reg)
	if err != nil {
		t.Fatal(err)
	}
	return &rig{k: k, serde: serde, cl: cl}
}

// produce writes events and messages keyed by customer ID, in order.
func (r *rig) produce(t testing.TB, values ...any) {
	t.Helper()
	var recs []*kgo.Record
	for _, v := range values {
		b, err := r.serde.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		switch v := v.(type) {
		case *events.CustomerEvent:
			recs = append(recs, &kgo.Record{Topic: schemas.CustomerEventsTopic, Key: []byte(v.CustomerID), Value: b})
		case *events.MessageEvent:
			recs = append(recs, &kgo.Record{Topic: schemas.CustomerMessagesTopic, Key: []byte(v.CustomerID), Value: b})
		}
	}
	if err := r.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// ends returns the input topics' end offsets now.
func (r *rig) ends(t testing.TB) map[string]map[int32]int64 {
	t.Helper()
	out := map[string]map[int32]int64{}
	for topic, parts := range testenv.EndOffsets(t, r.cl, schemas.CustomerEventsTopic, schemas.CustomerMessagesTopic) {
		out[topic] = map[int32]int64{}
		for p, o := range parts {
			out[topic][p] = o.EpochOffset().Offset
		}
	}
	return out
}

// materialize runs a materializer of group into st until st holds the
// offsets the topics end at now (within timeout), then stops it.
func (r *rig) materialize(t testing.TB, group string, st store.Store, timeout time.Duration) {
	t.Helper()
	ends := r.ends(t)
	m, err := materializer.New(materializer.Config{Kafka: r.k.Config(), Group: group, Store: st, Serde: r.serde, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("materializer: %v", err)
		}
	}()
	deadline := time.Now().Add(timeout)
	for {
		held, err := st.Offsets(ctx, group)
		behind := err != nil
		for topic, parts := range ends {
			for p, end := range parts {
				if end > 0 && held[topic][p] < end {
					behind = true
				}
			}
		}
		if !behind {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("store not caught up after %s: holds %v, want %v (err %v)", timeout, held, ends, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var base = time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)

func upsert(customer, id string, at time.Duration, ch events.Channel, name, phone string) *events.CustomerEvent {
	return &events.CustomerEvent{
		EventID: id, CustomerID: customer, Channel: ch, Source: "test/" + string(ch), Op: events.OpUpsert,
		OccurredAt: base.Add(at), IngestedAt: base.Add(at),
		Identities: []events.Identity{{Kind: "phone", Value: phone}},
		Profile:    &events.Profile{Name: &name, Phone: &phone},
	}
}

func message(customer, id string, at time.Duration, text string) *events.MessageEvent {
	return &events.MessageEvent{
		MessageID: id, CustomerID: customer, ConversationID: "conv-" + customer, Channel: events.ChannelWeb, Source: "test/web",
		Direction: events.DirectionInbound, SenderType: events.SenderCustomer, ContentType: events.ContentText,
		Text: &text, Tags: []string{"t"}, OccurredAt: base.Add(at), IngestedAt: base.Add(at + time.Second),
	}
}

// fullStore is what both stores implement.
type fullStore interface {
	store.Store
	store.Scanner
	store.Replacer
}

// backend is a store under test with raw SQL access for injecting damage.
type backend struct {
	name string
	open func(t *testing.T) (fullStore, func(query string, args ...any))
}

var backends = []backend{
	{"sqlite", func(t *testing.T) (fullStore, func(string, ...any)) {
		path := filepath.Join(t.TempDir(), "omnisync.db")
		st, err := sqlite.Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return st, func(q string, args ...any) {
			t.Helper()
			if _, err := db.ExecContext(ctx, q, args...); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}},
	{"postgres", func(t *testing.T) (fullStore, func(string, ...any)) {
		dsn := testenv.Postgres(t)
		st, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(ctx) })
		return st, func(q string, args ...any) {
			t.Helper()
			q = strings.ReplaceAll(q, "json_set(record, '$.fields.name.value_json', ?)",
				"jsonb_set(record::jsonb, '{fields,name,value_json}', to_jsonb(?::text))::json")
			for i := range args {
				q = strings.Replace(q, "?", fmt.Sprintf("$%d", i+1), 1)
			}
			if _, err := conn.Exec(ctx, q, args...); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}},
}

// scenario produces a small history for fresh customers — profiles,
// messages, a conflict, a delete and a re-creation — and materializes it
// into st, whose group starts where the shared topics end now. It returns
// the customer IDs and the offsets the group started at.
func scenario(t *testing.T, r *rig, group string, sts ...fullStore) ([]string, map[string]map[int32]int64) {
	t.Helper()
	start := r.ends(t)
	for _, st := range sts {
		if err := st.Apply(ctx, &store.Batch{Group: group, Offsets: start}); err != nil {
			t.Fatal(err)
		}
	}
	prefix := testenv.UniqueName(t, "cus")
	var ids []string
	var first []any
	for i := range 8 {
		id := fmt.Sprintf("%s_%d", prefix, i)
		ids = append(ids, id)
		first = append(first,
			upsert(id, id+"-e1", time.Minute, events.ChannelCRM, "Name "+id, "+86138000000"+fmt.Sprint(i)),
			message(id, id+"-m1", 2*time.Minute, "hello"),
			message(id, id+"-m2", 3*time.Minute, "again"),
			upsert(id, id+"-e2", 4*time.Minute, events.ChannelWeb, "Web "+id, "+86139000000"+fmt.Sprint(i)), // a conflict on phone
		)
	}
	// Customer 7 is deleted once its first history is in, then re-created,
	// each step materialized before the next (TestVerifyDeleteAndMessageRace
	// races a delete and a message).
	steps := [][]any{first,
		{&events.CustomerEvent{EventID: ids[7] + "-del", CustomerID: ids[7], Channel: events.ChannelAgent, Source: "test/agent",
			Op: events.OpDelete, OccurredAt: base.Add(5 * time.Minute), IngestedAt: base.Add(5 * time.Minute)},
			upsert(ids[7], ids[7]+"-e3", 6*time.Minute, events.ChannelApp, "Back", "+8613700000007")},
		{message(ids[7], ids[7]+"-m3", 7*time.Minute, "back")},
	}
	for _, step := range steps {
		r.produce(t, step...)
		for _, st := range sts {
			r.materialize(t, group, st, 3*time.Minute) // other tests may write bursts meanwhile
		}
	}
	return ids, start
}

// mine returns the differences of the test's customers (ids share the
// prefix before the last "_"); other tests write to the shared topics
// meanwhile, and those of their customers that differ are only logged.
func mine(t *testing.T, rep *verify.Report, ids []string) []verify.Difference {
	t.Helper()
	prefix := ids[0][:strings.LastIndex(ids[0], "_")+1]
	var out []verify.Difference
	for _, d := range rep.Differ {
		if strings.HasPrefix(d.CustomerID, prefix) {
			out = append(out, d)
		} else {
			t.Logf("another test's customer differs: %s", d)
		}
	}
	return out
}

func TestVerifyAgainstLogAndRepair(t *testing.T) {
	r := newRig(t)
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			st, exec := be.open(t)
			group := testenv.UniqueName(t, "grp")
			ids, start := scenario(t, r, group, st)
			cfg := verify.Config{Kafka: r.k.Config(), Serde: r.serde, Group: group, From: start, TempDir: t.TempDir(), Logger: zaptest.NewLogger(t)}

			rep, err := verify.AgainstLog(ctx, cfg, st)
			if err != nil {
				t.Fatal(err)
			}
			if d := mine(t, rep, ids); len(d) > 0 || rep.Agree < len(ids) {
				t.Fatalf("fresh store: %s, differences %v; want every customer to agree", rep.Summary(), d)
			}

			// Damage: a field, a message, a customer.
			exec(`UPDATE customers SET record = json_set(record, '$.fields.name.value_json', ?) WHERE customer_id = ?`, `"Mallory"`, ids[1])
			exec(`DELETE FROM messages WHERE message_id = ?`, ids[2]+"-m2")
			exec(`DELETE FROM customers WHERE customer_id = ?`, ids[3])
			repair := cfg
			repair.Repair = true
			rep, err = verify.AgainstLog(ctx, repair, st)
			if err != nil {
				t.Fatal(err)
			}
			want := []verify.Difference{
				{CustomerID: ids[1], Parts: []string{`field "name"`}},
				{CustomerID: ids[2], Parts: []string{"message " + ids[2] + "-m2 missing in the store"}},
				{CustomerID: ids[3], Parts: []string{"missing in the store"}},
			}
			if got := mine(t, rep, ids); !slices.EqualFunc(got, want, func(a, b verify.Difference) bool { return a.String() == b.String() }) {
				t.Fatalf("damaged store: differences\n%v\nwant\n%v", got, want)
			}
			if rep.OK() {
				t.Fatal("damaged store: OK() is true")
			}
			if rep.Repaired != len(rep.Differ) {
				t.Fatalf("repaired %d customers; want the %d that differ", rep.Repaired, len(rep.Differ))
			}

			rep, err = verify.AgainstLog(ctx, cfg, st)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK() || rep.Agree < len(ids) {
				t.Fatalf("repaired store: %s, differences %v; want every customer to agree", rep.Summary(), rep.Differ)
			}
			offsets, err := st.Offsets(ctx, group)
			if err != nil {
				t.Fatal(err)
			}
			if len(offsets) == 0 {
				t.Fatal("repair lost the group's offsets")
			}
		})
	}
}

// The same log materialized into SQLite and PostgreSQL gives equal stores;
// damage to one is named.
func TestVerifyStores(t *testing.T) {
	r := newRig(t)
	a, _ := backends[0].open(t)
	b, execB := backends[1].open(t)
	group := testenv.UniqueName(t, "grp")
	ids, _ := scenario(t, r, group, a, b)
	rep, err := verify.Stores(ctx, a, b)
	if err != nil {
		t.Fatal(err)
	}
	if d := mine(t, rep, ids); len(d) > 0 || rep.Agree < len(ids) {
		t.Fatalf("SQLite vs PostgreSQL: %s, differences %v", rep.Summary(), d)
	}
	execB(`DELETE FROM messages WHERE message_id = ?`, ids[7]+"-m3")
	rep, err = verify.Stores(ctx, a, b)
	if err != nil {
		t.Fatal(err)
	}
	if d := mine(t, rep, ids); len(d) != 1 || d[0].String() != ids[7]+": message "+ids[7]+"-m3 missing in the second" {
		t.Fatalf("after deleting a message from the second store: %v", d)
	}
}

// Bad configurations are refused with errors that name the problem.
func TestVerifyRefuses(t *testing.T) {
	r := newRig(t)
	st, _ := backends[0].open(t)
	cfg := verify.Config{Kafka: r.k.Config(), Serde: r.serde, Group: "no-such-group"}
	if _, err := verify.AgainstLog(ctx, cfg, st); err == nil || !strings.Contains(err.Error(), `no offsets for consumer group "no-such-group"`) {
		t.Errorf("unknown group: %v", err)
	}
	if err := st.Apply(ctx, &store.Batch{Group: "g", Offsets: map[string]map[int32]int64{schemas.CustomerEventsTopic: {0: 1 << 60}}}); err != nil {
		t.Fatal(err)
	}
	cfg.Group = "g"
	if _, err := verify.AgainstLog(ctx, cfg, st); err == nil || !strings.Contains(err.Error(), "past the partition's end") {
		t.Errorf("offset past the log's end: %v", err)
	}
}

// A store customer on a partition the group never consumed is reported as
// such.
func TestVerifyNamesUnconsumedPartitions(t *testing.T) {
	r := newRig(t)
	st, _ := backends[0].open(t)
	ends := r.ends(t)
	partitions := int32(len(ends[schemas.CustomerEventsTopic]))
	// The group holds partition 0 of the events topic, at its end (and the
	// fold starts there: nothing to read); a customer of another partition
	// is in the store.
	id := ""
	for i := 0; id == ""; i++ {
		if c := fmt.Sprintf("%s_%d", testenv.UniqueName(t, "cus"), i); testenv.PartitionFor(c, partitions) != 0 {
			id = c
		}
	}
	rec, _ := merge.Apply(merge.Record{}, upsert(id, id+"-e1", time.Minute, events.ChannelCRM, "Stray", "+8613800000099"), nil)
	held := map[string]map[int32]int64{schemas.CustomerEventsTopic: {0: ends[schemas.CustomerEventsTopic][0]}}
	if err := st.Apply(ctx, &store.Batch{Group: "g", Records: []merge.Record{rec}, Offsets: held}); err != nil {
		t.Fatal(err)
	}
	cfg := verify.Config{Kafka: r.k.Config(), Serde: r.serde, Group: "g", From: held, TempDir: t.TempDir()}
	rep, err := verify.AgainstLog(ctx, cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%s: missing in the log; its partition %d was never consumed by group g", id, testenv.PartitionFor(id, partitions))
	if len(rep.Differ) != 1 || rep.Differ[0].String() != want || rep.Agree != 0 {
		t.Fatalf("%s: %v; want [%s]", rep.Summary(), rep.Differ, want)
	}
}
