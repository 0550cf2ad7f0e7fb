package importer_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"go.uber.org/zap"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/producers/importer"
	"github.com/omnisync/omnisync/producers/ingest"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// pipeline returns an ingest pipeline on k with its directory ready.
func pipeline(tb testing.TB, k testenv.Kafka) (*ingest.Pipeline, *codec.Serde) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	cl, err := kafka.NewClient(k.Config())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cl.Close)
	if _, err := kafka.Provision(ctx, kadm.NewClient(cl), kafka.DefaultLayout.Topics()); err != nil {
		tb.Fatal(err)
	}
	reg, _ := testenv.Registry(tb)
	serde, err := codec.New(ctx, reg)
	if err != nil {
		tb.Fatal(err)
	}
	dir, err := ingest.NewDirectory(k.Config(), serde, zap.NewNop())
	if err != nil {
		tb.Fatal(err)
	}
	go dir.Run(ctx)
	<-dir.Ready()
	return ingest.New(ingest.Config{Client: cl, Serde: serde, Directory: dir}), serde
}

func csvFile(tb testing.TB, rows int) string {
	var b strings.Builder
	b.WriteString("id,name,phone,email,vip_level\n")
	for i := range rows {
		fmt.Fprintf(&b, "B%d,Name %d,1380%07d,u%d@example.com,%d\n", i, i, i, i, i%10)
	}
	path := filepath.Join(tb.TempDir(), "rows.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// With the broker gone, the import stops with an error once a batch is not
// acknowledged in time, and counts none of its rows as imported.
func TestImportStopsWhenKafkaDoesNotAcknowledge(t *testing.T) {
	addr := testenv.FreeAddr(t)
	broker, err := kafka.StartEmbedded(kafka.EmbeddedConfig{Listen: addr})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := pipeline(t, testenv.Kafka{Backend: "embedded", Brokers: []string{addr}})
	path := csvFile(t, 30)
	o := importer.Options{Format: "csv", BatchSize: 10, BatchTimeout: 2 * time.Second}
	if sum, err := importer.Run(context.Background(), p, path, o); err != nil || sum.Imported != 30 {
		t.Fatalf("with the broker up: %+v %v", sum, err)
	}
	broker.Close()
	start := time.Now()
	sum, err := importer.Run(context.Background(), p, path, o)
	if err == nil || !strings.Contains(err.Error(), "Kafka did not take a batch of 10 rows") || sum.Imported != 0 {
		t.Fatalf("with the broker gone: %+v %v; want an error and nothing counted", sum, err)
	}
	t.Logf("stopped after %s: %v", time.Since(start).Round(time.Millisecond), err)
}

// A JSON Lines member holding an object or an array of objects is ignored
// unless it is imported (an export's provenance and messages), and rejects
// its row when it is.
func TestJSONLNestedMembers(t *testing.T) {
	p, _ := pipeline(t, testenv.AnyKafka(t))
	path := filepath.Join(t.TempDir(), "rows.jsonl")
	lines := `{"id":"N1","name":"Li Na","provenance":{"name":{"channel":"CRM"}},"messages":[{"message_id":"m1"}]}
{"id":"N2","name":{"first":"Li"}}
{"id":"N3","tags":[{"t":"vip"}]}
`
	if err := os.WriteFile(path, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	sum, err := importer.Run(context.Background(), p, path, importer.Options{Format: "jsonl", Source: testenv.UniqueName(t, "nested")})
	if err != nil || sum.Imported != 1 || sum.Rejected != 2 || sum.Rejections[0].Field != "name" || sum.Rejections[1].Field != "tags" {
		t.Fatalf("summary %+v, err %v; want N1 imported, N2 rejected on name, N3 on tags", sum, err)
	}
}
