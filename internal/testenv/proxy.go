package testenv

import (
	"io"
	"net"
	"sync"
	"testing"
)

// OutageProxy forwards TCP connections to a server on a port of its own;
// while down it cuts every connection and closes new ones at once, as a
// restarting or unreachable server (PostgreSQL, say) does.
type OutageProxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
}

// StartOutageProxy starts a proxy to target on 127.0.0.1, up, until the
// test ends.
func StartOutageProxy(t testing.TB, target string) *OutageProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &OutageProxy{l: l, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { l.Close(); p.SetDown(true) })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *OutageProxy) serve(c net.Conn) {
	if !p.track(c) {
		c.Close()
		return
	}
	s, err := net.Dial("tcp", p.target)
	if err != nil || !p.track(s) {
		c.Close()
		if s != nil {
			s.Close()
		}
		return
	}
	go func() { _, _ = io.Copy(s, c); s.Close(); c.Close() }()
	_, _ = io.Copy(c, s)
	s.Close()
	c.Close()
}

// track adds a connection unless the proxy is down.
func (p *OutageProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return false
	}
	p.conns[c] = true
	return true
}

// SetDown takes the server away (cutting every connection) or brings it
// back.
func (p *OutageProxy) SetDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

// Addr is the proxy's host:port.
func (p *OutageProxy) Addr() string { return p.l.Addr().String() }
