package health_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/omnisync/omnisync/pkg/health"
)

func TestMount(t *testing.T) {
	var storeErr error
	mux := http.NewServeMux()
	health.Mount(mux,
		health.Check{Name: "store", Func: func(context.Context) error { return storeErr }},
		health.Check{Name: "kafka", Func: func(context.Context) error { return nil }},
	)
	get := func(path string) (int, http.Header, string) {
		t.Helper()
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		body, _ := io.ReadAll(rec.Result().Body)
		return rec.Code, rec.Result().Header, string(body)
	}
	if code, _, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q, want 200 \"ok\\n\"", code, body)
	}
	if code, _, body := get("/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Errorf("/readyz with every check passing = %d %q, want 200 \"ready\\n\"", code, body)
	}
	storeErr = errors.New("store unavailable: refused")
	code, h, body := get("/readyz")
	if want := `{"failed":{"store":"store unavailable: refused"},"ready":false}` + "\n"; code != http.StatusServiceUnavailable || body != want {
		t.Errorf("/readyz with the store failing = %d %q, want 503 %q", code, body, want)
	}
	if ct, cc := h.Get("Content-Type"), h.Get("Cache-Control"); ct != "application/json; charset=utf-8" || cc != "no-store" {
		t.Errorf("/readyz 503 headers: Content-Type %q, Cache-Control %q", ct, cc)
	}
}
