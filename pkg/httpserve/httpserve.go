// Package httpserve is the one way omnisync's commands serve HTTP: a
// net/http server with every timeout set, a per-client rate and
// concurrency limit, and optional TLS.
package httpserve

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Defaults. ReadTimeout covers the whole request, body included, so a body
// trickled byte by byte is cut off; WriteTimeout must exceed the ingest
// handler's 10 s wait for Kafka's acknowledgement.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultRateLimit         = 500  // requests per second per client
	DefaultRateBurst         = 1000 // requests a client may send at once
	DefaultMaxInFlight       = 256  // requests per client being served at once
	DefaultMaxClients        = 10000
)

// Options configure a server. Zero values take the defaults above.
type Options struct {
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int

	// RateLimit is the requests per second one client (see Limits) may
	// make, with RateBurst at once; MaxInFlight caps its requests being
	// served at once. A negative RateLimit or MaxInFlight turns that limit
	// off.
	RateLimit   float64
	RateBurst   int
	MaxInFlight int
	// MaxClients bounds how many clients the limiter remembers.
	MaxClients int

	// TLSCertFile and TLSKeyFile, both or neither, make the server speak
	// HTTPS only: PEM certificate (chain) and private key.
	TLSCertFile, TLSKeyFile string
}

func (o Options) withDefaults() Options {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&o.ReadTimeout, DefaultReadTimeout)
	def(&o.WriteTimeout, DefaultWriteTimeout)
	def(&o.IdleTimeout, DefaultIdleTimeout)
	if o.MaxHeaderBytes == 0 {
		o.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if o.RateLimit == 0 {
		o.RateLimit = DefaultRateLimit
	}
	if o.RateBurst == 0 {
		o.RateBurst = max(DefaultRateBurst, int(o.RateLimit))
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.MaxClients == 0 {
		o.MaxClients = DefaultMaxClients
	}
	return o
}

// Server is a running HTTP(S) server.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	leaf []byte // the TLS certificate served, DER; nil without TLS
	errs chan error
}

// Start listens on addr and serves h in the background with the limits of
// opts.
func Start(addr string, h http.Handler, opts Options) (*Server, error) {
	srv, err := New(h, opts)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	s := &Server{srv: srv, ln: ln, errs: make(chan error, 1)}
	if srv.TLSConfig != nil {
		s.leaf = srv.TLSConfig.Certificates[0].Certificate[0]
	}
	go func() {
		var err error
		if s.leaf != nil {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.errs <- fmt.Errorf("serving HTTP on %s: %w", ln.Addr(), err)
		}
	}()
	return s, nil
}

// New returns an http.Server serving h with the timeouts, limits and TLS
// certificate of opts; Start is the usual way to run one.
func New(h http.Handler, opts Options) (*http.Server, error) {
	opts = opts.withDefaults()
	srv := &http.Server{
		Handler:           newLimiter(opts).wrap(h),
		ReadHeaderTimeout: opts.ReadHeaderTimeout,
		ReadTimeout:       opts.ReadTimeout,
		WriteTimeout:      opts.WriteTimeout,
		IdleTimeout:       opts.IdleTimeout,
		MaxHeaderBytes:    opts.MaxHeaderBytes,
	}
	if (opts.TLSCertFile == "") != (opts.TLSKeyFile == "") {
		return nil, errors.New("TLS needs both a certificate (--tls-cert) and a key (--tls-key)")
	}
	if opts.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(opts.TLSCertFile, opts.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading the TLS certificate %s and key %s: %w", opts.TLSCertFile, opts.TLSKeyFile, err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return srv, nil
}

// URL is the server's base URL, http:// or https://.
func (s *Server) URL() string {
	if s.leaf != nil {
		return "https://" + s.ln.Addr().String()
	}
	return "http://" + s.ln.Addr().String()
}

// Err delivers the error that stopped the server before Shutdown.
func (s *Server) Err() <-chan error { return s.errs }

// Shutdown stops accepting connections and waits, until ctx ends, for the
// requests being served.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// ClientTLS returns a client TLS configuration that trusts exactly the
// certificate the server presents (pinned, whatever host name it is reached
// by), for the process's own clients of its servers; nil without TLS.
func (s *Server) ClientTLS() *tls.Config {
	if s.leaf == nil {
		return nil
	}
	leaf := s.leaf
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the pin below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || string(raw[0]) != string(leaf) {
				return errors.New("the server's certificate is not the one this process serves")
			}
			return nil
		},
	}
}
