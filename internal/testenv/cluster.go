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

// KafkaCluster is a three-node Apache Kafka cluster on this host (replication
// factor 3, min.insync.replicas 2) whose nodes a fault test can stop and
// start.
type KafkaCluster struct {
	Kafka
	script, dir string
	env         []string
}

// ThreeNodeKafka starts a real three-node cluster for the test with
// scripts/kafka.sh (client ports 29092-29094) and stops it when the test
// ends. It runs only when OMNISYNC_TEST_KAFKA_FAULTS=1 (make test sets it):
// three JVMs are heavy for a plain go test.
func ThreeNodeKafka(t *testing.T) *KafkaCluster {
	t.Helper()
	if os.Getenv("OMNISYNC_TEST_KAFKA_FAULTS") != "1" {
		Skip(t, "three-node Kafka fault tests run with OMNISYNC_TEST_KAFKA_FAULTS=1 (make test sets it)")
	}
	c := &KafkaCluster{
		script: filepath.Join(RepoRoot(t), "scripts", "kafka.sh"),
		dir:    filepath.Join(os.TempDir(), "omnisync-kafka3-"+strconv.Itoa(os.Getpid())),
		env:    append(os.Environ(), "KAFKA_PORT=29092"),
	}
	if out, err := c.run("install"); err != nil {
		t.Fatalf("kafka.sh install: %v\n%s", err, out)
	}
	out, err := c.run("up", "--nodes", "3", "--dir", c.dir)
	t.Cleanup(func() { _, _ = c.run("down", "--dir", c.dir, "--clean") })
	if err != nil {
		t.Fatalf("kafka.sh up --nodes 3: %v\n%s", err, out)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if addrs, ok := strings.CutPrefix(sc.Text(), "OMNISYNC_TEST_KAFKA="); ok {
			c.Kafka = Kafka{Backend: "three-node Apache Kafka", Brokers: strings.Split(addrs, ",")}
		}
	}
	if len(c.Brokers) != 3 {
		t.Fatalf("kafka.sh up --nodes 3 printed no three addresses:\n%s", out)
	}
	t.Logf("Kafka backend: %s %v", c.Backend, c.Brokers)
	return c
}

// StopNode stops node n (1-3); kill sends SIGKILL instead of SIGTERM.
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
