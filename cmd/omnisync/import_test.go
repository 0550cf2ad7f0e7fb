package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/producers/importer"
)

// omnisync import prints each rejected row and the counts, and exits 2
// when rows were rejected, 0 when every row was imported.
func TestImportCommand(t *testing.T) {
	k := testenv.AnyKafka(t)
	cl, err := kafka.NewClient(k.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kafka.Provision(context.Background(), kadm.NewClient(cl), kafka.DefaultLayout.Topics()); err != nil {
		t.Fatal(err)
	}
	_, registryURL := testenv.Registry(t)
	dir := t.TempDir()
	source := testenv.UniqueName(t, "cli")
	run := func(content string, extra ...string) (importer.Summary, int) {
		t.Helper()
		path := filepath.Join(dir, "f.csv")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		args := append([]string{"import", path, "--source", source, "--brokers", strings.Join(k.Brokers, ","), "--registry", registryURL,
			"--log-level", "warn", "--summary", "json"}, extra...)
		out, err := exec.Command(testenv.Binary(t), args...).Output()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		var sum importer.Summary
		if err := json.Unmarshal(out, &sum); err != nil {
			t.Fatalf("summary %q: %v", out, err)
		}
		return sum, code
	}
	sum, code := run("id,name,phone\nA-1,Li Na,13800138000\nA-2,Bad,12\n")
	if code != exitRejected || sum.Imported != 1 || sum.Rejected != 1 || sum.Rejections[0].Line != 3 || sum.Rejections[0].Field != "phone" || sum.Rejections[0].DeadLetterID == "" {
		t.Fatalf("exit %d, summary %+v; want 2 and line 3's phone rejected", code, sum)
	}
	if sum, code := run("id,name\nA-1,Li Na\n"); code != 0 || sum.Imported != 1 {
		t.Fatalf("exit %d, summary %+v; want 0", code, sum)
	}
	// The same file again, by another process: nothing to produce.
	if sum, code := run("id,name\nA-1,Li Na\n"); code != 0 || sum.Imported != 0 || sum.Unchanged != 1 {
		t.Fatalf("the same file imported again: exit %d, summary %+v; want 0 imported, 1 unchanged", code, sum)
	}
}
