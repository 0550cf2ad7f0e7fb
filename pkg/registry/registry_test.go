package registry_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/omnisync/omnisync/pkg/registry"
	"github.com/omnisync/omnisync/schemas"
)

// countingRegistry serves franz-go's fake registry and counts the requests
// that reach it, to show what the client caches.
func countingRegistry(t *testing.T) (*registry.Client, *atomic.Int64) {
	t.Helper()
	fake := srfake.New()
	t.Cleanup(fake.Close)
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		fake.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c, err := registry.New([]string{srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return c, &n
}

func TestRegisterAndLookUpAreCached(t *testing.T) {
	c, requests := countingRegistry(t)
	ctx := context.Background()
	subject := schemas.CustomerEvent.Subject()
	text := schemas.Current(schemas.CustomerEvent)
	id, err := c.Register(ctx, subject, text)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Register(ctx, subject, text)
	if err != nil || again != id {
		t.Fatalf("second Register = %d, %v; want %d", again, err, id)
	}
	got, err := c.SchemaByID(ctx, id)
	if err != nil || got != text {
		t.Fatalf("SchemaByID(%d) = %.40q…, %v", id, got, err)
	}
	if n := requests.Load(); n != 1 {
		t.Fatalf("%d requests reached the registry, want 1 (the rest cached)", n)
	}
}

func TestUnknownIDIsNotFound(t *testing.T) {
	c, _ := countingRegistry(t)
	_, err := c.SchemaByID(context.Background(), 4242)
	if !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
}

func TestUnreachableRegistryIsNotNotFound(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close() // nothing listens now
	c, err := registry.New([]string{srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.SchemaByID(context.Background(), 1)
	if err == nil || errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("got %v, want a transient error that is not ErrNotFound", err)
	}
}
