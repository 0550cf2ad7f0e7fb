package materializer_test

import (
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/internal/testenv"
)

// The materializer process, killed with SIGKILL at random points at least
// ten times while a stream is produced, ends with a store identical to a
// clean replay: no event lost, no message doubled.
func TestCrashesLoseNothingAndDoubleNothing(t *testing.T) {
	k := testenv.RealKafka(t)
	r := newRig(t, k)
	bin := testenv.Binary(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "crashy.db")
	group := testenv.UniqueName(t, "crashy")
	// Both groups begin where the shared topics end now, so they fold this
	// test's stream, not every other test's records.
	crashy := openSQLite(t, dbPath)
	from := r.startAtEnd(t, crashy, group)

	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "consume", "--brokers", strings.Join(k.Brokers, ","), "--registry", r.url,
			"--group", group, "--store", "sqlite:"+dbPath, "--log-level", "warn")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}

	rng := rand.New(rand.NewPCG(42, 7))
	stream := randomStream(rng, customers(t, 20), 3000)
	produced := make(chan error, 1)
	go func() {
		for i := 0; i < len(stream); i += 50 {
			if err := r.tryProduce(stream[i:min(i+50, len(stream))]...); err != nil {
				produced <- err
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		produced <- nil
	}()

	kills, killsDuringStream, done := 0, 0, false
	proc := start()
	for !done {
		time.Sleep(time.Duration(300+rng.IntN(900)) * time.Millisecond)
		if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = proc.Wait()
		kills++
		if !done {
			killsDuringStream++
		}
		proc = start()
		select {
		case err := <-produced:
			if err != nil {
				t.Fatal(err)
			}
			done = true
		default:
		}
	}
	t.Logf("materializer killed with SIGKILL %d times, %d of them while the stream was produced", kills, killsDuringStream)
	if killsDuringStream < 10 {
		t.Errorf("only %d kills while the stream was produced, want at least 10", killsDuringStream)
	}
	defer func() {
		_ = proc.Process.Signal(syscall.SIGTERM)
		_ = proc.Wait()
	}()

	ends := r.endOffsets(t)
	waitCaughtUp(t, crashy, group, ends, 120*time.Second)

	// A clean replay into a fresh store by a fresh group.
	clean := openSQLite(t, filepath.Join(dir, "clean.db"))
	cleanGroup := testenv.UniqueName(t, "clean")
	if err := clean.Apply(context.Background(), &store.Batch{Group: cleanGroup, Offsets: from}); err != nil {
		t.Fatal(err)
	}
	runMaterializer(t, r, cleanGroup, clean)
	waitCaughtUp(t, clean, cleanGroup, ends, 120*time.Second)

	want, wantMessages := expected(stream)
	checkStore(t, crashy, want, wantMessages)
	checkStore(t, clean, want, wantMessages)
}
