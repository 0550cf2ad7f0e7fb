package main

import (
	"context"
	"net/http"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

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
// ends or something fails; see runUntilDone.
func serveUntilDone(ctx context.Context, listen string, h http.Handler, opts httpserve.Options, log *zap.Logger, background ...func(context.Context) error) error {
	srv, err := httpserve.Start(listen, h, opts)
	if err != nil {
		return err
	}
	return runUntilDone(ctx, srv, log, background...)
}

// runUntilDone runs background work beside a started server until ctx
// ends or the server or any work fails. Then it cancels the work, waits
// for all of it to return (a materializer leaves its group and closes its
// Kafka client on the way out), and only then shuts the server down
// gracefully: the server's handlers may still read what the work used.
// The caller closes what both used (store, Kafka client, broker) after it
// returns, in reverse order of opening. It returns the first failure.
func runUntilDone(ctx context.Context, srv *httpserve.Server, log *zap.Logger, background ...func(context.Context) error) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, fn := range background {
		g.Go(func() error { return fn(gctx) })
	}
	g.Go(func() error { return untilFailed(srv)(gctx) })
	log.Info("listening", zap.String("addr", srv.URL()))
	err := g.Wait()
	log.Info("background work stopped; shutting the server down", zap.Error(err))
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdown)
	return err
}

// shutdownNow shuts srv down, waiting up to 5 s for requests being served.
func shutdownNow(srv *httpserve.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}

// untilFailed is background work that ends with srv's failure, or with
// nil when ctx ends.
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
