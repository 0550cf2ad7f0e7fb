package pgcdc_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/producers/pgcdc"
	"github.com/omnisync/omnisync/schemas"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// A table the source cannot follow is refused before anything is created,
// with a message naming what is wrong and how to fix it.
func TestRefusesTablesItCannotFollow(t *testing.T) {
	dsn := testenv.Postgres(t)
	ctx := context.Background()
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	for _, sql := range []string{
		`CREATE TABLE keyed (id text PRIMARY KEY, crm_id text, name text)`,
		`CREATE TABLE nokey (crm_id text, name text)`,
		`CREATE TABLE full_identity (crm_id text, name text)`,
		`ALTER TABLE full_identity REPLICA IDENTITY FULL`,
		`CREATE PUBLICATION other FOR TABLE nokey`,
	} {
		if _, err := db.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ table, key, want string }{
		{"missing", "id", `table "missing": no such table`},
		{"keyed", "nope", `has no column "nope"`},
		{"keyed", "crm_id", `column "crm_id" is not in its replica identity`},
		{"nokey", "crm_id", "REPLICA IDENTITY FULL"},
		{"full_identity", "crm_id", "kafka"}, // passes the checks; fails later, with no Kafka configured
	} {
		err := pgcdc.Run(ctx, pgcdc.Config{DSN: dsn, Table: c.table, Key: c.key, Source: "main"})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("table %s key %s: %v, want an error containing %q", c.table, c.key, err, c.want)
		}
	}
	err = pgcdc.Run(ctx, pgcdc.Config{DSN: dsn, Table: "keyed", Key: "id", Publication: "other"})
	if err == nil || !strings.Contains(err.Error(), `publication other does not publish table "public"."keyed": ALTER PUBLICATION`) {
		t.Errorf("a publication of another table: %v", err)
	}
	var slots int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE database = current_database()`).Scan(&slots); err != nil || slots != 0 {
		t.Fatalf("%d slots left (%v), want none", slots, err)
	}
	if err := pgcdc.Run(ctx, pgcdc.Config{DSN: dsn, Table: "keyed", Key: "id", Slot: "Bad-Slot"}); err == nil || !strings.Contains(err.Error(), `slot "Bad-Slot"`) {
		t.Errorf("a bad slot name: %v", err)
	}
}

// A slot whose snapshot never finished (here: made by hand, as a crash
// during the snapshot leaves it) is dropped and the snapshot read again;
// the first run's rows arrive as snapshot events; the slot is dropped by
// DropSlot at the end.
func TestUnfinishedSnapshotStartsOver(t *testing.T) {
	k := testenv.RealKafka(t)
	dsn := testenv.Postgres(t)
	ctx := context.Background()
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	var level string
	if err := db.QueryRow(ctx, "SHOW wal_level").Scan(&level); err != nil || level != "logical" {
		testenv.Skip(t, "the test PostgreSQL runs with wal_level=%s (%v); CDC needs logical (scripts/postgres.sh starts one so)", level, err)
	}
	source := testenv.UniqueName(t, "snap")
	cfg := pgcdc.Config{DSN: dsn, Table: "contacts", Key: "id", Source: source, Slot: "omnisync_snapshot_test", Kafka: k.Config(), Logger: zaptest.NewLogger(t)}
	t.Cleanup(func() { // before the database is dropped
		if err := pgcdc.DropSlot(context.Background(), cfg); err != nil {
			t.Errorf("DropSlot: %v", err)
		}
	})
	for _, sql := range []string{
		`CREATE TABLE contacts (id text PRIMARY KEY, name text)`,
		`INSERT INTO contacts VALUES ('U-1', 'Li Na'), ('U-2', 'Wang Fang')`,
		`SELECT pg_create_logical_replication_slot('omnisync_snapshot_test', 'pgoutput')`,
	} {
		if _, err := db.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	cl, err := kafka.NewClient(k.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kafka.Provision(ctx, kadm.NewClient(cl), kafka.DefaultLayout.Topics()); err != nil {
		t.Fatal(err)
	}
	reg, _ := testenv.Registry(t)
	serde, err := codec.New(ctx, reg)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := ingest.NewDirectory(k.Config(), serde, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	go dir.Run(rctx)
	<-dir.Ready()
	cfg.Pipeline = ingest.New(ingest.Config{Client: cl, Serde: serde, Directory: dir})
	from := testenv.EndOffsets(t, cl, schemas.CustomerEventsTopic)[schemas.CustomerEventsTopic]
	done := make(chan error, 1)
	go func() { done <- pgcdc.Run(rctx, cfg) }()
	got := map[string]string{}
	for deadline := time.Now().Add(time.Minute); len(got) < 2; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("snapshot events %v after 1m, want U-1 and U-2", got)
		}
		for _, r := range testenv.RecordsSince(t, k, schemas.CustomerEventsTopic, from) {
			var ev events.CustomerEvent
			if serde.Decode(ctx, r.Value, &ev) == nil && len(ev.Identities) > 0 && ev.Identities[0].Scope == source {
				got[ev.Identities[0].Value] = *ev.SourceEventID
			}
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	for id, sid := range got {
		if !strings.HasPrefix(sid, "snapshot:") || !strings.HasSuffix(sid, ":"+id) {
			t.Errorf("%s: source event ID %q, want snapshot:<lsn>:%s", id, sid, id)
		}
	}
}
