package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/ksuid"

	"github.com/omnisync/omnisync/api"
	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/consumers/store/sqlite"
	"github.com/omnisync/omnisync/internal/demo"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/events"
)

// materializingPublisher stands in for Kafka and the materializer: every
// event the API publishes is merged into the store at once, so a test sees
// the outcome of a resolution on its next call.
type materializingPublisher struct {
	mu        sync.Mutex
	st        *sqlite.Store
	published []*events.CustomerEvent
}

func (p *materializingPublisher) Publish(ctx context.Context, ev *events.CustomerEvent) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.published = append(p.published, ev)
	return materialize(ctx, p.st, ev)
}

// events returns what was published so far. The CLI under test is another
// process, so its answer orders nothing in this one: read under the lock.
func (p *materializingPublisher) events() []*events.CustomerEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.published)
}

func materialize(ctx context.Context, st *sqlite.Store, evs ...*events.CustomerEvent) error {
	policy := merge.DefaultPolicy()
	recs := map[string]merge.Record{}
	for _, ev := range evs {
		r, ok := recs[ev.CustomerID]
		if !ok {
			stored, err := st.Load(ctx, []string{ev.CustomerID})
			if err != nil {
				return err
			}
			r = stored[ev.CustomerID]
		}
		r, out := merge.Apply(r, ev, policy)
		if out.Ignored != "" {
			return fmt.Errorf("event %s ignored: %s", ev.EventID, out.Ignored)
		}
		recs[ev.CustomerID] = r
	}
	b := &store.Batch{Group: "conflicts-cli-test", PolicyHash: policy.Hash()}
	for _, r := range recs {
		b.Records = append(b.Records, r)
	}
	return st.Apply(ctx, b)
}

// TestConflictsCommands runs `omnisync conflicts` against the API handler
// over a SQLite store with two open conflicts on two customers.
func TestConflictsCommands(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "omnisync.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	t0 := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	upsert := func(id, customer string, ch events.Channel, at time.Duration, p events.Profile) *events.CustomerEvent {
		return &events.CustomerEvent{EventID: id, CustomerID: customer, Channel: ch, Source: "src-" + strings.ToLower(string(ch)),
			Op: events.OpUpsert, OccurredAt: t0.Add(at), IngestedAt: t0.Add(at), Profile: &p}
	}
	name, phone, email := "李娜", "+8613800138000", "li.na@example.com"
	other, otherPhone := "+8613911112222", "+8613700137000"
	if err := materialize(ctx, st,
		upsert("e1", "cus_a", events.ChannelCRM, 0, events.Profile{Name: &name, Phone: &phone, Email: &email}),
		upsert("e2", "cus_a", events.ChannelWeChat, time.Hour, events.Profile{Phone: &other}),
		upsert("e3", "cus_b", events.ChannelCRM, 0, events.Profile{Phone: &otherPhone}),
		upsert("e4", "cus_b", events.ChannelWeb, 2*time.Hour, events.Profile{Phone: &phone}),
	); err != nil {
		t.Fatal(err)
	}
	idA, idB := merge.ConflictID("cus_a", "phone", "e2"), merge.ConflictID("cus_b", "phone", "e4")

	const token = "conflicts-cli-test-token"
	pub := &materializingPublisher{st: st}
	srv := httptest.NewServer(api.Handler(api.Config{Store: st, Publisher: pub, AdminToken: token, Instance: "cli-test"}))
	t.Cleanup(srv.Close)

	run := func(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
		t.Helper()
		return runConflicts(t, srv.URL, env, args...)
	}
	withToken := []string{"OMNISYNC_ADMIN_TOKEN=" + token}

	t.Run("list", func(t *testing.T) {
		out, errOut, code := run(t, withToken, "list")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		t.Logf("omnisync conflicts list:\n%s", out)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID ") ||
			!strings.HasPrefix(lines[1], idA+" ") || !strings.Contains(lines[1], name) || !strings.Contains(lines[1], `"`+other+`"`) ||
			!strings.HasPrefix(lines[2], idB+" ") {
			t.Errorf("table, want a header and %s then %s:\n%s", idA, idB, out)
		}
		// Paging: one a page, the cursor on stderr.
		out, errOut, code = run(t, withToken, "list", "--limit", "1")
		cursor, ok := strings.CutPrefix(strings.TrimSpace(errOut), "more: --cursor ")
		if code != 0 || !ok || !strings.Contains(out, idA) || strings.Contains(out, idB) {
			t.Fatalf("first page (exit %d):\n%s%s", code, out, errOut)
		}
		var page api.Page[api.Conflict]
		out, errOut, code = run(t, withToken, "list", "--limit", "1", "--cursor", cursor, "--json")
		if code != 0 || json.Unmarshal([]byte(out), &page) != nil || len(page.Items) != 1 || page.Items[0].ID != idB {
			t.Errorf("second page as JSON (exit %d): %s%s", code, out, errOut)
		}
		if _, errOut, code := run(t, withToken, "list", "--status", "closed"); code != 1 || !strings.Contains(errOut, "status: want open") {
			t.Errorf("unknown status: exit %d, %s", code, errOut)
		}
	})

	t.Run("token", func(t *testing.T) {
		if _, errOut, code := run(t, []string{"OMNISYNC_ADMIN_TOKEN="}, "list"); code != 1 || !strings.Contains(errOut, "no token") {
			t.Errorf("without a token: exit %d, %s", code, errOut)
		}
		if _, errOut, code := run(t, nil, "--token", "wrong", "list"); code != 1 || !strings.Contains(errOut, "401") {
			t.Errorf("wrong token: exit %d, %s", code, errOut)
		}
		if _, errOut, code := run(t, []string{"OMNISYNC_ADMIN_TOKEN="}, "--token", token, "list"); code != 0 {
			t.Errorf("--token: exit %d, %s", code, errOut)
		}
	})

	t.Run("show", func(t *testing.T) {
		out, errOut, code := run(t, withToken, "show", idA)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		t.Logf("omnisync conflicts show:\n%s", out)
		for _, want := range []string{idA, "OPEN", "cus_a (李娜)", `"` + phone + `"`, "from CRM src-crm", "event e1", `"` + other + `"`, "from WECHAT src-wechat, event e2"} {
			if !strings.Contains(out, want) {
				t.Errorf("show lacks %q:\n%s", want, out)
			}
		}
		if _, errOut, code := run(t, withToken, "show", "0000"); code != exitNotFound || !strings.Contains(errOut, "no conflict 0000") {
			t.Errorf("unknown conflict: exit %d, %s", code, errOut)
		}
	})

	t.Run("resolve", func(t *testing.T) {
		if _, errOut, code := run(t, withToken, "resolve", idA, "--by", "emma"); code != 1 || !strings.Contains(errOut, "keep-current") {
			t.Errorf("no choice: exit %d, %s", code, errOut)
		}
		if _, errOut, code := run(t, withToken, "resolve", idA, "--keep-current", "--take-candidate"); code != 1 || !strings.Contains(errOut, "none of the others") {
			t.Errorf("two choices: exit %d, %s", code, errOut)
		}
		if _, errOut, code := run(t, withToken, "resolve", "0000", "--keep-current"); code != exitNotFound {
			t.Errorf("unknown conflict: exit %d, %s", code, errOut)
		}
		if n := len(pub.events()); n != 0 {
			t.Fatalf("%d events published by refused resolutions", n)
		}

		out, errOut, code := run(t, withToken, "resolve", idA, "--set-value", `"+8613800138001"`, "--by", "bootstrap-admin")
		if code != 0 || !strings.Contains(out, "published as event") {
			t.Fatalf("set value: exit %d, %s%s", code, out, errOut)
		}
		published := pub.events()
		if len(published) != 1 {
			t.Fatalf("%d events published, want 1", len(published))
		}
		ev := published[0]
		if r := ev.Resolution; ev.Op != events.OpResolve || ev.Source != "api@cli-test" || r.ConflictID != idA ||
			r.Choice != events.ChoiceSetValue || r.Value == nil || *r.Value != "+8613800138001" || r.ResolvedBy != "bootstrap-admin" {
			t.Errorf("published %+v with %+v", ev, ev.Resolution)
		}
		out, _, _ = run(t, withToken, "show", idA)
		if !strings.Contains(out, "SET_VALUE") || !strings.Contains(out, `"+8613800138001"`) || !strings.Contains(out, "by bootstrap-admin") {
			t.Errorf("after resolving:\n%s", out)
		}
		if _, errOut, code := run(t, withToken, "resolve", idA, "--take-candidate"); code != exitAlreadyResolved || !strings.Contains(errOut, "SET_VALUE") {
			t.Errorf("resolving again: exit %d, %s", code, errOut)
		}
		out, _, _ = run(t, withToken, "list")
		if strings.Contains(out, idA) || !strings.Contains(out, idB) {
			t.Errorf("open conflicts after resolving %s:\n%s", idA, out)
		}
		out, _, _ = run(t, withToken, "list", "--status", "set_value")
		if !strings.Contains(out, idA) || strings.Contains(out, idB) {
			t.Errorf("set_value conflicts:\n%s", out)
		}
	})
}

// runConflicts runs `omnisync conflicts --api apiURL args…` with env added
// to this process's and returns its output and exit status.
func runConflicts(t *testing.T, apiURL string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(testenv.Binary(t), append([]string{"conflicts", "--api", apiURL}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// TestDevConflictsCommands works the demo's review queue of a real
// `omnisync dev` from the command line. One resolution is made after a
// channel whose clock runs 20 h ahead rewrote the field: the materializer
// must still apply it.
func TestDevConflictsCommands(t *testing.T) {
	root := t.TempDir()
	dev := startDev(t, filepath.Join(root, "data"), [3]string{testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)}, nil)
	crm := seedDemo(t, dev, root)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := []string{"OMNISYNC_ADMIN_TOKEN=" + dev.adminToken}
	var open api.Page[api.Conflict]
	eventually(t, "the demo's review queue through the CLI", func() string {
		out, errOut, code := runConflicts(t, dev.http, env, "list", "--json")
		if code != 0 || json.Unmarshal([]byte(out), &open) != nil {
			return fmt.Sprintf("exit %d: %s%s", code, out, errOut)
		}
		if len(open.Items) != 5 {
			return fmt.Sprintf("%d open conflicts, want 5", len(open.Items))
		}
		return ""
	})
	var li api.Conflict
	for _, c := range open.Items {
		if c.CustomerName != nil && *c.CustomerName == demo.LiNa.Name {
			li = c
		}
	}
	if li.ID == "" || li.Field != "phone" {
		t.Fatalf("no conflict on 李娜's phone in %+v", open.Items)
	}

	// The CRM, its clock 20 h ahead, sends 李娜's current number again.
	ahead := time.Now().Add(20 * time.Hour).UTC().Truncate(time.Millisecond)
	var current string
	if err := json.Unmarshal(li.Current, &current); err != nil {
		t.Fatal(err)
	}
	if err := crm.Publish(ctx, &events.CustomerEvent{EventID: ksuid.New().String(), CustomerID: li.CustomerID, Channel: events.ChannelCRM,
		Source: "crm-clock-ahead", Op: events.OpUpsert, OccurredAt: ahead, IngestedAt: time.Now(), Profile: &events.Profile{Phone: &current}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the phone stamped 20 h ahead", func() string {
		out, _, _ := runConflicts(t, dev.http, env, "show", li.ID, "--json")
		var v struct {
			Current *api.Field `json:"current_field"`
		}
		if json.Unmarshal([]byte(out), &v) != nil || v.Current == nil || !v.Current.OccurredAt.Equal(ahead) {
			return "show --json: " + out
		}
		return ""
	})
	out, errOut, code := runConflicts(t, dev.http, env, "resolve", li.ID, "--take-candidate")
	if code != 0 {
		t.Fatalf("resolve: exit %d: %s%s", code, out, errOut)
	}
	eventually(t, "the resolution applied over the value stamped ahead", func() string {
		out, _, _ := runConflicts(t, dev.http, env, "show", li.ID)
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "field now ") && strings.Contains(line, string(li.Candidate)) && strings.Contains(line, "from AGENT") &&
				strings.Contains(out, "TOOK_CANDIDATE") {
				return ""
			}
		}
		return out
	})
	if _, errOut, code := runConflicts(t, dev.http, env, "resolve", li.ID, "--keep-current"); code != exitAlreadyResolved {
		t.Errorf("resolving again: exit %d, want %d: %s", code, exitAlreadyResolved, errOut)
	}
	if _, errOut, code := runConflicts(t, dev.http, env, "show", "no-such-conflict"); code != exitNotFound {
		t.Errorf("unknown conflict: exit %d, want %d: %s", code, exitNotFound, errOut)
	}
	out, _, _ = runConflicts(t, dev.http, env, "list")
	if strings.Contains(out, li.ID) || strings.Count(strings.TrimSpace(out), "\n") != 4 {
		t.Errorf("open conflicts after resolving %s, want the 4 others:\n%s", li.ID, out)
	}
	dev.stop(t)
}

// TestConflictsHelp: every conflicts command explains itself with examples.
func TestConflictsHelp(t *testing.T) {
	for _, args := range [][]string{{"conflicts"}, {"conflicts", "list"}, {"conflicts", "show"}, {"conflicts", "resolve"}} {
		root := newRootCommand()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs(append(args, "--help"))
		if err := root.Execute(); err != nil {
			t.Fatalf("%v --help: %v", args, err)
		}
		if s := out.String(); !strings.Contains(s, "Examples:") || !strings.Contains(s, "  omnisync "+strings.Join(args, " ")) {
			t.Errorf("%v --help has no examples:\n%s", args, out.String())
		}
	}
}
