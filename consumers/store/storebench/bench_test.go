package storebench

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/consumers/store/postgres"
	"github.com/omnisync/omnisync/consumers/store/sqlite"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/events"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

const (
	customers = 100_000
	batchSize = 5000 // the materializer's default MaxBatch
	topic     = "omnisync.customer.events.v1"
)

var (
	ctx    = context.Background()
	t0     = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	policy = merge.DefaultPolicy()
)

// entry is one record of the log: a customer event or a message.
type entry struct {
	ev  *events.CustomerEvent
	msg *events.MessageEvent
}

func (e entry) customer() string {
	if e.ev != nil {
		return e.ev.CustomerID
	}
	return e.msg.CustomerID
}

// eventLog generates a deterministic log over the customers: 79% profile
// upserts of one to three fields from one of five channels (so key fields
// conflict now and then), 20% messages, 1% deletes.
type eventLog struct {
	rng *rand.Rand
	n   int
}

func newLog(seed uint64) *eventLog { return &eventLog{rng: rand.New(rand.NewPCG(seed, 7))} }

var channels = []events.Channel{events.ChannelWeb, events.ChannelApp, events.ChannelWeChat, events.ChannelCRM, events.ChannelPhone}

func (g *eventLog) take(n int) []entry {
	out := make([]entry, n)
	for i := range out {
		g.n++
		c := g.rng.IntN(customers)
		cust, id := customerID(c), fmt.Sprintf("ev_%012d", g.n)
		at := t0.Add(time.Duration(g.n) * 10 * time.Millisecond)
		ch := channels[g.rng.IntN(len(channels))]
		switch r := g.rng.IntN(100); {
		case r < 20:
			text := fmt.Sprintf("message %d", g.n)
			out[i].msg = &events.MessageEvent{
				MessageID: "msg_" + id, CustomerID: cust, ConversationID: "conv-" + cust, Channel: ch, Source: "bench",
				Direction: events.DirectionInbound, SenderType: events.SenderCustomer, SenderID: cust,
				ContentType: events.ContentText, Text: &text, OccurredAt: at, IngestedAt: at,
			}
		case r < 21:
			out[i].ev = &events.CustomerEvent{EventID: id, CustomerID: cust, Channel: events.ChannelAgent, Source: "bench", Op: events.OpDelete, OccurredAt: at, IngestedAt: at}
		default:
			p := &events.Profile{}
			for range 1 + g.rng.IntN(3) {
				v := g.rng.IntN(3)
				switch g.rng.IntN(5) {
				case 0:
					p.Name = ptr(fmt.Sprintf("客户 %d 号 v%d", c, v))
				case 1:
					p.Phone = ptr(fmt.Sprintf("+86138%08d", c*3+v))
				case 2:
					p.Email = ptr(fmt.Sprintf("c%d.v%d@example.com", c, v))
				case 3:
					p.VIPLevel = ptr(int32(v))
				default:
					p.Attributes = map[string]string{"segment": fmt.Sprintf("s%d", v)}
				}
			}
			out[i].ev = &events.CustomerEvent{
				EventID: id, CustomerID: cust, Channel: ch, Source: "bench", Op: events.OpUpsert, OccurredAt: at, IngestedAt: at,
				Profile: p, Identities: []events.Identity{{Kind: "device", Value: fmt.Sprintf("dev-%d-%s", c, ch)}},
			}
		}
	}
	return out
}

func customerID(c int) string { return fmt.Sprintf("cus_%06d", c) }

func ptr[T any](v T) *T { return &v }

// fold folds entries into the stored records like the materializer does
// and returns the batch to apply; stored gets the changed records.
func fold(entries []entry, stored map[string]merge.Record, offset int64) *store.Batch {
	b := &store.Batch{Group: "bench", PolicyHash: policy.Hash(), Offsets: map[string]map[int32]int64{topic: {0: offset}}}
	changed := map[string]bool{}
	for _, e := range entries {
		id := e.customer()
		var o merge.Outcome
		if e.ev != nil {
			stored[id], o = merge.Apply(stored[id], e.ev, policy)
		} else {
			stored[id], o = merge.ApplyMessage(stored[id], e.msg, policy)
			if o.Ignored == "" {
				b.Messages = append(b.Messages, *e.msg)
			}
		}
		if o.Changed {
			changed[id] = true
		}
	}
	for id := range changed {
		b.Records = append(b.Records, stored[id])
	}
	slices.SortFunc(b.Records, func(a, b merge.Record) int { return strings.Compare(a.CustomerID, b.CustomerID) })
	return b
}

// writer is what a benchmark writes batches with.
type writer interface {
	Apply(ctx context.Context, b *store.Batch) error
}

// plainUpsert is the baseline: the same customer, field and message rows
// written the straightforward way, one INSERT … ON CONFLICT per row queued
// in a pgx.Batch in one transaction, without version guard, conflicts,
// identities or tombstone handling.
type plainUpsert struct{ pool *pgxpool.Pool }

func openPlainUpsert(tb testing.TB) *plainUpsert {
	pool, err := pgxpool.New(ctx, testenv.Postgres(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, `
		CREATE TABLE customers (customer_id text PRIMARY KEY, version bigint NOT NULL, name text, phone text, email text,
			updated_at timestamptz NOT NULL, record json NOT NULL);
		CREATE TABLE customer_fields (customer_id text, field text, value json NOT NULL, occurred_at timestamptz NOT NULL,
			event_id text NOT NULL, channel text NOT NULL, source text NOT NULL, PRIMARY KEY (customer_id, field));
		CREATE TABLE messages (message_id text PRIMARY KEY, customer_id text NOT NULL, occurred_at timestamptz NOT NULL, event json NOT NULL);
		CREATE TABLE consumer_offsets (group_id text, topic text, partition integer, next_offset bigint NOT NULL,
			PRIMARY KEY (group_id, topic, partition))`); err != nil {
		tb.Fatal(err)
	}
	return &plainUpsert{pool}
}

func (p *plainUpsert) Apply(ctx context.Context, b *store.Batch) error {
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		batch := &pgx.Batch{}
		for i := range b.Records {
			r := &b.Records[i]
			doc, err := r.MarshalJSON()
			if err != nil {
				return err
			}
			batch.Queue(`INSERT INTO customers (customer_id, version, name, phone, email, updated_at, record) VALUES ($1, $2, $3, $4, $5, $6, $7::text::json)
				ON CONFLICT (customer_id) DO UPDATE SET version = excluded.version, name = excluded.name, phone = excluded.phone,
				email = excluded.email, updated_at = excluded.updated_at, record = excluded.record`,
				r.CustomerID, r.Version, r.Fields["name"].Value, r.Fields["phone"].Value, r.Fields["email"].Value, r.UpdatedAt, string(doc))
			for f, g := range r.Fields {
				batch.Queue(`INSERT INTO customer_fields VALUES ($1, $2, $3::text::json, $4, $5, $6, $7)
					ON CONFLICT (customer_id, field) DO UPDATE SET value = excluded.value, occurred_at = excluded.occurred_at,
					event_id = excluded.event_id, channel = excluded.channel, source = excluded.source`,
					r.CustomerID, f, g.Value, g.Stamp.At, g.Stamp.EventID, string(g.Channel), g.Source)
			}
		}
		for i := range b.Messages {
			m := &b.Messages[i]
			batch.Queue(`INSERT INTO messages VALUES ($1, $2, $3, $4) ON CONFLICT (message_id) DO NOTHING`, m.MessageID, m.CustomerID, m.OccurredAt, m)
		}
		for t, ps := range b.Offsets {
			for p, n := range ps {
				batch.Queue(`INSERT INTO consumer_offsets VALUES ($1, $2, $3, $4)
					ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = excluded.next_offset`, b.Group, t, p, n)
			}
		}
		return tx.SendBatch(ctx, batch).Close()
	})
}

func openSQLite(tb testing.TB) *sqlite.Store {
	s, err := sqlite.Open(ctx, filepath.Join(tb.TempDir(), "bench.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func openPostgres(tb testing.TB) *postgres.Store {
	s, err := postgres.Open(ctx, testenv.Postgres(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkApply100k measures events/s of materializer-style batches — 5000
// log entries folded with consumers/merge into the changed records (about
// 4,800 of 100,000 existing customers) and their messages — applied with
// Store.Apply to SQLite and PostgreSQL, beside the baseline: plain pgx
// upserts of the same customer, field and message rows. Each target is
// first seeded with the same 100,000 customers; then every target applies
// the same sequence of batches. Only Apply is timed (folding and Load
// are not). Needs PostgreSQL for the postgres and baseline cases.
func BenchmarkApply100k(b *testing.B) {
	// The seed: one CRM upsert per customer.
	seed := make([]merge.Record, customers)
	state := make(map[string]merge.Record, customers)
	for c := range customers {
		id := customerID(c)
		r, _ := merge.Apply(merge.Record{}, &events.CustomerEvent{
			EventID: fmt.Sprintf("seed_%06d", c), CustomerID: id, Channel: events.ChannelCRM, Source: "crm", Op: events.OpUpsert,
			OccurredAt: t0.Add(-time.Hour), IngestedAt: t0.Add(-time.Hour),
			Profile: &events.Profile{Name: ptr(fmt.Sprintf("客户 %d 号", c)), Phone: ptr(fmt.Sprintf("+86138%08d", c*3)),
				Email: ptr(fmt.Sprintf("c%d@example.com", c)), Tags: []string{"seed"}},
			Identities: []events.Identity{{Kind: "crm", Value: id}},
		}, policy)
		seed[c], state[id] = r, r
	}
	// The batches every target applies in order, generated on demand.
	log := newLog(1)
	var batches []*store.Batch
	batchAt := func(i int) *store.Batch {
		for len(batches) <= i {
			batches = append(batches, fold(log.take(batchSize), state, int64((len(batches)+1)*batchSize)))
		}
		return batches[i]
	}

	run := func(b *testing.B, open func(testing.TB) writer) {
		w := open(b)
		for start := 0; start < len(seed); start += batchSize {
			if err := w.Apply(ctx, &store.Batch{Group: "bench", PolicyHash: policy.Hash(), Records: seed[start:min(start+batchSize, len(seed))]}); err != nil {
				b.Fatalf("seeding: %v", err)
			}
		}
		applied := 0
		for i := 0; b.Loop(); i++ {
			b.StopTimer()
			batch := batchAt(i)
			b.StartTimer()
			if err := w.Apply(ctx, batch); err != nil {
				b.Fatal(err)
			}
			applied += batchSize
		}
		b.ReportMetric(float64(applied)/b.Elapsed().Seconds(), "events/s")
	}
	b.Run("baseline=pgx-upsert", func(b *testing.B) { run(b, func(tb testing.TB) writer { return openPlainUpsert(tb) }) })
	b.Run("postgres", func(b *testing.B) { run(b, func(tb testing.TB) writer { return openPostgres(tb) }) })
	b.Run("sqlite", func(b *testing.B) { run(b, func(tb testing.TB) writer { return openSQLite(tb) }) })
}

// BenchmarkReplay1M measures a rebuild: one million log entries (customer
// events and messages over 100,000 customers) replayed into an empty store
// without Kafka, the way the materializer does it — batches of 5000: Load
// the batch's customers, fold the entries with consumers/merge, Apply —
// and reports the seconds and events/s of the whole replay. Store creation
// is not timed. The postgres case needs PostgreSQL.
func BenchmarkReplay1M(b *testing.B) {
	const total = 1_000_000
	replay := func(b *testing.B, open func(testing.TB) store.Store) {
		for b.Loop() {
			b.StopTimer()
			s := open(b)
			log := newLog(2)
			b.StartTimer()
			for done := 0; done < total; done += batchSize {
				entries := log.take(batchSize)
				ids := map[string]bool{}
				for _, e := range entries {
					ids[e.customer()] = true
				}
				stored, err := s.Load(ctx, slices.Collect(maps.Keys(ids)))
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Apply(ctx, fold(entries, stored, int64(done+batchSize))); err != nil {
					b.Fatal(err)
				}
			}
		}
		perReplay := b.Elapsed().Seconds() / float64(b.N)
		b.ReportMetric(perReplay, "s/replay")
		b.ReportMetric(total/perReplay, "events/s")
	}
	b.Run("postgres", func(b *testing.B) { replay(b, func(tb testing.TB) store.Store { return openPostgres(tb) }) })
	b.Run("sqlite", func(b *testing.B) { replay(b, func(tb testing.TB) store.Store { return openSQLite(tb) }) })
}
