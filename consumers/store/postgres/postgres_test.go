package postgres_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/omnisync/omnisync/consumers/materializer"
	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store/postgres"
	"github.com/omnisync/omnisync/consumers/store/storetest"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/events"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
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
	if n != 1 || version != 1 {
		t.Errorf("schema_migrations has %d rows up to version %d, want 1 row, version 1", n, version)
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
	batchOf := func(round int, writer string, reversed bool) *materializer.Batch {
		b := &materializer.Batch{Group: "g", PolicyHash: "h", Offsets: map[string]map[int32]int64{"t": {int32(len(writer)): int64(round)}}}
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
