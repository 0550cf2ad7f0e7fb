package main

import (
	"encoding/binary"
	"encoding/json"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omnisync/omnisync/internal/testenv"
)

// TestDevHardening runs `omnisync dev --demo` over TLS from a data
// directory an earlier version left readable by everyone, and checks what
// an attacker on the machine or a web page could reach: the data
// directory is private, the HTTP endpoints and the registry speak HTTPS
// only, the registry refuses cross-site writes, the broker refuses a huge
// request frame, and the banner shows no channel key.
func TestDevHardening(t *testing.T) {
	root := t.TempDir()
	dataDir := filepath.Join(root, "data")
	old := filepath.Join(dataDir, "left-by-an-earlier-version")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(old, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for path, mode := range map[string]os.FileMode{dataDir: 0o755, old: 0o644} {
		if err := os.Chmod(path, mode); err != nil { // whatever the test's umask
			t.Fatal(err)
		}
	}
	certFile, keyFile, clientTLS := testenv.SelfSignedCert(t)
	addrs := [3]string{testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)}
	dev := startDev(t, dataDir, addrs, clientTLS, "--demo", "--tls-cert", certFile, "--tls-key", keyFile)

	// The demo posts to the HTTPS ingest endpoints (with the process's
	// pinned client) and the codec registers schemas over HTTPS.
	eventually(t, "the demo scenario played over HTTPS", func() string {
		if _, err := os.Stat(filepath.Join(dataDir, "demo-seeded")); err != nil {
			return "no demo-seeded marker yet"
		}
		return ""
	})
	if code := dev.get(t, "/api/v1/customers", nil); code != http.StatusOK {
		t.Errorf("API over HTTPS: %d", code)
	}
	plain := &http.Client{Timeout: 5 * time.Second}
	for _, addr := range []string{addrs[0], addrs[2]} { // the HTTP server and the registry
		if resp, err := plain.Get("http://" + addr + "/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode < 400 {
				t.Errorf("plain HTTP to the TLS port %s: %d", addr, resp.StatusCode)
			}
		}
	}

	// The registry refuses a cross-site text/plain POST and another Origin.
	for _, c := range []struct {
		contentType, origin string
		want                int
	}{
		{"text/plain", "", http.StatusUnsupportedMediaType},
		{"application/vnd.schemaregistry.v1+json", "https://evil.example", http.StatusForbidden},
	} {
		req, _ := http.NewRequest(http.MethodPost, dev.registry+"/subjects/csrf-value/versions",
			strings.NewReader(`{"schema":"\"string\""}`))
		req.Header.Set("Content-Type", c.contentType)
		if c.origin != "" {
			req.Header.Set("Origin", c.origin)
		}
		resp, err := dev.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("registry POST %s from %q: %d, want %d", c.contentType, c.origin, resp.StatusCode, c.want)
		}
	}

	// The broker closes a connection announcing a 2 GiB request.
	conn, err := net.Dial("tcp", dev.kafka)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write(binary.BigEndian.AppendUint32(nil, 0x7fffffff))
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err != io.EOF && !strings.Contains(err.Error(), "reset") {
		t.Errorf("broker connection after a 2 GiB frame length: %v, want it closed", err)
	}
	conn.Close()
	if code := dev.get(t, "/readyz", nil); code != http.StatusOK {
		t.Errorf("/readyz after the refused frame: %d", code)
	}

	// The banner links the console and names the credentials file, not
	// the keys in it.
	out, err := os.ReadFile(dev.log)
	if err != nil {
		t.Fatal(err)
	}
	banner := string(out)
	if !strings.Contains(banner, dev.http+"/#token="+dev.adminToken) || !strings.Contains(banner, filepath.Join(dataDir, "credentials.json")) {
		t.Errorf("the banner lacks the console link or the credentials file:\n%s", banner)
	}
	c := dev.credentials.Channels
	for name, secret := range map[string]string{"web key": c.Web.Key, "app key": c.App.Key, "phone key": c.Phone.Key,
		"WeChat token": c.WeChat.Token, "mini-program token": c.MiniProgram.Token} {
		if secret != "" && strings.Contains(banner, secret) {
			t.Errorf("the banner shows the %s", name)
		}
	}

	// Nothing in the data directory is readable by group or others: the
	// store and its -wal, the broker's segments, the credentials, the demo
	// marker, and what was there before.
	checkPrivate := func() {
		t.Helper()
		var open []string
		n := 0
		err := filepath.WalkDir(dataDir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			n++
			if info.Mode().Perm()&0o077 != 0 {
				open = append(open, info.Mode().Perm().String()+" "+path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(open) > 0 {
			t.Errorf("%d of %d entries in the data directory are open to group or others:\n%s", len(open), n, strings.Join(open, "\n"))
		} else {
			t.Logf("%d entries in the data directory, all private", n)
		}
	}
	for _, name := range []string{"omnisync.db", "omnisync.db-wal", "credentials.json", "demo-seeded", "broker"} {
		if _, err := os.Stat(filepath.Join(dataDir, name)); err != nil {
			t.Errorf("expected %s in the data directory: %v", name, err)
		}
	}
	checkPrivate()
	dev.stop(t)
	checkPrivate()
}

// Every HTTP-serving command takes the TLS and limit flags.
func TestServingCommandsTakeServeFlags(t *testing.T) {
	root := newRootCommand()
	for _, name := range []string{"dev", "registry", "produce", "api", "consume", "forward"} {
		cmd, _, err := root.Find([]string{name})
		if err != nil {
			t.Fatal(err)
		}
		for _, flag := range []string{"tls-cert", "tls-key", "rate-limit", "rate-burst", "max-in-flight"} {
			if cmd.Flags().Lookup(flag) == nil {
				t.Errorf("omnisync %s has no --%s", name, flag)
			}
		}
	}
}

// The limit flags reach the server: a client over --rate-limit gets 429
// with Retry-After and a JSON reason.
func TestRateLimitFlag(t *testing.T) {
	k := testenv.Embedded(t, "")
	addr := testenv.FreeAddr(t)
	startService(t, t.TempDir(), "registry", addr, false, nil,
		"registry", "--brokers", strings.Join(k.Brokers, ","), "--listen", addr, "--rate-limit", "0.5", "--rate-burst", "3")
	// A burst of 3 at half a request a second: the 4th or 5th request is
	// refused, the client told when to come back and why.
	limited := false
	for i := range 5 {
		resp, err := http.Get("http://" + addr + "/subjects")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			continue
		}
		if i < 3 || resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("request %d: %d %s", i+1, resp.StatusCode, body)
		}
		var refusal struct{ Error, Reason string }
		if err := json.Unmarshal(body, &refusal); err != nil || refusal.Error != "rate_limited" || refusal.Reason == "" {
			t.Errorf("429 body %s (%v), want {\"error\":\"rate_limited\",\"reason\":…}", body, err)
		}
		if resp.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
		limited = true
		break
	}
	if !limited {
		t.Error("5 requests at once at --rate-limit 0.5 --rate-burst 3 were all served")
	}
}
