// Package health serves the health endpoints every omnisync command has:
// /healthz (the process is up) and /readyz (the command's dependencies
// answer).
package health

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Check is one readiness check: nil when the dependency serves.
type Check struct {
	Name string
	Func func(context.Context) error
}

// Mount serves /healthz (the process is up) and /readyz (every check
// passes: 200 with "ready", else 503 naming what is not ready).
func Mount(mux *http.ServeMux, checks ...Check) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		failed := map[string]string{}
		for _, c := range checks {
			if err := c.Func(ctx); err != nil {
				failed[c.Name] = err.Error()
			}
		}
		if len(failed) > 0 {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]any{"ready": false, "failed": failed})
			return
		}
		fmt.Fprintln(w, "ready")
	})
}
