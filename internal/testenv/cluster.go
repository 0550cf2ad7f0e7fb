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
	"sync"
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
	c, err := startCluster(RepoRoot(t), t.TempDir()+"/kafka", n, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	// t.TempDir's removal was registered first, so this runs before it.
	t.Cleanup(c.down(t.Logf))
	t.Logf("Kafka backend: %s %v (in %s)", c.Backend, c.Brokers, c.dir)
	return c
}

var (
	ownKafkaOnce sync.Once
	ownKafka     *KafkaCluster
	ownKafkaErr  error
)

// OwnKafka returns a real single-node Kafka that only the calling test
// package uses: started at the first call, stopped when the package's tests
// end (TestMain must call Main). It is for tests whose checks cover every
// record on omnisync's topics — a replay verifies everything it folds
// before it swaps — and so must not see the records other packages' tests
// write to a shared broker at the same time. Like KafkaNodes it runs only
// with OMNISYNC_TEST_KAFKA_FAULTS=1 (make test sets it).
func OwnKafka(t testing.TB) Kafka {
	t.Helper()
	if os.Getenv("OMNISYNC_TEST_KAFKA_FAULTS") != "1" {
		Skip(t, "tests on a Kafka of their own run with OMNISYNC_TEST_KAFKA_FAULTS=1 (make test sets it)")
	}
	ownKafkaOnce.Do(func() {
		var root, dir string
		if root, ownKafkaErr = repoRootDir(); ownKafkaErr != nil {
			return
		}
		if dir, ownKafkaErr = os.MkdirTemp("", "omnisync-own-kafka-"); ownKafkaErr != nil {
			return
		}
		if ownKafka, ownKafkaErr = startCluster(root, dir+"/kafka", 1, t.Logf); ownKafkaErr != nil {
			os.RemoveAll(dir)
			return
		}
		stop := ownKafka.down(func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) })
		atExit(func() { stop(); os.RemoveAll(dir) })
	})
	if ownKafkaErr != nil {
		t.Fatalf("starting a Kafka of the package's own: %v", ownKafkaErr)
	}
	t.Logf("Kafka backend: %s of this package's own %v", ownKafka.Backend, ownKafka.Brokers)
	return ownKafka.Kafka
}

// startCluster starts n nodes with scripts/kafka.sh (under root) in dir;
// when a port turns out taken between kafka.sh's probe and the broker's
// bind (another program), it tries other ports. On failure nothing is left
// running.
func startCluster(root, dir string, n int, logf func(string, ...any)) (*KafkaCluster, error) {
	c := &KafkaCluster{
		script: root + "/scripts/kafka.sh",
		dir:    dir,
		// A loaded 2-core host can take well over a minute to start three JVMs.
		env: append(os.Environ(), "KAFKA_PORT=free", "KAFKA_UP_TIMEOUT=240"),
	}
	if out, err := c.run("install"); err != nil {
		return nil, fmt.Errorf("kafka.sh install: %v\n%s", err, out)
	}
	const tries = 3
	for try := 1; ; try++ {
		out, err := c.run("up", "--nodes", strconv.Itoa(n), "--dir", c.dir)
		if err == nil {
			c.Kafka = Kafka{Backend: fmt.Sprintf("%d-node Apache Kafka", n), Brokers: bootstrap(out)}
			if len(c.Brokers) != n {
				c.down(logf)()
				return nil, fmt.Errorf("kafka.sh up --nodes %d printed no %d addresses:\n%s", n, n, out)
			}
			return c, nil
		}
		c.down(logf)()
		if try == tries || !portClash.Match(out) {
			return nil, fmt.Errorf("kafka.sh up --nodes %d: %v\n%s", n, err, out)
		}
		logf("kafka.sh up --nodes %d met a port another program took; trying other ports (%d of %d): %v", n, try, tries, err)
	}
}

// down returns a function that stops the cluster and removes its data.
func (c *KafkaCluster) down(logf func(string, ...any)) func() {
	return func() {
		if out, err := c.run("down", "--dir", c.dir, "--clean"); err != nil {
			logf("kafka.sh down: %v\n%s", err, out)
		}
	}
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
