package kafka

import (
	"encoding/binary"
	"fmt"
	"net"

	"go.uber.org/zap"
)

// MaxRequestBytes is the largest request the embedded broker reads: Kafka's
// own default limit (socket.request.max.bytes).
const MaxRequestBytes = 100 << 20

// guardedListener hands the embedded broker connections whose request
// frames are checked: kfake allocates whatever a frame's 4-byte length
// announces, up to 4 GiB per connection.
type guardedListener struct {
	net.Listener
	log *zap.Logger
}

func (l guardedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &frameGuard{Conn: c, log: l.log}, nil
}

// frameGuard follows the Kafka request frames read from a connection (a
// 4-byte big-endian length, then that many bytes) and closes the connection
// on a negative length or one over MaxRequestBytes before the broker has
// read the last byte of it. Each read stops at the end of the header or the
// frame it is in, so the bytes are passed on as they come, never buffered.
// Reads must not run concurrently (the broker reads a connection from one
// goroutine at a time); writes pass through untouched.
type frameGuard struct {
	net.Conn
	log    *zap.Logger
	header [4]byte
	have   int   // bytes of the current frame's header read
	left   int64 // bytes of the current frame's body still to read
}

func (g *frameGuard) Read(p []byte) (int, error) {
	if g.left > 0 {
		if int64(len(p)) > g.left {
			p = p[:g.left]
		}
		n, err := g.Conn.Read(p)
		g.left -= int64(n)
		return n, err
	}
	if len(p) > len(g.header)-g.have {
		p = p[:len(g.header)-g.have]
	}
	n, err := g.Conn.Read(p)
	copy(g.header[g.have:], p[:n])
	if g.have += n; g.have < len(g.header) {
		return n, err
	}
	g.have = 0
	size := int32(binary.BigEndian.Uint32(g.header[:]))
	if size < 0 || size > MaxRequestBytes {
		g.log.Warn("refusing a Kafka request larger than the broker reads; closing the connection",
			zap.Int32("announced_bytes", size), zap.Int("max_bytes", MaxRequestBytes), zap.Stringer("client", g.RemoteAddr()))
		_ = g.Conn.Close()
		return 0, fmt.Errorf("kafka request of %d bytes from %s: want 0 to %d", size, g.RemoteAddr(), MaxRequestBytes)
	}
	g.left = int64(size)
	return n, err
}
