package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/consumers/store/postgres"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/events"
)

// Two stores holding the same content, written in different orders, batches
// and by different groups, hash equal; a single differing value in any of
// the hashed tables makes the hashes differ.
func TestCanonicalHash(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	str := func(s string) *string { return &s }

	// Three customers with two profile versions each (the second opens a
	// conflict on the phone), and two messages each.
	var v1, v2 []merge.Record
	var msgs []events.MessageEvent
	for i := range 3 {
		id := fmt.Sprintf("cus_%d", i)
		r1, _ := merge.Apply(merge.Record{}, &events.CustomerEvent{EventID: id + "_e1", CustomerID: id, Channel: events.ChannelCRM,
			Source: "crm", Op: events.OpUpsert, OccurredAt: t0, IngestedAt: t0,
			Profile:    &events.Profile{Name: str("名字 " + id), Phone: str(fmt.Sprintf("+861380000000%d", i))},
			Identities: []events.Identity{{Kind: "device", Value: "dev-" + id}}}, nil)
		r2, _ := merge.Apply(r1, &events.CustomerEvent{EventID: id + "_e2", CustomerID: id, Channel: events.ChannelWeb,
			Source: "web", Op: events.OpUpsert, OccurredAt: t0.Add(time.Minute), IngestedAt: t0.Add(time.Minute),
			Profile: &events.Profile{Email: str(id + "@example.com"), Phone: str(fmt.Sprintf("+861390000000%d", i))}}, nil)
		if len(r2.Conflicts) == 0 {
			t.Fatalf("customer %s: the second phone opened no conflict; the test needs one", id)
		}
		v1, v2 = append(v1, r1), append(v2, r2)
		for j := range 2 {
			at := t0.Add(time.Duration(j) * time.Second)
			msgs = append(msgs, events.MessageEvent{MessageID: fmt.Sprintf("%s_m%d", id, j), CustomerID: id, ConversationID: "c",
				Channel: events.ChannelWeb, Source: "web", Direction: events.DirectionInbound, SenderType: events.SenderCustomer,
				SenderID: id, ContentType: events.ContentText, Text: str(fmt.Sprintf("hello %d", j)), OccurredAt: at, IngestedAt: at})
		}
	}
	open := func() (*postgres.Store, string) {
		dsn := testenv.Postgres(t)
		s, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s, dsn
	}
	apply := func(s *postgres.Store, b *store.Batch) {
		t.Helper()
		if err := s.Apply(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	hash := func(s *postgres.Store) (string, []postgres.TableHash) {
		t.Helper()
		sum, tables, err := s.CanonicalHash(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return sum, tables
	}

	// a: everything in order, one batch per step, group "a".
	a, _ := open()
	apply(a, &store.Batch{Group: "a", Records: v1, Messages: msgs[:3], Offsets: map[string]map[int32]int64{"t": {0: 1}}})
	apply(a, &store.Batch{Group: "a", Records: v2, Messages: msgs[3:], Offsets: map[string]map[int32]int64{"t": {0: 2}}})
	// b: reversed, customer by customer, the newest records before the
	// stale ones (which the version guard ignores), group "b".
	b, bDSN := open()
	for i := len(v2) - 1; i >= 0; i-- {
		apply(b, &store.Batch{Group: "b", Records: []merge.Record{v2[i]}, Offsets: map[string]map[int32]int64{"t": {int32(i): 7}}})
	}
	for i := len(msgs) - 1; i >= 0; i-- {
		apply(b, &store.Batch{Group: "b", Messages: []events.MessageEvent{msgs[i]}})
	}
	apply(b, &store.Batch{Group: "b", Records: v1})

	sumA, tablesA := hash(a)
	sumB, tablesB := hash(b)
	if sumA != sumB {
		t.Fatalf("same content in another order: hashes differ\n a %s %v\n b %s %v", sumA, tablesA, sumB, tablesB)
	}
	want := map[string]int64{"customers": 3, "customer_fields": 9, "conflicts": 3, "messages": 6, "identities": 3}
	for _, th := range tablesA {
		if th.Rows != want[th.Table] {
			t.Errorf("table %s: %d rows hashed, want %d", th.Table, th.Rows, want[th.Table])
		}
	}
	empty, _ := open()
	if sumEmpty, _ := hash(empty); sumEmpty == sumA {
		t.Errorf("an empty store hashes like a full one: %s", sumA)
	}

	// One value changed in each table in turn (and changed back) makes the
	// hash differ, and only that table's.
	conn, err := pgx.Connect(ctx, bDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, c := range []struct{ table, change, undo string }{
		{"customers", `UPDATE customers SET version = version + 1 WHERE customer_id = 'cus_1'`,
			`UPDATE customers SET version = version - 1 WHERE customer_id = 'cus_1'`},
		{"customer_fields", `UPDATE customer_fields SET value = '"x@example.com"' WHERE customer_id = 'cus_2' AND field = 'email'`,
			`UPDATE customer_fields SET value = '"cus_2@example.com"' WHERE customer_id = 'cus_2' AND field = 'email'`},
		{"conflicts", `UPDATE conflicts SET detected_at = detected_at + interval '1 millisecond' WHERE customer_id = 'cus_0'`,
			`UPDATE conflicts SET detected_at = detected_at - interval '1 millisecond' WHERE customer_id = 'cus_0'`},
		{"messages", `UPDATE messages SET text = 'hello 9' WHERE message_id = 'cus_1_m1'`,
			`UPDATE messages SET text = 'hello 1' WHERE message_id = 'cus_1_m1'`},
		{"identities", `UPDATE identities SET customer_id = 'cus_9' WHERE value = 'dev-cus_0'`,
			`UPDATE identities SET customer_id = 'cus_0' WHERE value = 'dev-cus_0'`},
	} {
		if _, err := conn.Exec(ctx, c.change); err != nil {
			t.Fatal(err)
		}
		sum, tables := hash(b)
		if sum == sumA {
			t.Errorf("%s changed: the hash did not change", c.table)
		}
		for i, th := range tables {
			if changed := th.MD5 != tablesA[i].MD5; changed != (th.Table == c.table) {
				t.Errorf("%s changed: table %s's hash changed: %v", c.table, th.Table, changed)
			}
		}
		if _, err := conn.Exec(ctx, c.undo); err != nil {
			t.Fatal(err)
		}
		if sum, _ := hash(b); sum != sumA {
			t.Errorf("%s changed back: the hash is %s, not %s again", c.table, sum, sumA)
		}
	}
	// What a replay does not rebuild — another group's offsets — is not hashed.
	if _, err := conn.Exec(ctx, `INSERT INTO consumer_offsets VALUES ('other', 't', 3, 99)`); err != nil {
		t.Fatal(err)
	}
	if sum, _ := hash(b); sum != sumA {
		t.Errorf("another group's offsets changed the hash")
	}
}
