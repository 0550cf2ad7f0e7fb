package testenv

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/ksuid"
	"github.com/testcontainers/testcontainers-go"
)

var (
	cleanupMu sync.Mutex
	cleanups  []func()
)

// atExit registers fn to run when Main returns, for services started once
// per test binary.
func atExit(fn func()) {
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	cleanups = append(cleanups, fn)
}

// Main runs a package's tests and then stops the services the harness
// started for them. Call it from TestMain in packages that use Postgres:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	return code
}

var unsafeChars = regexp.MustCompile(`[^a-zA-Z0-9]+`)

// UniqueName returns a name no other test run uses, for topics, groups and
// databases on shared services: prefix, the test's name and a random part.
func UniqueName(t testing.TB, prefix string) string {
	name := strings.ToLower(unsafeChars.ReplaceAllString(t.Name(), "_"))
	if len(name) > 30 {
		name = name[len(name)-30:]
	}
	return strings.Trim(prefix+"_"+name, "_") + "_" + strings.ToLower(ksuid.New().String()[:10])
}

// RepoRoot returns the directory holding go.mod, where scripts/ lives.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := repoRootDir()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

var (
	dockerOnce sync.Once
	dockerErr  error
)

// docker reports whether a Docker engine answers, for testcontainers.
func docker() error {
	dockerOnce.Do(func() {
		// testcontainers panics when it finds no Docker host at all.
		defer func() {
			if r := recover(); r != nil {
				dockerErr = fmt.Errorf("no Docker engine: %v", r)
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p, err := testcontainers.NewDockerProvider()
		if err != nil {
			dockerErr = err
			return
		}
		defer p.Close()
		if err := p.Health(ctx); err != nil {
			dockerErr = fmt.Errorf("docker engine not reachable: %w", err)
		}
	})
	return dockerErr
}
