package kafka_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/kafka"
)

// A request frame announcing more than Kafka's 100 MiB limit, or a negative
// length, gets its connection closed before the broker allocates for it;
// the broker goes on serving franz-go and kcat.
func TestEmbeddedBrokerRefusesHugeFrames(t *testing.T) {
	b, err := kafka.StartEmbedded(kafka.EmbeddedConfig{Listen: "127.0.0.1:0", Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	addr := b.Addrs()[0]

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, size := range []uint32{0x7fffffff, 0xffffffff, kafka.MaxRequestBytes + 1} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		// The length, then a few bytes of a request header.
		frame := binary.BigEndian.AppendUint32(nil, size)
		frame = append(frame, 0, 18, 0, 3, 0, 0, 0, 1)
		if _, err := conn.Write(frame); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		began := time.Now()
		n, err := conn.Read(make([]byte, 16))
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("frame of %#x bytes: the connection is still open after 5 s", size)
		}
		if err != io.EOF && !strings.Contains(err.Error(), "reset") {
			t.Errorf("frame of %#x bytes: read %d bytes, %v; want the connection closed", size, n, err)
		}
		t.Logf("frame of %#x bytes: connection closed after %s", size, time.Since(began).Round(time.Millisecond))
		conn.Close()
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Errorf("the process allocated %d MiB while refusing the frames", grew>>20)
	}

	// Real clients still work.
	k := testenv.Kafka{Backend: "embedded", Brokers: []string{addr}}
	cl := newClient(t, k)
	topic := createTopic(t, kadm.NewClient(cl), 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("franz-go")}).FirstErr(); err != nil {
		t.Fatalf("producing after the refused frames: %v", err)
	}
	kcat := testenv.Kcat(t)
	produce := exec.CommandContext(ctx, kcat, "-P", "-b", addr, "-t", topic)
	produce.Stdin = strings.NewReader("kcat\n")
	if out, err := produce.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(ctx, kcat, "-C", "-b", addr, "-t", topic, "-o", "beginning", "-c", "2", "-e", "-q").Output()
	if err != nil {
		t.Fatalf("kcat -C: %v", err)
	}
	if !bytes.Equal(out, []byte("franz-go\nkcat\n")) {
		t.Errorf("kcat consumed %q, want franz-go's and kcat's records", out)
	}
}
