package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/producers/poll"
	"github.com/omnisync/omnisync/schemas"
)

// sourceEvents returns the customer events of system source on the events
// topic since from: source event ID → the distinct event IDs it was
// produced with, and how many records they are.
func sourceEvents(t *testing.T, f logStore, k testenv.Kafka, from map[int32]kgo.Offset, source string) (map[string]map[string]bool, int) {
	t.Helper()
	ids := map[string]map[string]bool{}
	n := 0
	for _, r := range testenv.RecordsSince(t, k, schemas.CustomerEventsTopic, from) {
		var ev events.CustomerEvent
		if f.serde.Decode(context.Background(), r.Value, &ev) != nil || len(ev.Identities) == 0 || ev.Identities[0].Scope != source || ev.SourceEventID == nil {
			continue
		}
		if ids[*ev.SourceEventID] == nil {
			ids[*ev.SourceEventID] = map[string]bool{}
		}
		ids[*ev.SourceEventID][ev.EventID] = true
		n++
	}
	return ids, n
}

// process is an omnisync command run as a child process.
type process struct {
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
}

func startProcess(t *testing.T, args ...string) *process {
	t.Helper()
	log := filepath.Join(t.TempDir(), "out.log")
	out, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testenv.Binary(t), args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, log: log, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { p.stop(syscall.SIGKILL); out.Close() })
	return p
}

// stop signals the process and waits for it.
func (p *process) stop(sig syscall.Signal) {
	_ = p.cmd.Process.Signal(sig)
	<-p.exited
}

// running reports whether the process has not exited.
func (p *process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *process) output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// CDC of a CRM table: the snapshot, then inserts, updates and deletes reach
// the store; a kill -9 of the source while changes stream, then a restart,
// loses and doubles nothing (every change has exactly one event ID); the
// slot is dropped at the end.
func TestSourcePostgresCDC(t *testing.T) {
	k := testenv.RealKafka(t)
	dsn := testenv.Postgres(t)
	ctx := context.Background()
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	var walLevel string
	if err := db.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil {
		t.Fatal(err)
	}
	if walLevel != "logical" {
		testenv.Skip(t, "the test PostgreSQL runs with wal_level=%s; CDC needs logical (scripts/postgres.sh starts one so)", walLevel)
	}
	f := newLogStore(t, k, "cdc")
	source := testenv.UniqueName(t, "pg")
	slot := "omnisync_cdc_test"
	psql := func(sql string, args ...any) {
		t.Helper()
		if _, err := db.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// The table of docs/examples/crm-table-mapping.yaml, with its mapping.
	psql(`CREATE TABLE contacts (contact_id text PRIMARY KEY, full_name text, mobile text, email text,
		level int, labels text[], city text, industry text, updated_at timestamptz)`)
	psql(`INSERT INTO contacts (contact_id, full_name, mobile, level, labels, city) VALUES ('S-1', 'Li Na', '13800138000', 3, '{vip,north}', '上海'),
		('S-2', 'Wang Fang', '13800138001', NULL, NULL, NULL), ('S-3', 'Gone Soon', NULL, 1, NULL, NULL)`)
	mapping := filepath.Join(testenv.RepoRoot(t), "docs", "examples", "crm-table-mapping.yaml")
	args := []string{"source", "postgres", "--dsn", dsn, "--table", "contacts", "--key", "contact_id", "--mapping", mapping,
		"--source", source, "--slot", slot, "--brokers", strings.Join(k.Brokers, ","), "--registry", f.registryURL, "--log-level", "info"}
	t.Cleanup(func() { // before the database is dropped: a slot keeps it in use
		out, err := osexec(testenv.Binary(t), append(args, "--drop-slot")...)
		if err != nil {
			t.Errorf("--drop-slot: %v\n%s", err, out)
		}
		c, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close(context.Background())
		var n int
		if err := c.QueryRow(context.Background(), `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()`, slot).Scan(&n); err != nil || n != 0 {
			t.Errorf("after --drop-slot: %d slots (%v)", n, err)
		}
	})
	from := testenv.EndOffsets(t, f.cl, schemas.CustomerEventsTopic)[schemas.CustomerEventsTopic]

	// wait waits until the source produced want distinct changes.
	wait := func(want int, p *process) (map[string]map[string]bool, int) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			ids, n := sourceEvents(t, f, k, from, source)
			if len(ids) >= want {
				return ids, n
			}
			if time.Now().After(deadline) || !p.running() {
				t.Fatalf("%d of %d changes produced (source running: %v); source output:\n%s", len(ids), want, p.running(), p.output())
			}
			time.Sleep(300 * time.Millisecond)
		}
	}

	p := startProcess(t, args...)
	wait(3, p) // the snapshot
	psql(`INSERT INTO contacts (contact_id, full_name, mobile, level, labels, updated_at) VALUES ('S-4', 'Zhao Lei', '13800138004', 2, '{new}', '2026-11-22 09:00:00+08')`)
	psql(`UPDATE contacts SET mobile = '13900139001', level = 5 WHERE contact_id = 'S-2'`)
	psql(`UPDATE contacts SET labels = NULL WHERE contact_id = 'S-1'`)
	psql(`DELETE FROM contacts WHERE contact_id = 'S-3'`)
	changes := 3 + 4
	wait(changes, p)

	// A stream of single-row transactions; the source is killed in the
	// middle of it (the second half waits for the kill) and started again.
	const burst = 120
	done, killed := make(chan error, 1), make(chan struct{})
	go func() {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			done <- err
			return
		}
		defer c.Close(ctx)
		for i := range burst {
			if i == burst/2 {
				<-killed
			}
			sql := fmt.Sprintf(`INSERT INTO contacts (contact_id, full_name, mobile, level) VALUES ('B-%d', 'Burst %d', '1380000%04d', %d)`, i, i, i, i%10)
			if i%3 == 2 {
				sql = fmt.Sprintf(`UPDATE contacts SET full_name = 'Burst %d updated' WHERE contact_id = 'B-%d'`, i-1, i-1)
			}
			if _, err := c.Exec(ctx, sql); err != nil {
				done <- err
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		done <- nil
	}()
	wait(changes+10, p) // the source is producing the burst
	p.stop(syscall.SIGKILL)
	close(killed)
	atKill, _ := sourceEvents(t, f, k, from, source)
	t.Logf("killed the source with -9 while the burst ran, after %d of %d changes", len(atKill), changes+burst)
	p = startProcess(t, args...)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	changes += burst
	wait(changes, p)
	time.Sleep(time.Second) // anything beyond the changes would be a double
	ids, records := sourceEvents(t, f, k, from, source)
	p.stop(syscall.SIGTERM)
	if len(ids) != changes {
		t.Fatalf("%d distinct source event IDs, want %d (one per change)", len(ids), changes)
	}
	for sid, eids := range ids {
		if len(eids) != 1 {
			t.Errorf("change %s produced with %d event IDs %v: a double", sid, len(eids), eids)
		}
		if !strings.HasPrefix(sid, "lsn:") && !strings.HasPrefix(sid, "snapshot:") {
			t.Errorf("source event ID %q: want the LSN in it", sid)
		}
	}
	t.Logf("%d changes, %d records (a change sent again after the kill has the same event ID)", changes, records)

	// After a clean stop the slot is confirmed past everything: a restart
	// sends nothing again.
	p = startProcess(t, args...)
	for deadline := time.Now().Add(time.Minute); !strings.Contains(p.output(), "streaming changes"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) || !p.running() {
			t.Fatalf("the source did not start streaming again:\n%s", p.output())
		}
	}
	time.Sleep(2 * time.Second)
	p.stop(syscall.SIGTERM)
	if _, again := sourceEvents(t, f, k, from, source); again != records {
		t.Fatalf("a restart after a clean stop produced %d records again, want none", again-records)
	}

	// The store holds the table's final content.
	materializeUntil(t, k, f.serde, f.group, f.st, f.cl)
	customer := func(id string) (map[string]string, bool) {
		t.Helper()
		r, ok, err := f.st.Customer(ctx, ingest.CustomerIDFor(events.Identity{Kind: "crm", Scope: source, Value: id, Verified: true}))
		if err != nil || !ok {
			t.Fatalf("customer %s: found %v, %v", id, ok, err)
		}
		out := map[string]string{}
		for name, reg := range r.State().Fields {
			out[name] = reg.ValueJSON
		}
		return out, r.Deleted()
	}
	rows, err := db.Query(ctx, `SELECT contact_id, coalesce(full_name, ''), coalesce(mobile, '') FROM contacts`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]string{}
	for rows.Next() {
		var id, name, mobile string
		if err := rows.Scan(&id, &name, &mobile); err != nil {
			t.Fatal(err)
		}
		want[id] = [2]string{name, mobile}
	}
	if len(want) != 3+burst-burst/3 {
		t.Fatalf("the table holds %d rows, want %d", len(want), 3+burst-burst/3)
	}
	for id, w := range want {
		got, deleted := customer(id)
		if deleted || got["name"] != fmt.Sprintf("%q", w[0]) || got["phone"] != fmt.Sprintf("%q", "+86"+w[1]) {
			t.Errorf("customer %s: %v (deleted %v), want name %q phone %s", id, got, deleted, w[0], w[1])
		}
	}
	if got, _ := customer("S-1"); got["address"] == "" || !strings.Contains(got["address"], "上海") {
		t.Errorf("S-1: address %s, want the city 上海", got["address"])
	}
	if got, _ := customer("S-2"); got["vip_level"] != "5" {
		t.Errorf("S-2 after its update: %v, want vip_level 5", got)
	}
	if got, _ := customer("S-1"); got["tags"] != "" && got["tags"] != "null" && got["tags"] != "[]" {
		t.Errorf("S-1 after its labels were set to NULL: tags %s, want cleared", got["tags"])
	}
	if _, deleted := customer("S-3"); !deleted {
		t.Errorf("S-3 was deleted from the table, not from the store")
	}
}

func osexec(bin string, args ...string) ([]byte, error) {
	return exec.Command(bin, args...).CombinedOutput()
}

// omnisync source poll --once makes one pass and prints its counts; a
// second process finds the hashes the first saved and sends nothing again.
func TestSourcePollCommand(t *testing.T) {
	k := testenv.RealKafka(t)
	f := newLogStore(t, k, "pollcmd")
	records := `[{"id":"Q-1","name":"Li Na","phone":"13800138000"},{"id":"Q-2","name":"Wang Fang","email":"wf@example.com"}]`
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(records)) }))
	defer api.Close()
	source := testenv.UniqueName(t, "pollcmd")
	once := func() poll.Pass {
		t.Helper()
		out, err := exec.Command(testenv.Binary(t), "source", "poll", "--url", api.URL+"/customers", "--source", source, "--once",
			"--brokers", strings.Join(k.Brokers, ","), "--registry", f.registryURL, "--log-level", "warn").Output()
		if err != nil {
			t.Fatalf("source poll --once: %v\n%s", err, out)
		}
		var p poll.Pass
		if err := json.Unmarshal(out, &p); err != nil {
			t.Fatalf("output %q: %v", out, err)
		}
		return p
	}
	if got := once(); got != (poll.Pass{Records: 2, Changed: 2, Complete: true}) {
		t.Fatalf("first pass: %+v", got)
	}
	if got := once(); got != (poll.Pass{Records: 2, Unchanged: 2, Complete: true}) {
		t.Fatalf("second process's pass: %+v, want nothing sent again", got)
	}
	materializeUntil(t, k, f.serde, f.group, f.st, f.cl)
	r, ok, err := f.st.Customer(context.Background(), ingest.CustomerIDFor(events.Identity{Kind: "crm", Scope: source, Value: "Q-1", Verified: true}))
	if err != nil || !ok || r.State().Fields["phone"].ValueJSON != `"+8613800138000"` {
		t.Fatalf("Q-1 in the store: %v %v %+v", ok, err, r.State().Fields)
	}
}
