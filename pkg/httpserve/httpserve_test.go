package httpserve

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omnisync/omnisync/internal/testenv"
)

func start(t *testing.T, h http.Handler, opts Options) *Server {
	t.Helper()
	s, err := Start("127.0.0.1:0", h, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

var readBody = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if _, err := io.ReadAll(r.Body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintln(w, "ok")
})

// A body trickled a byte at a time is cut off at ReadTimeout: the server
// answers or closes the connection instead of waiting for the whole body.
func TestTrickledBodyIsCutOff(t *testing.T) {
	s := start(t, readBody, Options{ReadTimeout: time.Second})
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	began := time.Now()
	// 100 bytes at one per 200 ms would take 20 s.
	if _, err := io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if _, err := conn.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(8 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	took := time.Since(began)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the server still held the trickling connection after %s", took)
	}
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("the trickled body was read whole (%s)", took)
		}
	}
	if took > 4*time.Second {
		t.Errorf("the trickle was cut off after %s, want about the 1 s read timeout", took)
	}
	t.Logf("trickled request ended after %s (%v)", took.Round(time.Millisecond), err)
}

// An idle keep-alive connection is closed after IdleTimeout.
func TestIdleConnectionIsClosed(t *testing.T) {
	s := start(t, readBody, Options{IdleTimeout: 500 * time.Millisecond})
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	idle := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: read %v, want EOF (closed by the server)", err)
	}
	if took := time.Since(idle); took > 3*time.Second {
		t.Errorf("idle connection closed after %s, want about 500 ms", took)
	}
}

func TestDefaults(t *testing.T) {
	srv, err := New(http.NotFoundHandler(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if srv.ReadHeaderTimeout != DefaultReadHeaderTimeout || srv.ReadTimeout != DefaultReadTimeout ||
		srv.WriteTimeout != DefaultWriteTimeout || srv.IdleTimeout != DefaultIdleTimeout || srv.MaxHeaderBytes != DefaultMaxHeaderBytes {
		t.Errorf("server limits: %+v", srv)
	}
	// The ingest endpoints wait up to 10 s for Kafka before answering.
	if srv.WriteTimeout <= 10*time.Second {
		t.Errorf("WriteTimeout %s does not leave room for the ingest handler's 10 s Kafka wait", srv.WriteTimeout)
	}
	if _, err := New(http.NotFoundHandler(), Options{TLSCertFile: "cert.pem"}); err == nil {
		t.Error("a certificate without a key was accepted")
	}
}

func request(h http.Handler, remote, path string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.RemoteAddr = remote
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func wantRateLimited(t *testing.T, rec *httptest.ResponseRecorder, what string) {
	t.Helper()
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("%s: status %d, want 429", what, rec.Code)
	}
	if rec.Header().Get("Retry-After") == "" {
		t.Errorf("%s: no Retry-After", what)
	}
	var body struct{ Error, Reason string }
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error != "rate_limited" || body.Reason == "" {
		t.Errorf("%s: body %s (%v), want {\"error\":\"rate_limited\",\"reason\":…}", what, rec.Body, err)
	}
}

// A client over its rate gets 429 with Retry-After while another client is
// still served.
func TestRateLimitPerClient(t *testing.T) {
	srv, err := New(http.NotFoundHandler(), Options{RateLimit: 1, RateBurst: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if rec := request(srv.Handler, "10.0.0.1:1000", "/"); rec.Code != http.StatusNotFound {
			t.Fatalf("request %d within the burst: %d", i, rec.Code)
		}
	}
	rec := request(srv.Handler, "10.0.0.1:1001", "/")
	wantRateLimited(t, rec, "the 4th request in a second")
	if got := rec.Header().Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1 (one token a second)", got)
	}
	if rec := request(srv.Handler, "10.0.0.2:1000", "/"); rec.Code != http.StatusNotFound {
		t.Errorf("another client: %d, want it served", rec.Code)
	}
	// IPv6 clients are counted per /64.
	for i := range 3 {
		request(srv.Handler, fmt.Sprintf("[2001:db8::%d]:1000", i+1), "/")
	}
	wantRateLimited(t, request(srv.Handler, "[2001:db8::ffff]:1000", "/"), "a 4th address of one IPv6 /64")
}

// A client with MaxInFlight requests being served gets 429 for the next one
// while another client is still served.
func TestMaxInFlightPerClient(t *testing.T) {
	release := make(chan struct{})
	var entered sync.WaitGroup
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered.Done()
			<-release
		}
	})
	srv, err := New(h, Options{MaxInFlight: 2})
	if err != nil {
		t.Fatal(err)
	}
	var done sync.WaitGroup
	for range 2 {
		entered.Add(1)
		done.Add(1)
		go func() { defer done.Done(); request(srv.Handler, "10.0.0.1:1", "/slow") }()
	}
	entered.Wait()
	wantRateLimited(t, request(srv.Handler, "10.0.0.1:2", "/"), "a 3rd request in flight")
	if rec := request(srv.Handler, "10.0.0.2:1", "/"); rec.Code != http.StatusOK {
		t.Errorf("another client: %d, want it served", rec.Code)
	}
	close(release)
	done.Wait()
	if rec := request(srv.Handler, "10.0.0.1:3", "/"); rec.Code != http.StatusOK {
		t.Errorf("after the slow requests ended: %d, want it served", rec.Code)
	}
}

// The limiter remembers at most MaxClients clients, however many addresses
// send requests, and forgets idle ones.
func TestLimiterMapIsBounded(t *testing.T) {
	l := newLimiter(Options{RateLimit: 10, RateBurst: 10, MaxInFlight: 4, MaxClients: 100})
	clock := time.Unix(1_700_000_000, 0)
	l.now = func() time.Time { return clock }
	h := l.wrap(http.NotFoundHandler())
	for i := range 10_000 {
		if rec := request(h, fmt.Sprintf("10.%d.%d.%d:1", i>>16, (i>>8)&255, i&255), "/"); rec.Code != http.StatusNotFound {
			t.Fatalf("client %d: %d", i, rec.Code)
		}
		if n := len(l.clients); n > 100 {
			t.Fatalf("%d clients remembered after %d addresses, want at most 100", n, i+1)
		}
	}
	clock = clock.Add(2 * clientIdle)
	request(h, "192.0.2.1:1", "/")
	if n := len(l.clients); n != 1 {
		t.Errorf("%d clients remembered after all but one were idle for %s, want 1", n, 2*clientIdle)
	}
}

// When every remembered client has requests in flight, a new client is
// refused rather than the map growing.
func TestLimiterFullOfBusyClients(t *testing.T) {
	l := newLimiter(Options{RateLimit: 10, RateBurst: 10, MaxInFlight: 4, MaxClients: 2})
	for _, k := range []string{"a", "b"} {
		if _, why := l.acquire(k); why != "" {
			t.Fatal(why)
		}
	}
	if _, why := l.acquire("c"); why == "" || len(l.clients) != 2 {
		t.Errorf("a third client with two busy ones: %q, %d remembered", why, len(l.clients))
	}
	l.release("a")
	if _, why := l.acquire("c"); why != "" || len(l.clients) != 2 {
		t.Errorf("a third client after one finished: %q, %d remembered", why, len(l.clients))
	}
}

// With a certificate the server speaks HTTPS only: a client trusting the
// certificate gets 200, plain HTTP does not reach the handler.
func TestTLS(t *testing.T) {
	certFile, keyFile, clientTLS := testenv.SelfSignedCert(t)
	var served sync.Mutex
	calls := 0
	s := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Lock()
		calls++
		served.Unlock()
		fmt.Fprintln(w, "ok")
	}), Options{TLSCertFile: certFile, TLSKeyFile: keyFile})
	if !strings.HasPrefix(s.URL(), "https://") {
		t.Fatalf("URL %s", s.URL())
	}
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS}, Timeout: 5 * time.Second}
	resp, err := cl.Get(s.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTPS: %d", resp.StatusCode)
	}
	// The process's own pinned client works too.
	pinned := &http.Client{Transport: &http.Transport{TLSClientConfig: s.ClientTLS()}, Timeout: 5 * time.Second}
	if resp, err := pinned.Get(s.URL() + "/"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pinned client: %v", err)
	}
	// Untrusting clients and plain HTTP get nothing from the handler.
	if _, err := (&http.Client{Timeout: 5 * time.Second}).Get(s.URL() + "/"); err == nil {
		t.Error("a client that does not trust the certificate connected")
	}
	otherCert, otherKey, _ := testenv.SelfSignedCert(t)
	stranger := start(t, http.NotFoundHandler(), Options{TLSCertFile: otherCert, TLSKeyFile: otherKey})
	if _, err := pinned.Get(stranger.URL() + "/"); err == nil {
		t.Error("the pinned client accepted another certificate")
	}
	plain := "http://" + strings.TrimPrefix(s.URL(), "https://") + "/"
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(plain); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP to the TLS port got 200")
		}
	}
	served.Lock()
	defer served.Unlock()
	if calls != 2 {
		t.Errorf("the handler served %d requests, want 2 (the trusting and the pinned client)", calls)
	}
}
