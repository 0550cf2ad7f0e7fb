package kafka

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"

	"go.uber.org/zap"
)

// Frames pass through byte for byte, however the reads are cut; a bad
// length split across writes still closes the connection.
func TestFrameGuardPassesFramesThrough(t *testing.T) {
	var stream []byte
	for _, body := range []string{"first request", "", "second, longer request body"} {
		stream = binary.BigEndian.AppendUint32(stream, uint32(len(body)))
		stream = append(stream, body...)
	}
	client, server := net.Pipe()
	defer client.Close()
	g := &frameGuard{Conn: server, log: zap.NewNop()}
	go func() {
		for i := 0; i < len(stream); i += 5 {
			_, _ = client.Write(stream[i:min(i+5, len(stream))])
		}
		_, _ = client.Write([]byte{0x7f, 0xff})
		_, _ = client.Write([]byte{0xff, 0xff, 'x'})
	}()
	got := make([]byte, len(stream))
	buf := make([]byte, 3)
	for n := 0; n < len(stream); {
		m, err := g.Read(buf)
		if err != nil {
			t.Fatalf("after %d bytes: %v", n, err)
		}
		n += copy(got[n:], buf[:m])
	}
	if !bytes.Equal(got, stream) {
		t.Fatalf("read %q, want %q", got, stream)
	}
	for read := 0; ; {
		m, err := g.Read(buf)
		if read += m; read >= 4 {
			t.Fatalf("the broker read all %d bytes of a 2 GiB header", read)
		}
		if err != nil {
			break
		}
	}
	if _, err := client.Write([]byte{0}); err != io.ErrClosedPipe {
		t.Errorf("writing after the bad header: %v, want the connection closed", err)
	}
}
