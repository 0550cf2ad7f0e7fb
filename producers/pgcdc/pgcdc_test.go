package pgcdc_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/producers/pgcdc"
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
	var slots int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE database = current_database()`).Scan(&slots); err != nil || slots != 0 {
		t.Fatalf("%d slots left (%v), want none", slots, err)
	}
	if err := pgcdc.Run(ctx, pgcdc.Config{DSN: dsn, Table: "keyed", Key: "id", Slot: "Bad-Slot"}); err == nil || !strings.Contains(err.Error(), `slot "Bad-Slot"`) {
		t.Errorf("a bad slot name: %v", err)
	}
}
