package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store/sqlite"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/schemas"
)

// TestReplayCommand is the README's policy change with the real command
// on the real Kafka: build a shadow with a new authority order
// (--no-swap), compare it with the live store (verify --store --store),
// then swap it in; progress goes to the log when stderr is no terminal.
func TestReplayCommand(t *testing.T) {
	ctx := context.Background()
	k, bin := testenv.RealKafka(t), testenv.Binary(t)
	f := newLogStore(t, k, "replay")
	cl, serde, registryURL, group, start, path, st := f.cl, f.serde, f.registryURL, f.group, f.start, f.path, f.st

	// Each customer: the CRM sets a phone, two hours later the web form
	// another. The CRM outranks the web by default, not in policy-v2.
	prefix := testenv.UniqueName(t, "cus")
	at := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	var recs []*kgo.Record
	var ids []string
	for i := range 4 {
		id := fmt.Sprintf("%s_%d", prefix, i)
		ids = append(ids, id)
		for n, ch := range []events.Channel{events.ChannelCRM, events.ChannelWeb} {
			phone := fmt.Sprintf("+86138000%02d%03d", i, n)
			when := at.Add(time.Duration(n) * 2 * time.Hour)
			b, err := serde.Encode(&events.CustomerEvent{EventID: fmt.Sprintf("%s-e%d", id, n), CustomerID: id, Channel: ch,
				Source: "test", Op: events.OpUpsert, OccurredAt: when, IngestedAt: when, Profile: &events.Profile{Phone: &phone}})
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, &kgo.Record{Topic: schemas.CustomerEventsTopic, Key: []byte(id), Value: b})
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	materializeUntil(t, k, serde, group, st, cl)
	phone := func(id string) string {
		r, ok, err := st.Customer(ctx, id)
		if err != nil || !ok {
			t.Fatalf("customer %s: found %v, %v", id, ok, err)
		}
		return string(r.Fields["phone"].Value)
	}
	if got := phone(ids[0]); !strings.Contains(got, "000") {
		t.Fatalf("under the default policy the CRM's phone should hold, got %s", got)
	}

	policyFile := filepath.Join(t.TempDir(), "policy-v2.yaml")
	if err := os.WriteFile(policyFile, []byte("authority: [WEB, APP, CRM, AGENT, IMPORT, MINIPROGRAM, WECHAT, PHONE, UNKNOWN]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	starts, _ := json.Marshal(start)
	run := func(wantCode int, args ...string) (string, string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "OMNISYNC_KAFKA_BROKERS="+strings.Join(k.Brokers, ","))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != wantCode {
			t.Fatalf("omnisync %s: exit %d (%v), want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, err, wantCode, stdout.String(), stderr.String())
		}
		return stdout.String(), stderr.String()
	}
	replayArgs := []string{"replay", "--store", "sqlite:" + path, "--group", group, "--policy", policyFile,
		"--registry", registryURL, "--start-offsets", string(starts)}

	out, logs := run(0, append(replayArgs, "--no-swap")...)
	if !strings.Contains(out, "built the shadow, not swapped in") || !strings.Contains(out, "0 differ") {
		t.Errorf("replay --no-swap printed %q", out)
	}
	if !strings.Contains(logs, `"msg":"replay progress"`) || !strings.Contains(logs, `"records_per_s"`) {
		t.Errorf("no progress lines in the log of replay (stderr no terminal):\n%s", logs)
	}
	if got := phone(ids[0]); !strings.Contains(got, "000") {
		t.Errorf("--no-swap changed the live store: phone %s", got)
	}

	// The diff: every customer of the scenario changes.
	out, _ = run(1, "verify", "--store", "sqlite:"+path, "--store", "sqlite:"+sqlite.ShadowPath(path), "--log-level", "warn")
	for _, id := range ids {
		if !strings.Contains(out, id+`: field "phone"`) {
			t.Errorf("verify of the live store against the shadow does not name %s's phone:\n%s", id, out)
		}
	}

	out, _ = run(0, replayArgs...)
	if !strings.Contains(out, "swapped in the rebuilt store") {
		t.Errorf("replay printed %q", out)
	}
	newPolicy, err := merge.LoadPolicy(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if got := phone(id); !strings.Contains(got, "001") {
			t.Errorf("after the swap customer %s has phone %s, want the web's", id, got)
		}
	}
	if h, err := st.PolicyHash(ctx); err != nil || h != newPolicy.Hash() {
		t.Errorf("after the swap the store's policy is %q (%v), want %q", h, err, newPolicy.Hash())
	}
	if _, err := os.Stat(sqlite.ShadowPath(path)); !os.IsNotExist(err) {
		t.Errorf("the shadow file is left after the swap (%v)", err)
	}
	if _, logs := run(1, "replay", "--store", "sqlite:"+path, "--to-offsets", "soon"); !strings.Contains(logs, `--to-offsets "soon": want live or end`) {
		t.Errorf("a bad --to-offsets gave %q", logs)
	}
}
