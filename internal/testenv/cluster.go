package testenv

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// KafkaCluster is a real Apache Kafka cluster on this host, started for one
// test, whose nodes a fault test can stop and start.
type KafkaCluster struct {
	Kafka
	script, dir string
	env         []string
}

// ThreeNodeKafka starts a real three-node cluster (replication factor 3,
// min.insync.replicas 2) on client ports 29092-29094; see KafkaNodes.
func ThreeNodeKafka(t *testing.T) *KafkaCluster { return KafkaNodes(t, 3, 29092) }

// KafkaNodes starts a real cluster of n nodes for the test with
// scripts/kafka.sh, clients on port and up, and stops it when the test
// ends. It runs only when OMNISYNC_TEST_KAFKA_FAULTS=1 (make test sets it):
// JVMs are heavy for a plain go test.
func KafkaNodes(t *testing.T, n, port int) *KafkaCluster {
	t.Helper()
	if os.Getenv("OMNISYNC_TEST_KAFKA_FAULTS") != "1" {
		Skip(t, "Kafka fault tests run with OMNISYNC_TEST_KAFKA_FAULTS=1 (make test sets it)")
	}
	c := &KafkaCluster{
		script: filepath.Join(RepoRoot(t), "scripts", "kafka.sh"),
		dir:    filepath.Join(os.TempDir(), fmt.Sprintf("omnisync-kafka-%d-%d", port, os.Getpid())),
		env:    append(os.Environ(), "KAFKA_PORT="+strconv.Itoa(port)),
	}
	if out, err := c.run("install"); err != nil {
		t.Fatalf("kafka.sh install: %v\n%s", err, out)
	}
	out, err := c.run("up", "--nodes", strconv.Itoa(n), "--dir", c.dir)
	t.Cleanup(func() { _, _ = c.run("down", "--dir", c.dir, "--clean") })
	if err != nil {
		t.Fatalf("kafka.sh up --nodes %d: %v\n%s", n, err, out)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if addrs, ok := strings.CutPrefix(sc.Text(), "OMNISYNC_TEST_KAFKA="); ok {
			c.Kafka = Kafka{Backend: fmt.Sprintf("%d-node Apache Kafka", n), Brokers: strings.Split(addrs, ",")}
		}
	}
	if len(c.Brokers) != n {
		t.Fatalf("kafka.sh up --nodes %d printed no %d addresses:\n%s", n, n, out)
	}
	t.Logf("Kafka backend: %s %v", c.Backend, c.Brokers)
	return c
}

// StopNode stops node n (from 1); kill sends SIGKILL instead of SIGTERM.
func (c *KafkaCluster) StopNode(t *testing.T, n int, kill bool) {
	t.Helper()
	args := []string{"stop-node", strconv.Itoa(n), "--dir", c.dir}
	if kill {
		args = append(args, "--kill")
	}
	if out, err := c.run(args...); err != nil {
		t.Fatalf("stopping node %d: %v\n%s", n, err, out)
	}
}

// StartNode starts node n again and waits until it serves.
func (c *KafkaCluster) StartNode(t *testing.T, n int) {
	t.Helper()
	if out, err := c.run("start-node", strconv.Itoa(n), "--dir", c.dir); err != nil {
		t.Fatalf("starting node %d: %v\n%s", n, err, out)
	}
}

// run runs kafka.sh and returns stdout, with stderr appended on failure.
func (c *KafkaCluster) run(args ...string) ([]byte, error) {
	cmd := exec.Command("bash", append([]string{c.script}, args...)...)
	cmd.Env = c.env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return append(out, stderr.Bytes()...), fmt.Errorf("kafka.sh %s: %w", strings.Join(args, " "), err)
	}
	return out, nil
}
