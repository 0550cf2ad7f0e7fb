package testenv_test

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/omnisync/omnisync/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// Each test gets its own empty database on a real PostgreSQL server.
func TestPostgresGivesEachTestADatabase(t *testing.T) {
	dsn := testenv.Postgres(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var version, db string
	if err := conn.QueryRow(ctx, "SELECT version(), current_database()").Scan(&version, &db); err != nil {
		t.Fatal(err)
	}
	t.Logf("connected to %s (%s)", db, version)
	if _, err := conn.Exec(ctx, "CREATE TABLE probe (id int primary key); INSERT INTO probe VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	other := testenv.Postgres(t)
	if other == dsn {
		t.Fatal("two calls returned the same database")
	}
	conn2, err := pgx.Connect(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close(ctx)
	var n int
	if err := conn2.QueryRow(ctx, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'probe'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatal("a fresh database already has the other test's table")
	}
}

func TestUniqueName(t *testing.T) {
	a, b := testenv.UniqueName(t, "topic"), testenv.UniqueName(t, "topic")
	if a == b {
		t.Fatalf("UniqueName returned %s twice", a)
	}
}
