package forwarder

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/omnisync/omnisync/pkg/events"
)

// Every answer of the target is classified: 2xx delivered; 408, 429, 5xx
// and network errors retried (with the target's Retry-After); any other
// status refused for good.
func TestPostClassifiesAnswers(t *testing.T) {
	for _, tc := range []struct {
		code       int
		retryAfter string
		want       string // ok, retry or permanent
		after      time.Duration
	}{
		{200, "", "ok", 0},
		{201, "", "ok", 0},
		{204, "", "ok", 0},
		{400, "", "permanent", 0},
		{401, "", "permanent", 0},
		{404, "", "permanent", 0},
		{409, "", "permanent", 0},
		{422, "", "permanent", 0},
		{304, "", "permanent", 0},
		{408, "", "retry", 0},
		{429, "7", "retry", 7 * time.Second},
		{500, "", "retry", 0},
		{502, "", "retry", 0},
		{503, "3600", "retry", 5 * time.Minute},
		{503, "Wed, 21 Oct 2015 07:28:00 GMT", "retry", 0},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if tc.retryAfter != "" {
				w.Header().Set("Retry-After", tc.retryAfter)
			}
			w.WriteHeader(tc.code)
		}))
		f := &Forwarder{cfg: Config{Target: srv.URL, HTTPClient: srv.Client(), Logger: zap.NewNop()}}
		err := f.post(context.Background(), &events.CustomerState{CustomerID: "c-1", Version: 1}, []byte("{}"))
		srv.Close()
		var p *permanent
		var r *retryable
		switch {
		case tc.want == "ok" && err != nil,
			tc.want == "permanent" && (!errors.As(err, &p) || p.status != tc.code),
			tc.want == "retry" && !errors.As(err, &r):
			t.Errorf("%d: got %v (%T), want %s", tc.code, err, err, tc.want)
		case tc.want == "retry" && r.after != tc.after:
			t.Errorf("%d Retry-After %q: waits %s, want %s", tc.code, tc.retryAfter, r.after, tc.after)
		}
	}

	// A target that does not answer at all is retried.
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	f := &Forwarder{cfg: Config{Target: srv.URL, HTTPClient: srv.Client(), Logger: zap.NewNop()}}
	var r *retryable
	if err := f.post(context.Background(), &events.CustomerState{CustomerID: "c-1", Version: 1}, []byte("{}")); !errors.As(err, &r) || r.reason != "network" {
		t.Errorf("unreachable target: %v, want a network retry", err)
	}
}

// New refuses what cannot work.
func TestNewValidates(t *testing.T) {
	for _, target := range []string{"", "ftp://x/y", "localhost:8080", "http://"} {
		if _, err := New(Config{Target: target, Group: "g"}); err == nil {
			t.Errorf("target %q accepted", target)
		}
	}
}
