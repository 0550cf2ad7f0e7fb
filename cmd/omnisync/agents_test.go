package main

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/omnisync/omnisync/api"
	"github.com/omnisync/omnisync/consumers/store/sqlite"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/events"
)

// auditRecorder keeps the audit events the API records.
type auditRecorder struct {
	mu    sync.Mutex
	audit []string
}

func (r *auditRecorder) Record(_ context.Context, a *events.AuditEvent, _ ...*events.CustomerEvent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.audit = append(r.audit, a.Actor+" "+a.Action+" "+a.Target)
	return nil
}

func runAgents(t *testing.T, apiURL, stdin string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(testenv.Binary(t), append([]string{"agents", "--api", apiURL}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
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

func TestAgentsCommands(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "omnisync.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	const token = "agents-cli-test-token"
	rec := &auditRecorder{}
	srv := httptest.NewServer(api.Handler(api.Config{Store: st, Publisher: &materializingPublisher{st: st}, Recorder: rec,
		Accounts: st, AdminToken: token, Instance: "cli-test"}))
	t.Cleanup(srv.Close)
	admin := []string{"OMNISYNC_TOKEN=", "OMNISYNC_ADMIN_TOKEN=" + token}

	out, errOut, code := runAgents(t, srv.URL, "correct horse battery\n", admin, "add", "emma.clarke", "--role", "agent", "--password-stdin")
	agentToken := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(agentToken, "osk_") || !strings.Contains(errOut, "shown only now") {
		t.Fatalf("add: exit %d: %s%s", code, out, errOut)
	}
	if _, errOut, code := runAgents(t, srv.URL, "", admin, "add", "Emma", "--role", "agent"); code != 1 || !strings.Contains(errOut, "name:") {
		t.Errorf("add with a bad name: exit %d: %s", code, errOut)
	}
	// The agent's token works for the review queue, not for accounts.
	if _, errOut, code := runConflicts(t, srv.URL, []string{"OMNISYNC_TOKEN=" + agentToken}, "list"); code != 0 {
		t.Errorf("conflicts list with the agent's token: exit %d: %s", code, errOut)
	}
	if _, errOut, code := runAgents(t, srv.URL, "", []string{"OMNISYNC_TOKEN=" + agentToken}, "list"); code != 1 || !strings.Contains(errOut, "403") {
		t.Errorf("agents list with an agent's token: exit %d: %s", code, errOut)
	}
	if _, errOut, code := runAgents(t, srv.URL, "a much better passphrase\n", admin, "passwd", "emma.clarke", "--password-stdin"); code != 0 {
		t.Errorf("passwd: exit %d: %s", code, errOut)
	}
	if _, errOut, code := runAgents(t, srv.URL, "short\n", admin, "passwd", "emma.clarke", "--password-stdin"); code != 1 || !strings.Contains(errOut, "at least 12") {
		t.Errorf("passwd with a short password: exit %d: %s", code, errOut)
	}
	if out, errOut, code := runAgents(t, srv.URL, "", admin, "disable", "emma.clarke"); code != 0 || !strings.Contains(out, "disabled") {
		t.Errorf("disable: exit %d: %s%s", code, out, errOut)
	}
	out, errOut, code = runAgents(t, srv.URL, "", admin, "list")
	if code != 0 || !strings.Contains(out, "emma.clarke") || !strings.Contains(out, "disabled") {
		t.Errorf("list: exit %d: %s%s", code, out, errOut)
	}
	if _, errOut, code := runConflicts(t, srv.URL, []string{"OMNISYNC_TOKEN=" + agentToken}, "list"); code != 1 || !strings.Contains(errOut, "401") {
		t.Errorf("conflicts list with a disabled agent's token: exit %d: %s", code, errOut)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	want := []string{"bootstrap-admin agent.create emma.clarke", "bootstrap-admin agent.password emma.clarke", "bootstrap-admin agent.disable emma.clarke"}
	if strings.Join(rec.audit, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit trail %q, want %q", rec.audit, want)
	}
}

func TestAgentsHelp(t *testing.T) {
	for _, args := range [][]string{{"agents"}, {"agents", "add"}, {"agents", "list"}, {"agents", "disable"}, {"agents", "passwd"}} {
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
