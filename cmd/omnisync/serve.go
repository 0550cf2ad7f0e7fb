package main

import (
	"context"
	"net/http"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/omnisync/omnisync/pkg/httpserve"
)

// addServeFlags adds the flags every HTTP-serving command shares: TLS and
// the per-client limits (see pkg/httpserve).
func addServeFlags(f *pflag.FlagSet, o *httpserve.Options) {
	f.StringVar(&o.TLSCertFile, "tls-cert", "", "serve HTTPS with this PEM certificate (chain); needs --tls-key")
	f.StringVar(&o.TLSKeyFile, "tls-key", "", "PEM private key of --tls-cert")
	f.Float64Var(&o.RateLimit, "rate-limit", httpserve.DefaultRateLimit, "requests per second one client IP may make (negative: no limit)")
	f.IntVar(&o.RateBurst, "rate-burst", httpserve.DefaultRateBurst, "requests one client IP may make at once above --rate-limit")
	f.IntVar(&o.MaxInFlight, "max-in-flight", httpserve.DefaultMaxInFlight, "requests of one client IP served at once (negative: no limit)")
}

// serveUntilDone serves h on listen and runs background work until ctx
// ends, then shuts the server down gracefully.
func serveUntilDone(ctx context.Context, listen string, h http.Handler, opts httpserve.Options, log *zap.Logger, background ...func(context.Context) error) error {
	srv, err := httpserve.Start(listen, h, opts)
	if err != nil {
		return err
	}
	return runUntilDone(ctx, srv, log, background...)
}

// runUntilDone runs background work beside a started server until ctx ends
// or either fails, then shuts the server down gracefully.
func runUntilDone(ctx context.Context, srv *httpserve.Server, log *zap.Logger, background ...func(context.Context) error) error {
	errs := make(chan error, len(background))
	for _, fn := range background {
		go func() {
			if err := fn(ctx); err != nil {
				errs <- err
			}
		}()
	}
	log.Info("listening", zap.String("addr", srv.URL()))
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-srv.Err():
	case runErr = <-errs:
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdown)
	return runErr
}

// shutdownNow shuts srv down, waiting up to 5 s for requests being served.
func shutdownNow(srv *httpserve.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}

// untilFailed is background work that ends with srv's failure.
func untilFailed(srv *httpserve.Server) func(context.Context) error {
	return func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			return nil
		case err := <-srv.Err():
			return err
		}
	}
}
