package testenv

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// KafkaCluster is a real Apache Kafka cluster on this host, started for one
// test, whose nodes a fault test can stop and start.
type KafkaCluster struct {
	Kafka
	script, dir string
	env         []string
}

// portClash matches kafka.sh's failures that mean another program took a
// port between kafka.sh's probe and the broker's bind.
var portClash = regexp.MustCompile(`already in use|BindException|Address already in use`)

// KafkaNodes starts a real cluster of n (1 or 3) nodes for the test with
// scripts/kafka.sh (three nodes: replication factor 3, min.insync.replicas
// 2), in a directory of its own, and removes it when the test ends.
// kafka.sh picks free client and controller ports and reserves them for
// the cluster's life, so a stopped cluster keeps them; when a port turns
// out taken between the probe and the bind (another program), KafkaNodes
// tries other ports. It runs only when OMNISYNC_TEST_KAFKA_FAULTS=1 (make
// test sets it): JVMs are heavy for a plain go test.
func KafkaNodes(t *testing.T, n int) *KafkaCluster {
	t.Helper()
	if os.Getenv("OMNISYNC_TEST_KAFKA_FAULTS") != "1" {
		Skip(t, "Kafka fault tests run with OMNISYNC_TEST_KAFKA_FAULTS=1 (make test sets it)")
	}
	c := &KafkaCluster{
		script: RepoRoot(t) + "/scripts/kafka.sh",
		dir:    t.TempDir() + "/kafka",
		// A loaded 2-core host can take well over a minute to start three JVMs.
		env: append(os.Environ(), "KAFKA_PORT=free", "KAFKA_UP_TIMEOUT=240"),
	}
	if out, err := c.run("install"); err != nil {
		t.Fatalf("kafka.sh install: %v\n%s", err, out)
	}
	// Registered before up, so that it runs before t.TempDir's removal.
	t.Cleanup(func() {
		if out, err := c.run("down", "--dir", c.dir, "--clean"); err != nil {
			t.Logf("kafka.sh down: %v\n%s", err, out)
		}
	})
	const tries = 3
	var out []byte
	var err error
	for try := 1; ; try++ {
		out, err = c.run("up", "--nodes", strconv.Itoa(n), "--dir", c.dir)
		if err == nil {
			break
		}
		if try == tries || !portClash.Match(out) {
			t.Fatalf("kafka.sh up --nodes %d: %v\n%s", n, err, out)
		}
		t.Logf("kafka.sh up --nodes %d met a port another program took; trying other ports (%d of %d): %v", n, try, tries, err)
		if out, err := c.run("down", "--dir", c.dir, "--clean"); err != nil {
			t.Fatalf("kafka.sh down after a port clash: %v\n%s", err, out)
		}
	}
	c.Kafka = Kafka{Backend: fmt.Sprintf("%d-node Apache Kafka", n), Brokers: bootstrap(out)}
	if len(c.Brokers) != n {
		t.Fatalf("kafka.sh up --nodes %d printed no %d addresses:\n%s", n, n, out)
	}
	t.Logf("Kafka backend: %s %v (in %s)", c.Backend, c.Brokers, c.dir)
	return c
}

// bootstrap returns the addresses in kafka.sh's OMNISYNC_TEST_KAFKA= line.
func bootstrap(out []byte) []string {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if addrs, ok := strings.CutPrefix(sc.Text(), "OMNISYNC_TEST_KAFKA="); ok {
			return strings.Split(addrs, ",")
		}
	}
	return nil
}

// StopNode stops node n (from 1); kill sends SIGKILL instead of SIGTERM.
func (c *KafkaCluster) StopNode(t *testing.T, n int, kill bool) {
	t.Helper()
	c.must(t, "stop-node", strconv.Itoa(n), kill)
}

// StartNode starts node n again and waits until it serves and the
// metadata it serves lists every running node.
func (c *KafkaCluster) StartNode(t *testing.T, n int) {
	t.Helper()
	c.must(t, "start-node", strconv.Itoa(n), false)
}

// StopAll stops every node at once, keeping their data; kill sends SIGKILL.
func (c *KafkaCluster) StopAll(t *testing.T, kill bool) {
	t.Helper()
	c.must(t, "stop-all", "", kill)
}

// StartAll starts every stopped node together (a lone node never has a
// controller quorum) and waits until all serve.
func (c *KafkaCluster) StartAll(t *testing.T) {
	t.Helper()
	c.must(t, "start-all", "", false)
}

func (c *KafkaCluster) must(t *testing.T, cmd, node string, kill bool) {
	t.Helper()
	args := []string{cmd}
	if node != "" {
		args = append(args, node)
	}
	args = append(args, "--dir", c.dir)
	if kill {
		args = append(args, "--kill")
	}
	start := time.Now()
	if out, err := c.run(args...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Logf("kafka.sh %s took %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
}

// ActiveController returns the node ID of the KRaft quorum's leader (the
// active controller), asked through cl's brokers.
func ActiveController(ctx context.Context, cl *kgo.Client) (int32, error) {
	req := kmsg.NewPtrDescribeQuorumRequest()
	topic := kmsg.NewDescribeQuorumRequestTopic()
	topic.Topic = "__cluster_metadata"
	topic.Partitions = []kmsg.DescribeQuorumRequestTopicPartition{kmsg.NewDescribeQuorumRequestTopicPartition()}
	req.Topics = []kmsg.DescribeQuorumRequestTopic{topic}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return 0, fmt.Errorf("describing the metadata quorum: %w", err)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return 0, fmt.Errorf("describing the metadata quorum: unexpected answer %+v", resp)
	}
	p := resp.Topics[0].Partitions[0]
	if p.ErrorCode != 0 || p.LeaderID < 0 {
		return 0, fmt.Errorf("describing the metadata quorum: error code %d, leader %d", p.ErrorCode, p.LeaderID)
	}
	return p.LeaderID, nil
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
