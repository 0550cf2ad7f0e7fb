package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/omnisync/omnisync/consumers/materializer"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/consumers/store/sqlite"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/schemas"
)

// TestVerifyCommand runs `omnisync verify` on a SQLite store a
// materializer filled from the real Kafka: it agrees (exit 0), names a
// corrupted field, a deleted message and a missing customer (exit 1),
// repairs them (exit 0), compares two stores, and refuses bad use (exit 2).
func TestVerifyCommand(t *testing.T) {
	ctx := context.Background()
	k, bin := testenv.RealKafka(t), testenv.Binary(t)
	f := newLogStore(t, k, "verify")
	cl, serde, registryURL, group, start, path, st := f.cl, f.serde, f.registryURL, f.group, f.start, f.path, f.st

	prefix := testenv.UniqueName(t, "cus")
	var recs []*kgo.Record
	var ids []string
	at := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	for i := range 5 {
		id := fmt.Sprintf("%s_%d", prefix, i)
		ids = append(ids, id)
		name, text := "Name "+id, "hello"
		for _, v := range []any{
			&events.CustomerEvent{EventID: id + "-e1", CustomerID: id, Channel: events.ChannelCRM, Source: "crm", Op: events.OpUpsert,
				OccurredAt: at, IngestedAt: at, Profile: &events.Profile{Name: &name}},
			&events.MessageEvent{MessageID: id + "-m1", CustomerID: id, Channel: events.ChannelWeb, Source: "web",
				Direction: events.DirectionInbound, SenderType: events.SenderCustomer, ContentType: events.ContentText,
				Text: &text, OccurredAt: at.Add(time.Minute), IngestedAt: at.Add(time.Minute)},
		} {
			b, err := serde.Encode(v)
			if err != nil {
				t.Fatal(err)
			}
			topic := schemas.CustomerEventsTopic
			if _, ok := v.(*events.MessageEvent); ok {
				topic = schemas.CustomerMessagesTopic
			}
			recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(id), Value: b})
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	materializeUntil(t, k, serde, group, st, cl)

	starts, _ := json.Marshal(start)
	env := []string{"OMNISYNC_KAFKA_BROKERS=" + strings.Join(k.Brokers, ",")}
	againstLog := []string{"verify", "--store", "sqlite:" + path, "--group", group, "--against-log",
		"--registry", registryURL, "--start-offsets", string(starts), "--log-level", "warn"}
	run := func(wantCode int, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), env...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != wantCode {
			t.Fatalf("omnisync %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, wantCode, stdout.String(), stderr.String())
		}
		return stdout.String()
	}
	// mine keeps the output lines about this test's customers and the
	// summary (other tests write to the shared topics meanwhile).
	mine := func(out string) []string {
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if strings.HasPrefix(l, prefix) || strings.Contains(l, "customers agree") || strings.HasPrefix(l, "repaired") {
				lines = append(lines, l)
			}
		}
		return lines
	}

	out := run(0, againstLog...)
	if !strings.Contains(out, " 0 differ (store vs log)") {
		t.Fatalf("fresh store: %s", out)
	}

	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []struct {
		sql string
		arg any
	}{
		{`UPDATE customers SET record = json_set(record, '$.fields.name.value_json', '"Mallory"') WHERE customer_id = ?`, ids[0]},
		{`DELETE FROM messages WHERE message_id = ?`, ids[1] + "-m1"},
		{`DELETE FROM customers WHERE customer_id = ?`, ids[2]},
	} {
		if _, err := db.ExecContext(ctx, q.sql, q.arg); err != nil {
			t.Fatal(err)
		}
	}

	// A copy of the damaged store differs from a repaired one.
	damaged := filepath.Join(t.TempDir(), "damaged.db")
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, damaged); err != nil {
		t.Fatal(err)
	}

	out = run(1, againstLog...)
	lines := mine(out)
	want := []string{
		ids[0] + `: field "name"`,
		ids[1] + ": message " + ids[1] + "-m1 missing in the store",
		ids[2] + ": missing in the store",
	}
	if len(lines) != 4 || !strings.Contains(lines[0], "customers agree") || strings.Join(lines[1:], "\n") != strings.Join(want, "\n") {
		t.Fatalf("damaged store: output\n%s\nwant the summary and\n%s", out, strings.Join(want, "\n"))
	}

	out = run(0, append(againstLog, "--repair")...)
	if !strings.Contains(out, "repaired") || !strings.HasSuffix(strings.TrimSpace(out), " 0 differ (store vs log)") {
		t.Fatalf("repair: %s", out)
	}
	run(0, againstLog...)

	out = run(1, "verify", "--store", "sqlite:"+path, "--store", "sqlite:"+damaged, "--log-level", "warn")
	if lines := mine(out); len(lines) != 4 || lines[3] != ids[2]+": missing in the second" {
		t.Fatalf("repaired vs damaged store: %s", out)
	}
	run(0, "verify", "--store", "sqlite:"+path, "--store", "sqlite:"+path, "--log-level", "warn")

	// Bad use and failures exit 2.
	run(2, "verify", "--store", "sqlite:"+path)
	run(2, "verify", "--store", "sqlite:"+path, "--repair", "--store", "sqlite:"+damaged)
	run(2, "verify", "--no-such-flag")
	run(2, "verify", "--store", "sqlite:"+path, "--against-log", "--group", "no-such-group", "--registry", registryURL)
}

// materializeUntil runs a materializer of group into st until it holds the
// topics' end offsets of now, then stops it.
func materializeUntil(t *testing.T, k testenv.Kafka, serde *codec.Serde, group string, st store.Store, cl *kgo.Client) {
	t.Helper()
	ends := testenv.EndOffsets(t, cl, schemas.CustomerEventsTopic, schemas.CustomerMessagesTopic)
	m, err := materializer.New(materializer.Config{Kafka: k.Config(), Group: group, Store: st, Serde: serde, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("materializer: %v", err)
		}
	}()
	deadline := time.Now().Add(3 * time.Minute) // other tests may write bursts to the shared topics meanwhile
	for {
		held, err := st.Offsets(context.Background(), group)
		behind := err != nil
		for topic, parts := range ends {
			for p, end := range parts {
				if o := end.EpochOffset().Offset; o > 0 && held[topic][p] < o {
					behind = true
				}
			}
		}
		if !behind {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("store not caught up after 3m: holds %v (err %v)", held, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logStore is where the verify and replay command tests start: a client of
// the real Kafka with the topics provisioned, the run's registry, and a
// SQLite store holding a new group's offsets at the shared topics' end as
// of now, so the group folds only what the test produces (other tests write
// to the same topics).
type logStore struct {
	cl          *kgo.Client
	serde       *codec.Serde
	registryURL string
	group       string
	start       map[string]map[int32]int64
	path        string
	st          *sqlite.Store
}

func newLogStore(t *testing.T, k testenv.Kafka, name string) logStore {
	t.Helper()
	ctx := context.Background()
	cl, err := kafka.NewClient(k.Config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if _, err := kafka.Provision(ctx, kadm.NewClient(cl), kafka.Layout{Partitions: 6}.Topics()); err != nil {
		t.Fatal(err)
	}
	reg, registryURL := testenv.Registry(t)
	serde, err := codec.New(ctx, reg)
	if err != nil {
		t.Fatal(err)
	}
	f := logStore{cl: cl, serde: serde, registryURL: registryURL, group: testenv.UniqueName(t, name),
		start: map[string]map[int32]int64{}, path: filepath.Join(t.TempDir(), "omnisync.db")}
	for topic, parts := range testenv.EndOffsets(t, cl, schemas.CustomerEventsTopic, schemas.CustomerMessagesTopic) {
		f.start[topic] = map[int32]int64{}
		for p, o := range parts {
			f.start[topic][p] = o.EpochOffset().Offset
		}
	}
	if f.st, err = sqlite.Open(ctx, f.path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.st.Close() })
	if err := f.st.Apply(ctx, &store.Batch{Group: f.group, Offsets: f.start}); err != nil {
		t.Fatal(err)
	}
	return f
}
