package testenv

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
)

var (
	pgOnce    sync.Once
	pgServer  string // DSN of the server's maintenance database
	pgBackend string
	pgErr     error
)

// Postgres returns the DSN of a fresh, empty database for the test on a real
// PostgreSQL server: the one OMNISYNC_TEST_POSTGRES names (make test starts
// one), else one in Docker through testcontainers, else one started from the
// machine's PostgreSQL binaries (scripts/postgres.sh) for this test binary
// and stopped by Main; else the test is skipped loudly. The database is
// dropped when the test ends.
func Postgres(t testing.TB) string {
	t.Helper()
	pgOnce.Do(startPostgres)
	if pgErr != nil {
		Skip(t, "no PostgreSQL: %v", pgErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, pgServer)
	if err != nil {
		t.Fatalf("connecting to PostgreSQL (%s): %v", pgBackend, err)
	}
	defer admin.Close(context.Background())
	db := UniqueName(t, "t")
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
		t.Fatalf("creating database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, pgServer); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)")
			_ = c.Close(ctx)
		}
	})
	cfg, err := pgx.ParseConfig(pgServer)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("PostgreSQL backend: %s, database %s", pgBackend, db)
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, db)
}

func startPostgres() {
	if dsn := os.Getenv("OMNISYNC_TEST_POSTGRES"); dsn != "" {
		pgServer, pgBackend = dsn, "external (OMNISYNC_TEST_POSTGRES)"
		return
	}
	if docker() == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		c, err := tcpostgres.Run(ctx, "postgres:16-alpine", tcpostgres.BasicWaitStrategies())
		if err != nil {
			pgErr = fmt.Errorf("testcontainers: %w", err)
			return
		}
		atExit(func() { _ = c.Terminate(context.Background()) })
		pgServer, pgErr = c.ConnectionString(ctx, "sslmode=disable")
		pgBackend = "testcontainers"
		return
	}
	pgServer, pgErr = startLocalPostgres()
	pgBackend = "local binaries (scripts/postgres.sh)"
}

// startLocalPostgres runs scripts/postgres.sh up in a temporary directory and
// reads the DSN it prints.
func startLocalPostgres() (string, error) {
	root, err := repoRootDir()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "omnisync-pg-")
	if err != nil {
		return "", err
	}
	script := filepath.Join(root, "scripts", "postgres.sh")
	out, err := exec.Command("bash", script, "up", "--dir", dir).CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("no OMNISYNC_TEST_POSTGRES, no Docker, and %s up failed: %v\n%s", script, err, out)
	}
	atExit(func() { _ = exec.Command("bash", script, "down", "--dir", dir).Run() })
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if dsn, ok := strings.CutPrefix(sc.Text(), "OMNISYNC_TEST_POSTGRES="); ok {
			return dsn, nil
		}
	}
	return "", fmt.Errorf("%s up printed no OMNISYNC_TEST_POSTGRES= line:\n%s", script, out)
}

func repoRootDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
		dir = parent
	}
}
