package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/schemas"
)

// kafkaMetric sums the series of a Kafka client metric (omnisync_kafka_*,
// kprom) that carry topic on the /metrics page at url; ok is false when
// there is none.
func kafkaMetric(t *testing.T, url, name, topic string) (sum float64, ok bool) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, `topic="`+topic+`"`) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("%s: %q: %v", url, line, err)
		}
		sum, ok = sum+v, true
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return sum, ok
}

// The Kafka client metrics of every client in the process reach /metrics:
// after a web batch, the producer's bytes to the events topic and the
// materializer's bytes fetched from it, and the JSON log lines by default
// when stderr is not a terminal.
func TestKafkaClientMetrics(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	dev := startDev(t, dataDir, [3]string{testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)}, nil, "--log-level", "info")
	batch, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "producers/web/testdata/batch.json"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, dev.http+"/ingest/web", bytes.NewReader(batch))
	req.Header.Set("Authorization", "Bearer "+dev.credentials.Channels.Web.Key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /ingest/web: %d", resp.StatusCode)
	}
	eventually(t, "the Kafka client metrics on /metrics", func() string {
		produced, okP := kafkaMetric(t, dev.http+"/metrics", "omnisync_kafka_produce_bytes_total", schemas.CustomerEventsTopic)
		fetched, okF := kafkaMetric(t, dev.http+"/metrics", "omnisync_kafka_fetch_bytes_total", schemas.CustomerEventsTopic)
		if !okP || !okF || produced <= 0 || fetched <= 0 {
			return fmt.Sprintf("produce bytes %v (found %v), fetch bytes %v (found %v)", produced, okP, fetched, okF)
		}
		return ""
	})

	// stderr is a file here: every log line is a JSON object.
	log, err := os.ReadFile(dev.log)
	if err != nil {
		t.Fatal(err)
	}
	lines := 0
	for _, line := range bytes.Split(log, []byte("\n")) {
		if len(line) == 0 || line[0] != '{' {
			continue // the banner on stdout
		}
		var entry struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if err := json.Unmarshal(line, &entry); err != nil || entry.Level == "" || entry.Msg == "" {
			t.Errorf("log line is not a zap JSON entry (%v): %s", err, line)
		}
		lines++
	}
	if lines == 0 {
		t.Errorf("no JSON log line in:\n%s", log)
	}
}
