package devregistry

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// A web page of another site cannot write to the registry: a browser's
// cross-site POST (text/plain, form data, a typeless body) gets 415, a
// request carrying another Origin 403; the API's own content types and
// same-origin requests still work.
func TestCrossSiteRequestsAreRefused(t *testing.T) {
	_, a := serve(t, testCluster(t))
	send := func(method, path, contentType, origin, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, a.url+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	register := schemaBody(userV1)
	for _, c := range []struct {
		name, method, contentType, origin string
		want                              int
	}{
		{"text/plain POST", "POST", "text/plain;charset=UTF-8", "", http.StatusUnsupportedMediaType},
		{"form POST", "POST", "application/x-www-form-urlencoded", "", http.StatusUnsupportedMediaType},
		{"multipart POST", "POST", "multipart/form-data; boundary=x", "", http.StatusUnsupportedMediaType},
		{"POST without a type", "POST", "", "", http.StatusUnsupportedMediaType},
		{"text/plain PUT", "PUT", "text/plain", "", http.StatusUnsupportedMediaType},
		{"API type from another origin", "POST", contentType, "http://evil.example", http.StatusForbidden},
		{"text/plain from another origin", "POST", "text/plain", "https://evil.example", http.StatusForbidden},
		{"API type, same origin", "POST", contentType, a.url, http.StatusOK},
		{"application/json", "POST", "application/json; charset=utf-8", "", http.StatusOK},
		{"vnd.schemaregistry+json", "POST", "application/vnd.schemaregistry+json", "", http.StatusOK},
		{"octet-stream", "POST", "application/octet-stream", "", http.StatusOK},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := send(c.method, "/subjects/cs-value/versions", c.contentType, c.origin, register)
			if status != c.want {
				t.Errorf("status %d (%s), want %d", status, body, c.want)
			}
			if c.want != http.StatusOK && !strings.Contains(body, `"error_code":`+strconv.Itoa(c.want)) {
				t.Errorf("body %s, want a Confluent error body with error_code %d", body, c.want)
			}
		})
	}
	if status, body := send("GET", "/subjects", "", "http://evil.example", ""); status != http.StatusForbidden {
		t.Errorf("GET from another origin: %d %s, want 403", status, body)
	}
	if status, _ := send("GET", "/subjects", "", "", ""); status != http.StatusOK {
		t.Errorf("GET without an Origin: %d", status)
	}
	if status, body := send("DELETE", "/subjects/cs-value", "", "", ""); status != http.StatusOK {
		t.Errorf("DELETE without a body or type: %d %s", status, body)
	}
}
