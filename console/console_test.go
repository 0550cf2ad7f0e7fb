package console_test

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/omnisync/omnisync/console"
)

func TestHandlerServesTheConsole(t *testing.T) {
	srv := httptest.NewServer(console.Handler())
	defer srv.Close()
	for _, tc := range []struct {
		method, path string
		code         int
		contentType  string
		contains     string
	}{
		{"GET", "/", 200, "text/html", `<script src="app.js"`},
		{"HEAD", "/", 200, "text/html", ""},
		{"GET", "/app.js", 200, "text/javascript", "takeTokenFromFragment"},
		{"GET", "/style.css", 200, "text/css", "--font"},
		{"GET", "/index.html", 404, "", ""},
		{"GET", "/customers/123", 404, "", ""},
		{"GET", "/../console.go", 404, "", ""},
		{"POST", "/", 405, "", ""},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, resp.StatusCode, tc.code)
			continue
		}
		if tc.code != 200 {
			continue
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.contentType) {
			t.Errorf("%s %s: Content-Type %q, want %s", tc.method, tc.path, ct, tc.contentType)
		}
		if !strings.Contains(string(body), tc.contains) {
			t.Errorf("%s %s: body lacks %q", tc.method, tc.path, tc.contains)
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s %s: Content-Security-Policy %q, want only the console's own scripts", tc.method, tc.path, csp)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s %s: no X-Content-Type-Options: nosniff", tc.method, tc.path)
		}
	}
}

// The console must never turn customer data into markup: no innerHTML and
// friends anywhere in the script, no inline scripts or styles (the CSP
// would block them) and no resources from other origins.
func TestConsoleHasNoMarkupSinksOrForeignResources(t *testing.T) {
	sinks := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|\.cssText|setAttribute\(\s*'on`)
	foreign := regexp.MustCompile(`(src|href)="(https?:)?//`)
	err := fs.WalkDir(console.Static, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(console.Static, path)
		if err != nil {
			return err
		}
		if m := sinks.Find(b); m != nil {
			t.Errorf("%s uses %q: build DOM nodes with textContent instead", path, m)
		}
		if m := foreign.Find(b); m != nil {
			t.Errorf("%s loads %q: the console must work offline and under its CSP", path, m)
		}
		if strings.HasSuffix(path, ".html") && (strings.Contains(string(b), "<script>") || strings.Contains(string(b), "style=")) {
			t.Errorf("%s has an inline script or style, which the CSP blocks", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
