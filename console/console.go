// Package console is the agents' web console: static HTML, CSS and
// JavaScript (no build step) embedded in the binary and served at "/".
// It talks to the API at /api/v1 on the same origin with the admin token,
// which it takes from the URL fragment (#token=…) or a sign-in form and
// keeps in the browser's localStorage. Routes are fragments (#/customers,
// #/review, #/sync), so the server only serves the files.
package console

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var files embed.FS

// Static is the console's files (index.html, app.js, style.css).
var Static, _ = fs.Sub(files, "static")

// contentSecurityPolicy lets the page load only its own files and talk
// only to its own origin: even if customer data ever reached the DOM as
// markup, no inline script or foreign resource would run.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// Handler serves the console: "/" is index.html, the assets are served
// by name, and any other path is 404. Only GET and HEAD are allowed. Safe
// for concurrent use.
func Handler() http.Handler {
	files := http.FileServerFS(Static)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		name := strings.TrimPrefix(r.URL.Path, "/")
		if name != "" && (name == "index.html" || !exists(name)) {
			// index.html lives at "/" only (FileServer would redirect);
			// everything else not embedded is not ours.
			http.NotFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	})
}

func exists(name string) bool {
	st, err := fs.Stat(Static, name)
	return err == nil && !st.IsDir()
}
