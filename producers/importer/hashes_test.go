package importer_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/producers/hashes"
	"github.com/omnisync/omnisync/producers/importer"
	"github.com/omnisync/omnisync/schemas"
)

// With the source's hashes, a second import of the same file produces no
// event (even after reopening the store, as a new omnisync import does),
// and an edited file produces exactly the edited row.
func TestImportTwiceAddsNoEvent(t *testing.T) {
	k := testenv.RealKafka(t)
	p, serde := pipeline(t, k)
	source := testenv.UniqueName(t, "twice")
	path := filepath.Join(t.TempDir(), "f.csv")
	write := func(content string) {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	run := func() importer.Summary {
		t.Helper()
		store, err := hashes.Open(ctx, k.Config(), "", source)
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		sum, err := importer.Run(ctx, p, path, importer.Options{Format: "csv", Source: source, Hashes: store,
			AsOf: time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC), BatchSize: 2})
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	// ours returns the source's events on the topic since from, by CRM ID.
	ours := func(from map[string]map[int32]kgo.Offset) map[string]int {
		t.Helper()
		got := map[string]int{}
		for _, r := range testenv.RecordsSince(t, k, schemas.CustomerEventsTopic, from[schemas.CustomerEventsTopic]) {
			var ev events.CustomerEvent
			if serde.Decode(ctx, r.Value, &ev) == nil && len(ev.Identities) > 0 && ev.Identities[0].Scope == source {
				got[ev.Identities[0].Value]++
				if want := "producer/import/" + source + "@"; !strings.HasPrefix(ev.Source, want) {
					t.Errorf("event source %q, want %s…", ev.Source, want)
				}
			}
		}
		return got
	}
	cl := client(t, k)
	write("id,name,phone\nT-1,Li Na,13800138000\nT-2,Wang Fang,13800138001\nT-3,Zhang Wei,13800138002\n")
	from := testenv.EndOffsets(t, cl, schemas.CustomerEventsTopic)
	if sum := run(); sum.Imported != 3 || sum.Unchanged != 0 {
		t.Fatalf("first import: %+v", sum)
	}
	if got := ours(from); len(got) != 3 {
		t.Fatalf("first import produced %v, want one event each for T-1..T-3", got)
	}
	from = testenv.EndOffsets(t, cl, schemas.CustomerEventsTopic)
	if sum := run(); sum.Imported != 0 || sum.Unchanged != 3 || sum.Rows != 3 {
		t.Fatalf("second import of the same file: %+v, want 3 unchanged", sum)
	}
	write("id,name,phone\nT-1,Li Na,13800138000\nT-2,Wang Fang,13900139001\nT-3,Zhang Wei,13800138002\n")
	if sum := run(); sum.Imported != 1 || sum.Unchanged != 2 {
		t.Fatalf("import with T-2's phone edited: %+v, want 1 imported, 2 unchanged", sum)
	}
	if got := ours(from); len(got) != 1 || got["T-2"] != 1 {
		t.Fatalf("the second and third imports produced %v, want only T-2's edit", got)
	}
}

func client(t *testing.T, k testenv.Kafka) *kgo.Client {
	cl, err := kafka.NewClient(k.Config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}
