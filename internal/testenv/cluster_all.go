package testenv

import "testing"

// StopAll stops every node at once, keeping their data (kafka.sh
// stop-all); kill sends SIGKILL instead of SIGTERM.
func (c *KafkaCluster) StopAll(t *testing.T, kill bool) {
	t.Helper()
	args := []string{"stop-all", "--dir", c.dir}
	if kill {
		args = append(args, "--kill")
	}
	if out, err := c.run(args...); err != nil {
		t.Fatalf("stopping every node: %v\n%s", err, out)
	}
}

// StartAll starts every stopped node together and waits until all serve
// (kafka.sh start-all).
func (c *KafkaCluster) StartAll(t *testing.T) {
	t.Helper()
	if out, err := c.run("start-all", "--dir", c.dir); err != nil {
		t.Fatalf("starting every node: %v\n%s", err, out)
	}
}
