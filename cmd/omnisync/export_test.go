package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/omnisync/omnisync/consumers/export"
	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/consumers/store/sqlite"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/producers/crm"
	"github.com/omnisync/omnisync/schemas"
)

// TestExportImportRoundTrip exports a store as csv, and as jsonl and xml
// with messages, imports each file through the real Kafka into an empty
// store, and finds every exported customer's profile values there, equal
// by export.ProfileHash, under the identity crm:<source>:<exported ID>.
func TestExportImportRoundTrip(t *testing.T) {
	ctx := context.Background()
	k := testenv.RealKafka(t)
	bin := testenv.Binary(t)
	cl, err := kafka.NewClient(k.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kafka.Provision(ctx, kadm.NewClient(cl), kafka.Layout{Partitions: 6}.Topics()); err != nil {
		t.Fatal(err)
	}
	reg, registryURL := testenv.Registry(t)
	serde, err := codec.New(ctx, reg)
	if err != nil {
		t.Fatal(err)
	}

	// The source store: five customers folded by merge, one of them deleted.
	dir := t.TempDir()
	src, err := sqlite.Open(ctx, filepath.Join(dir, "src.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	prefix := testenv.UniqueName(t, "exp")
	p := merge.DefaultPolicy()
	at := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
	ptr := func(s string) *string { return &s }
	var recs []merge.Record
	var msgs []events.MessageEvent
	for i := range 5 {
		id := fmt.Sprintf("%s_%d", prefix, i)
		level, gender := int32(i), events.GenderFemale
		r, _ := merge.Apply(merge.Record{CustomerID: id}, &events.CustomerEvent{EventID: id + "-e1", CustomerID: id, Channel: events.ChannelCRM,
			Source: "crm", Op: events.OpUpsert, OccurredAt: at, IngestedAt: at, Profile: &events.Profile{
				Name: ptr("客户 " + id), Phone: ptr(fmt.Sprintf("+861380013800%d", i)), Email: ptr(id + "@example.com"), Gender: &gender,
				VIPLevel: &level, Tags: []string{"vip", "tag " + id}, Address: &events.Address{Country: "CN", City: "上海"},
				Attributes: map[string]string{"industry": "retail"}}}, p)
		r, _ = merge.Apply(r, &events.CustomerEvent{EventID: id + "-e2", CustomerID: id, Channel: events.ChannelWeChat, Source: "wx",
			Op: events.OpUpsert, OccurredAt: at.Add(time.Minute), IngestedAt: at, Profile: &events.Profile{Name: ptr("Name " + id)}}, p)
		text := "hello " + id
		m := events.MessageEvent{MessageID: id + "-m1", CustomerID: id, Channel: events.ChannelWeb, Source: "web",
			Direction: events.DirectionInbound, SenderType: events.SenderCustomer, ContentType: events.ContentText,
			Text: &text, OccurredAt: at.Add(2 * time.Minute), IngestedAt: at}
		r, _ = merge.ApplyMessage(r, &m, p)
		if i == 4 {
			r, _ = merge.Apply(r, &events.CustomerEvent{EventID: id + "-del", CustomerID: id, Channel: events.ChannelCRM, Source: "crm",
				Op: events.OpDelete, OccurredAt: at.Add(3 * time.Minute), IngestedAt: at}, p)
		} else {
			msgs = append(msgs, m)
		}
		recs = append(recs, r)
	}
	if err := src.Apply(ctx, &store.Batch{Group: "src", PolicyHash: p.Hash(), Records: recs, Messages: msgs}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{} // exported customer ID → profile hash
	if err := src.Scan(ctx, func(r merge.Record, _ []events.MessageEvent) error {
		if !r.Deleted() {
			want[r.CustomerID] = export.ProfileHash(r)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(want) != 4 {
		t.Fatalf("source store holds %d live customers, want 4", len(want))
	}

	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("omnisync %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// Avro, its format taken from --out: the CustomerState schema embedded,
	// the four live customers.
	avroFile := filepath.Join(dir, "customers.avro")
	run("export", "--store", "sqlite:"+filepath.Join(dir, "src.db"), "--out", avroFile)
	f, err := os.Open(avroFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ocf, err := goavro.NewOCFReader(f)
	if err != nil {
		t.Fatal(err)
	}
	state, _ := goavro.NewCodec(schemas.Current(schemas.CustomerState))
	n := 0
	for ocf.Scan() {
		v, err := ocf.Read()
		if err != nil {
			t.Fatal(err)
		}
		if id := v.(map[string]any)["customer_id"].(string); want[id] == "" {
			t.Errorf("avro row of customer %s, not a live customer of the store", id)
		}
		n++
	}
	if ocf.Err() != nil || n != len(want) || ocf.Codec().CanonicalSchema() != state.CanonicalSchema() {
		t.Fatalf("avro export: %d rows (err %v), schema %s", n, ocf.Err(), ocf.Codec().Schema())
	}
	// Refused: exit 1, no file.
	refused := filepath.Join(dir, "refused.csv")
	out, err := exec.Command(bin, "export", "--store", "sqlite:"+filepath.Join(dir, "src.db"), "--out", refused, "--with-messages").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "csv has one flat row a customer") {
		t.Fatalf("csv --with-messages: %v\n%s", err, out)
	}
	if _, err := os.Stat(refused); !os.IsNotExist(err) {
		t.Fatalf("refused export left %s: %v", refused, err)
	}

	for _, tc := range []struct{ format, extra string }{{"csv", ""}, {"jsonl", "--with-messages"}, {"xml", "--with-messages"}} {
		t.Run(tc.format, func(t *testing.T) {
			file := filepath.Join(dir, "customers."+tc.format)
			args := []string{"export", "--store", "sqlite:" + filepath.Join(dir, "src.db"), "--out", file}
			if tc.extra != "" {
				args = append(args, tc.extra)
			}
			if out := run(args...); !strings.Contains(out, "exported 4 customers") || !strings.Contains(out, "left out 1 deleted") {
				t.Fatalf("export: %s", out)
			}

			// An empty store whose group starts where the topics end now.
			group := testenv.UniqueName(t, "exp")
			start := map[string]map[int32]int64{}
			for topic, parts := range testenv.EndOffsets(t, cl, schemas.CustomerEventsTopic, schemas.CustomerMessagesTopic) {
				start[topic] = map[int32]int64{}
				for p, o := range parts {
					start[topic][p] = o.EpochOffset().Offset
				}
			}
			dst, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "dst.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer dst.Close()
			if err := dst.Apply(ctx, &store.Batch{Group: group, Offsets: start}); err != nil {
				t.Fatal(err)
			}
			source := testenv.UniqueName(t, "old")
			run("import", file, "--source", source, "--brokers", strings.Join(k.Brokers, ","), "--registry", registryURL, "--log-level", "warn")
			materializeUntil(t, k, serde, group, dst, cl)

			got := map[string]string{}
			if err := dst.Scan(ctx, func(r merge.Record, _ []events.MessageEvent) error {
				for _, id := range r.AllIdentities() {
					if id.Kind == crm.IdentityKind && id.Scope == source {
						if _, dup := got[id.Value]; dup {
							return fmt.Errorf("two customers hold %s", id.Value)
						}
						got[id.Value] = export.ProfileHash(r)
						if g := r.Fields["name"]; g.Channel != events.ChannelImport {
							return fmt.Errorf("%s: name came on %s, want IMPORT", id.Value, g.Channel)
						}
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			for id, h := range want {
				if got[id] != h {
					t.Errorf("customer %s: profile hash after import %q, want %q", id, got[id], h)
				}
			}
			if len(got) != len(want) {
				t.Errorf("imported store holds %d customers of the export, want %d", len(got), len(want))
			}
		})
	}
}
