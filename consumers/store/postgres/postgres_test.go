package postgres_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/consumers/store/postgres"
	"github.com/omnisync/omnisync/consumers/store/storetest"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/events"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := postgres.Open(context.Background(), testenv.Postgres(t))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestBase(t *testing.T) {
	storetest.RunBase(t, func(t *testing.T) store.Store {
		s, err := postgres.Open(context.Background(), testenv.Postgres(t))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// Processes opening a new database at once create the schema once.
func TestConcurrentOpen(t *testing.T) {
	ctx := context.Background()
	dsn := testenv.Postgres(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := postgres.Open(ctx, dsn)
			if err == nil {
				s.Close()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Open: %v", err)
		}
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n, version int
	if err := conn.QueryRow(ctx, `SELECT count(*), max(version) FROM schema_migrations`).Scan(&n, &version); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("schema_v*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("schema files: %v, %v", files, err)
	}
	if want := len(files); n != want || version != want {
		t.Errorf("schema_migrations has %d rows up to version %d, want %d rows, version %d (each migration once)", n, version, want, want)
	}
}

// A database migrated by a newer omnisync is refused, not written.
func TestNewerSchemaRefused(t *testing.T) {
	ctx := context.Background()
	dsn := testenv.Postgres(t)
	s, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES (99)`); err != nil {
		t.Fatal(err)
	}
	if s, err := postgres.Open(ctx, dsn); err == nil || !strings.Contains(err.Error(), "newer") {
		if err == nil {
			s.Close()
		}
		t.Errorf("Open of a schema version 99 database: %v, want an error saying it is newer", err)
	}
}

func TestBadDSN(t *testing.T) {
	if _, err := postgres.Open(context.Background(), "postgres://user@host:notaport/db"); err == nil {
		t.Error("Open with an invalid DSN succeeded")
	}
}

// Writers of different partitions whose customers share identities (in
// opposite orders) wait for each other instead of deadlocking.
func TestConcurrentWritersSharingIdentities(t *testing.T) {
	ctx := context.Background()
	s, err := postgres.Open(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const rounds, shared = 10, 300
	batchOf := func(round int, writer string, reversed bool) *store.Batch {
		b := &store.Batch{Group: "g", PolicyHash: "h", Offsets: map[string]map[int32]int64{"t": {int32(len(writer)): int64(round)}}}
		for i := range shared {
			k := i
			if reversed {
				k = shared - 1 - i
			}
			id := fmt.Sprintf("%s_%d_%04d", writer, round, i)
			r, _ := merge.Apply(merge.Record{}, &events.CustomerEvent{
				EventID: id, CustomerID: id, Channel: events.ChannelApp, Op: events.OpUpsert,
				Identities: []events.Identity{{Kind: "device", Value: fmt.Sprintf("shared-%d-%04d", round, k)}},
			}, nil)
			b.Records = append(b.Records, r)
		}
		return b
	}
	for round := range rounds {
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for _, w := range []struct {
			name     string
			reversed bool
		}{{"a", false}, {"bb", true}} {
			b := batchOf(round, w.name, w.reversed)
			wg.Go(func() { errs <- s.Apply(ctx, b) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
}

// The queryable tables follow the stored record through changes, a delete
// and a re-creation: customer_fields holds its registers, conflicts its
// conflicts, identities its identities.
func TestChildRowsFollowTheRecord(t *testing.T) {
	ctx := context.Background()
	dsn := testenv.Postgres(t)
	s, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	ev := func(id string, at time.Duration, op events.Op, ch events.Channel, p *events.Profile, ids ...string) *events.CustomerEvent {
		e := &events.CustomerEvent{EventID: id, CustomerID: "cus_1", Channel: ch, Source: "s", Op: op, OccurredAt: t0.Add(at), Profile: p}
		for _, v := range ids {
			e.Identities = append(e.Identities, events.Identity{Kind: "device", Value: v})
		}
		return e
	}
	str := func(s string) *string { return &s }
	steps := []*events.CustomerEvent{
		ev("e1", 0, events.OpUpsert, events.ChannelCRM, &events.Profile{Name: str("A"), Phone: str("+8613800000001"), Email: str("a@example.com")}, "d1"),
		ev("e2", time.Minute, events.OpUpsert, events.ChannelWeChat, &events.Profile{Phone: str("+8613800000002"), Name: str("B")}, "d2"),
		ev("e3", 2*time.Minute, events.OpUpsert, events.ChannelCRM, &events.Profile{Email: str("c@example.com")}, "d1", "d3"),
		ev("e4", 3*time.Minute, events.OpDelete, events.ChannelAgent, nil),
		ev("e5", 4*time.Minute, events.OpUpsert, events.ChannelApp, &events.Profile{Name: str("D")}, "d4"),
	}
	var r merge.Record
	for i, e := range steps {
		r, _ = merge.Apply(r, e, nil)
		if err := s.Apply(ctx, &store.Batch{Group: "g", Records: []merge.Record{r}}); err != nil {
			t.Fatal(err)
		}
		var want, got []string
		for f, g := range r.Fields {
			want = append(want, fmt.Sprintf("field %s=%s@%d/%s %s %s", f, g.Value, g.Stamp.At.UnixMilli(), g.Stamp.EventID, g.Channel, g.Source))
		}
		for _, c := range r.Conflicts {
			want = append(want, fmt.Sprintf("conflict %s %s %s", c.ID, c.Field, c.Status))
		}
		for _, id := range r.AllIdentities() {
			want = append(want, fmt.Sprintf("identity %s/%s/%s", id.Kind, id.Scope, id.Value))
		}
		rows, err := conn.Query(ctx, `
			SELECT format('field %s=%s@%s/%s %s %s', field, value, (extract(epoch FROM occurred_at) * 1000)::bigint, event_id, channel, source)
				FROM customer_fields WHERE customer_id = 'cus_1'
			UNION ALL SELECT format('conflict %s %s %s', id, field, status) FROM conflicts WHERE customer_id = 'cus_1'
			UNION ALL SELECT format('identity %s/%s/%s', kind, scope, value) FROM identities WHERE customer_id = 'cus_1'`)
		if err != nil {
			t.Fatal(err)
		}
		if got, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			t.Fatal(err)
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("after event %d:\n got %q\nwant %q", i+1, got, want)
		}
	}
}

// A batch holding two copies of one message (a producer re-sent it after
// a 503, so the copies differ in ingested_at) stores the first, as when the
// copies come in different batches: the store does not depend on how the
// log was cut into batches, nor on the order the planner joins rows in.
func TestDuplicateMessageInBatchKeepsTheFirst(t *testing.T) {
	// Each join method the planner may pick for the messages' insert.
	for _, join := range []string{"nestloop", "hashjoin", "mergejoin"} {
		t.Run(join, func(t *testing.T) { testDuplicateMessageInBatch(t, join) })
	}
}

func testDuplicateMessageInBatch(t *testing.T, join string) {
	ctx := context.Background()
	dsn := testenv.Postgres(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	db := pgx.Identifier{conn.Config().Database}.Sanitize()
	for _, m := range []string{"nestloop", "hashjoin", "mergejoin"} {
		if m != join {
			if _, err := conn.Exec(ctx, "ALTER DATABASE "+db+" SET enable_"+m+" = off"); err != nil {
				t.Fatal(err)
			}
		}
	}
	s, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	// Enough stored customers that the planner hashes the batch's side of
	// the join with customers.
	seed := &store.Batch{Group: "g"}
	for i := range 3000 {
		id := fmt.Sprintf("cus_%04d", i)
		r, _ := merge.Apply(merge.Record{}, &events.CustomerEvent{EventID: id, CustomerID: id, Channel: events.ChannelWeb,
			Op: events.OpUpsert, OccurredAt: t0, Identities: []events.Identity{{Kind: "device", Value: id}}}, nil)
		seed.Records = append(seed.Records, r)
	}
	if err := s.Apply(ctx, seed); err != nil {
		t.Fatal(err)
	}
	text := "hello"
	first, second := t0.Add(time.Second), t0.Add(time.Minute)
	b := &store.Batch{Group: "g"}
	for i := 0; i < 3000; i += 10 {
		for _, customer := range []string{fmt.Sprintf("cus_%04d", i), fmt.Sprintf("new_%04d", i)} {
			for n := range 2 {
				for _, ingested := range []time.Time{first, second} {
					b.Messages = append(b.Messages, events.MessageEvent{MessageID: fmt.Sprintf("m_%s_%d", customer, n), CustomerID: customer,
						ConversationID: "c", Channel: events.ChannelWeb, Source: "web", Direction: events.DirectionInbound,
						SenderType: events.SenderCustomer, SenderID: customer, ContentType: events.ContentText, Text: &text,
						OccurredAt: t0, IngestedAt: ingested})
				}
			}
		}
	}
	if err := s.Apply(ctx, b); err != nil {
		t.Fatal(err)
	}
	var total, firsts int
	if err := conn.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE ingested_at = $1) FROM messages`, first).Scan(&total, &firsts); err != nil {
		t.Fatal(err)
	}
	if want := len(b.Messages) / 2; total != want || firsts != want {
		t.Errorf("%d messages stored, %d of them the first copy; want %d, all the first copy", total, firsts, want)
	}
}
