package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/omnisync/omnisync/api"
	"github.com/omnisync/omnisync/console"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/producers/ingest"
)

// TestConsoleInBrowser runs `omnisync dev` (embedded broker, registry,
// producers, materializer into SQLite, API and console), feeds one customer
// through the real web, app and phone endpoints so that she has a
// cross-channel timeline and two key-field conflicts, and then works the
// console in headless Chromium: sign in with #token=, search her by name,
// read her timeline, resolve a conflict from the 360 view and another from
// the review queue, and watch the sync dashboard refresh.
//
// Screenshots go to $OMNISYNC_TEST_ARTIFACTS (default: a temporary
// directory, logged).
func TestConsoleInBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	artifacts := artifactsDir(t)
	start := time.Now()
	dev := startDev(t)
	t.Logf("omnisync dev ready in %s", time.Since(start).Round(time.Millisecond))

	if body := dev.get(t, "/", ""); !bytes.Contains(body, []byte(`src="app.js"`)) {
		t.Fatalf("omnisync dev does not serve the console at /: got %.200q", body)
	}
	fang := feedCustomer(t, dev)
	t.Logf("customer %s materialized with 3 channels and 2 open conflicts after %s", fang, time.Since(start).Round(time.Millisecond))

	b := newBrowser(t, chromium, artifacts)
	b.do("open the console with #token=", chromedp.Navigate(dev.base+"/#token="+url.QueryEscape(dev.creds.AdminToken)),
		chromedp.WaitVisible(chromedp.ID("search")))
	if u := b.eval("location.href"); strings.Contains(u, "token") || !strings.HasSuffix(u, "#/customers") {
		t.Errorf("address after sign-in is %q; want the token gone and #/customers", u)
	}
	if got := b.eval("localStorage.getItem('omnisync.token')"); got != dev.creds.AdminToken {
		t.Errorf("stored token %q, want the admin token", got)
	}

	// Search by name, keyboard only: type, Enter opens the first result.
	b.do("search by name", chromedp.SendKeys(chromedp.ID("search"), "王芳"),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll('[data-testid=result]').length === 1 &&
			document.querySelector('[data-testid=result]').dataset.customerId === `+jsString(fang)),
		chromedp.SendKeys(chromedp.ID("search"), kb.Enter),
		chromedp.WaitVisible(chromedp.CSS("#timeline [data-testid=call]")))
	if got := b.text("#customer-name"); got != "王芳" {
		t.Errorf("customer name %q, want 王芳", got)
	}
	if got := b.eval(`[...new Set([...document.querySelectorAll('#timeline [data-channel]')].map(e => e.dataset.channel))].sort().join()`); got != "APP,PHONE,WEB" {
		t.Errorf("timeline channels %q, want APP,PHONE,WEB", got)
	}
	if got := b.eval(`String(document.querySelectorAll('[data-testid=call]').length) + ' call, ' +
		document.querySelectorAll('[data-testid=call] [data-testid=turn]').length + ' turns'`); got != "1 call, 4 turns" {
		t.Errorf("transcript shown as %s, want one call with 4 turns", got)
	}
	if got := b.text("[data-testid=call] [data-testid=turn]"); !strings.Contains(got, "您好，这里是客服中心") {
		t.Errorf("first speaker turn %q", got)
	}
	// The hostile message is shown as text, not markup.
	if got := b.eval(`[...document.querySelectorAll('[data-testid=message-text]')].some(e => e.textContent === ` + jsString(hostile) + `) &&
		!document.querySelector('#timeline img, #timeline b') && !document.body.dataset.pwned`); got != "true" {
		t.Errorf("hostile message not rendered as plain text (check: %s)", got)
	}
	if got := b.eval(`document.querySelector('[data-field=phone] [data-testid=provenance] [data-channel]').dataset.channel`); got != "APP" {
		t.Errorf("phone provenance channel %q, want APP", got)
	}
	if got := b.eval(`document.querySelectorAll('#conflicts [data-testid=conflict][data-status=OPEN]').length`); got != "2" {
		t.Fatalf("open conflicts in the 360 view: %s, want 2", got)
	}
	b.screenshot("customer-360.png")

	// Resolve the phone conflict: take the web's number. The console shows
	// "resolving…" until the materializer closed the conflict; the resolver
	// on record is the signed-in principal (the admin token's).
	phoneCard := b.eval(`[...document.querySelectorAll('#conflicts [data-testid=conflict]')].find(e => e.querySelector('.conflict-head strong').textContent === 'Phone').dataset.conflictId`)
	card := fmt.Sprintf(`[data-testid=conflict][data-conflict-id=%q]`, phoneCard)
	resolving := time.Now()
	b.do("take the candidate phone", chromedp.Click(chromedp.CSS(card+" [data-testid=resolve-take_candidate]")),
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.querySelector('[data-testid=resolved-conflict][data-conflict-id=%q]')?.dataset.status === 'TOOK_CANDIDATE'`, phoneCard)))
	t.Logf("conflict resolved in the browser in %s (click to materialized)", time.Since(resolving).Round(time.Millisecond))
	if got := b.text("[data-field=phone] .value"); got != "+8613900002222" {
		t.Errorf("phone after taking the candidate %q, want +8613900002222", got)
	}
	if got := b.eval(`document.querySelector('[data-field=phone] [data-testid=provenance] [data-channel]').dataset.channel`); got != "AGENT" {
		t.Errorf("phone provenance after the resolution %q, want AGENT", got)
	}
	if c := dev.conflict(t, fang, phoneCard); c.Status != "TOOK_CANDIDATE" || c.ResolvedBy == nil || *c.ResolvedBy != "bootstrap-admin" {
		t.Errorf("API shows the conflict %s resolved by %v, want TOOK_CANDIDATE by bootstrap-admin", c.Status, c.ResolvedBy)
	}
	b.screenshot("customer-360-resolved.png")

	// The review queue has the other conflict; keep the current e-mail there.
	b.do("open the review queue", chromedp.Click(chromedp.CSS("[data-testid=nav-review]")),
		chromedp.WaitVisible(chromedp.CSS("[data-testid=review-row]")))
	if got := b.eval(`[...document.querySelectorAll('[data-testid=review-row]')].map(r => r.querySelector('[data-testid=review-customer]').textContent + ' ' + r.children[2].textContent).join('; ')`); got != "王芳 E-mail" {
		t.Errorf("review queue rows %q, want one: 王芳 E-mail", got)
	}
	b.screenshot("review-queue.png")
	b.do("keep the current e-mail", chromedp.Click(chromedp.CSS("[data-testid=review-row] [data-testid=resolve-keep_current]")),
		chromedp.Poll[chromedp.Void](`document.querySelector('[data-testid=review-row]').dataset.status === 'KEPT_CURRENT'`),
		chromedp.Poll[chromedp.Void](`document.getElementById('review-count').hidden`, chromedp.WithPollingTimeout(5*time.Second)))

	// The sync dashboard shows the channels we used and the dev group, and refreshes itself.
	b.do("open the sync dashboard", chromedp.Click(chromedp.CSS("[data-testid=nav-sync]")),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=sync-group][data-group="omnisync-dev-sqlite"]`)))
	for _, ch := range []string{"web", "app", "phone"} {
		if got := b.text(fmt.Sprintf(`[data-testid=sync-channel][data-channel=%q] td:nth-child(3)`, ch)); got == "0" || got == "" {
			t.Errorf("sync dashboard: %s requests %q, want the requests this test made", ch, got)
		}
	}
	first := b.text("#sync-updated")
	b.do("wait for the dashboard to refresh", chromedp.Poll[chromedp.Void](
		`document.getElementById('sync-updated').textContent !== `+jsString(first), chromedp.WithPollingTimeout(12*time.Second)))
	b.screenshot("sync-dashboard.png")

	// The audit trail names the two resolutions, by the admin token's principal.
	b.do("open the audit trail", chromedp.Click(chromedp.CSS("[data-testid=nav-audit]")),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll('[data-testid=audit-row][data-action="conflict.resolve"]').length === 2`,
			chromedp.WithPollingTimeout(10*time.Second)))
	if got := b.text("[data-testid=audit-row][data-action=\"conflict.resolve\"] td:nth-child(2)"); !strings.HasPrefix(got, "bootstrap-admin") {
		t.Errorf("audit trail actor %q, want bootstrap-admin", got)
	}
	b.screenshot("audit.png")
	b.do("back to the sync dashboard", chromedp.Click(chromedp.CSS("[data-testid=nav-sync]")),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=sync-group]`)))

	// A token the API refuses brings back the sign-in form; signing in there works.
	b.do("sign in again after a 401", chromedp.Evaluate[chromedp.Void](`localStorage.setItem('omnisync.token', 'wrong'); location.reload()`),
		chromedp.WaitVisible(chromedp.ID("signin-password")))
	if got := b.text("#signin-error"); !strings.Contains(got, "not accepted") {
		t.Errorf("sign-in message after a 401: %q", got)
	}
	b.do("sign in with the form", chromedp.SendKeys(chromedp.ID("signin-password"), dev.creds.AdminToken+"\n"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=sync-group]`)))

	b.checkConsole()
	t.Logf("screenshots in %s; whole test %s", artifacts, time.Since(start).Round(time.Millisecond))
}

// TestConsoleRetryBannerOn503 serves the console beside an API that
// answers 503 (as the real one does while its store is down) until the
// test lets it recover: the console shows the retry banner, and Retry
// brings the view back.
func TestConsoleRetryBannerOn503(t *testing.T) {
	chromium := chromiumPath(t)
	const token = "t0ken"
	var down atomic.Bool
	down.Store(true)
	mux := http.NewServeMux()
	mux.Handle("/", console.Handler())
	mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Header.Get("Authorization") != "Bearer "+token:
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"unauthorized","reason":"wrong token"}`)
		case down.Load():
			w.Header().Set("Retry-After", "5")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"error":"unavailable","reason":"the store did not answer; retry"}`)
		default:
			_, _ = io.WriteString(w, `{"items":[],"next_cursor":""}`)
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	b := newBrowser(t, chromium, artifactsDir(t))
	b.do("open the console while the API answers 503", chromedp.Navigate(srv.URL+"/#token="+token),
		chromedp.WaitVisible(chromedp.ID("banner")))
	if got := b.text("#banner-text"); !strings.Contains(got, "temporarily unavailable") || !strings.Contains(got, "the store did not answer") {
		t.Errorf("banner %q", got)
	}
	if got := b.text("#results-status"); !strings.Contains(got, "Search failed") {
		t.Errorf("search status while down %q", got)
	}
	down.Store(false)
	b.do("retry after recovery", chromedp.Click(chromedp.CSS("[data-testid=retry]")),
		chromedp.Poll[chromedp.Void](`document.getElementById('banner').hidden &&
			document.getElementById('results-status').textContent === 'No customers yet.'`, chromedp.WithPollingTimeout(10*time.Second)))
}

// hostile is a chat line that would run script if the console inserted
// data as markup.
const hostile = `<img src=x onerror="document.body.dataset.pwned=1"><b>bold?</b>`

// feedCustomer posts 王芳's history through the ingest endpoints, plus a
// decoy customer, and waits until the materializer applied it. It returns
// her customer ID.
func feedCustomer(t *testing.T, dev *devServer) string {
	t.Helper()
	fang := ingest.CustomerIDFor(events.Identity{Kind: "crm", Value: "CRM-BROWSER-1"})
	t0 := time.Now().Add(-2 * time.Hour).UTC()
	at := func(min int) string { return t0.Add(time.Duration(min) * time.Minute).Format(time.RFC3339) }
	msg := func(id string, min int, conv, dir, text string) map[string]any {
		return map[string]any{"type": "message", "id": id, "occurred_at": at(min), "conversation_id": conv,
			"direction": dir, "content_type": "text", "text": text}
	}
	agent := func(id string, min int, conv, text string) map[string]any {
		m := msg(id, min, conv, "outbound", text)
		m["sender"] = map[string]any{"type": "agent", "id": "agent-21"}
		return m
	}
	profile := func(id string, min int, p map[string]any) map[string]any {
		return map[string]any{"type": "profile", "id": id, "occurred_at": at(min), "profile": p}
	}
	// The app sets her profile; the web, ranking below the app, later
	// brings another phone and e-mail: two key-field conflicts.
	app, web := dev.creds.Channels.App, dev.creds.Channels.Web
	dev.post(t, "/ingest/app", app.Key, map[string]any{
		"device_id": "d-wf-ios", "user_id": "u-wf", "user_hash": ingest.SignClaim(app.IdentitySecret, "user_id", "u-wf"),
		"customer_id": fang, "customer_hash": ingest.SignClaim(app.IdentitySecret, "customer_id", fang), "app_version": "5.3.0", "platform": "ios",
		"events": []any{
			profile("a-wf-1", 0, map[string]any{"name": "王芳", "phone": "139 0000 1111", "email": "wang.fang@example.com", "gender": "female",
				"address": map[string]any{"country": "CN", "province": "上海", "city": "上海", "district": "徐汇区"}, "tags": []string{"vip"}}),
			msg("a-wf-2", 1, "app-wf-1", "inbound", "你好，我上周的订单还没有发货。"),
			agent("a-wf-3", 2, "app-wf-1", "抱歉让您久等了，我马上帮您查一下。"),
		}})
	dev.post(t, "/ingest/web", web.Key, map[string]any{
		"visitor_id": "v-wf-01", "customer_id": fang, "customer_hash": ingest.SignClaim(web.IdentitySecret, "customer_id", fang),
		"events": []any{
			msg("w-wf-1", 30, "web-wf-1", "inbound", hostile),
			agent("w-wf-2", 31, "web-wf-1", "您好，已收到您的消息。"),
			profile("w-wf-3", 32, map[string]any{"phone": "139 0000 2222", "email": "fang.w@example.net"}),
		}})
	dev.post(t, "/ingest/web", dev.creds.Channels.Web.Key, map[string]any{
		"visitor_id": "v-decoy", "events": []any{profile("w-decoy-1", 5, map[string]any{"name": "王小明"})}})
	turns := []struct {
		speaker, text string
		confidence    float64
	}{
		{"agent", "您好，这里是客服中心，请问有什么可以帮您？", 0.97},
		{"caller", "我想确认一下订单什么时候发货。", 0.93},
		{"agent", "已经为您加急，今天下午发出。", 0.95},
		{"caller", "好的，谢谢！", 0.72},
	}
	var segs []map[string]any
	for i, s := range turns {
		segs = append(segs, map[string]any{"speaker": s.speaker, "start_ms": i * 4000, "end_ms": i*4000 + 3500, "text": s.text, "confidence": s.confidence})
	}
	dev.post(t, "/ingest/phone", dev.creds.Channels.Phone.Key, map[string]any{
		"call_id": "call-bt-wf-1", "customer_id": fang, "direction": "inbound", "caller": "139 0000 1111", "callee": "4008001234", "agent_id": "agent-21",
		"started_at": at(60), "ended_at": at(61), "segments": segs})

	var state string
	dev.waitFor(t, "8 messages from web, app and phone and two open conflicts", func() bool {
		c, _ := dev.customer(t, fang)
		var p api.Page[api.Message]
		dev.getJSON(t, "/api/v1/customers/"+fang+"/timeline?limit=100", &p)
		var chans []string
		for _, m := range p.Items {
			if !slices.Contains(chans, m.Channel) {
				chans = append(chans, m.Channel)
			}
		}
		slices.Sort(chans)
		state = fmt.Sprintf("%d conflicts, %d messages from %v", len(c.Conflicts), len(p.Items), chans)
		return len(c.Conflicts) == 2 && len(p.Items) == 8 && len(chans) == 3
	}, &state)
	return fang
}

// ---------------------------------------------------------------- omnisync dev

type devServer struct {
	base  string
	creds ingest.Credentials
	http  *http.Client
}

// startDev runs `omnisync dev` with args on free ports in a temporary data
// dir and waits until it is ready; the process is interrupted when the
// test ends.
func startDev(t *testing.T, args ...string) *devServer {
	t.Helper()
	bin := testenv.Binary(t)
	dir := t.TempDir()
	httpAddr := testenv.FreeAddr(t)
	cmd := exec.Command(bin, append([]string{"dev", "--data-dir", dir, "--http", httpAddr,
		"--kafka-listen", testenv.FreeAddr(t), "--registry-listen", testenv.FreeAddr(t)}, args...)...)
	logFile, err := os.Create(filepath.Join(dir, "dev.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logFile.Name()); err == nil {
				t.Logf("omnisync dev log (last 4 KiB):\n%s", tail(b, 4096))
			}
		}
	})
	testenv.WaitListening(t, httpAddr, time.Minute)
	d := &devServer{base: "http://" + httpAddr, http: &http.Client{Timeout: 15 * time.Second}}
	d.waitFor(t, "/readyz", func() bool {
		resp, err := d.http.Get(d.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	creds, err := ingest.LoadCredentials(filepath.Join(dir, "credentials.json"))
	if err != nil {
		t.Fatal(err)
	}
	d.creds = creds
	return d
}

func (d *devServer) post(t *testing.T, path, key string, body any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, d.base+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.http.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("POST %s: %s: %s", path, resp.Status, answer)
	}
}

func (d *devServer) get(t *testing.T, path, token string) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, d.base+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := d.http.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusNotFound && token != "" {
		return nil
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", path, resp.Status, b)
	}
	return b
}

func (d *devServer) getJSON(t *testing.T, path string, v any) bool {
	t.Helper()
	b := d.get(t, path, d.creds.AdminToken)
	if b == nil {
		return false
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return true
}

func (d *devServer) customer(t *testing.T, id string) (api.Customer, bool) {
	var c api.Customer
	return c, d.getJSON(t, "/api/v1/customers/"+id, &c)
}

func (d *devServer) conflict(t *testing.T, customer, id string) api.Conflict {
	t.Helper()
	c, _ := d.customer(t, customer)
	for _, x := range c.Conflicts {
		if x.ID == id {
			return x
		}
	}
	t.Fatalf("customer %s has no conflict %s", customer, id)
	return api.Conflict{}
}

// waitFor polls cond every 100 ms for up to 30 s; state, when given,
// describes what was seen last.
func (d *devServer) waitFor(t *testing.T, what string, cond func() bool, state ...*string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			seen := ""
			if len(state) > 0 {
				seen = "; last saw " + *state[0]
			}
			t.Fatalf("waited 30 s for %s%s", what, seen)
		}
	}
}

// --------------------------------------------------------------------- browser

// chromiumPath finds Chromium (Debian's chromium package, installed by
// scripts/test-deps.sh) or skips the test loudly.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testenv.Skip(t, "no Chromium for the console's browser test: run scripts/test-deps.sh (Debian package chromium)")
	return ""
}

func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("OMNISYNC_TEST_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

type browser struct {
	t         *testing.T
	ctx       context.Context
	artifacts string
	mu        sync.Mutex
	problems  []string // uncaught exceptions and console errors
}

func newBrowser(t *testing.T, chromium, artifacts string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // root in containers and CI
		chromedp.WindowSize(1440, 900),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("lang", "en-US"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	b := &browser{t: t, ctx: ctx, artifacts: artifacts}
	if err := chromedp.Do(ctx); err != nil { // starts the browser without a deadline
		t.Fatalf("starting %s: %v", chromium, err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			text := fmt.Sprintf("%s:%d %s", m.URL, m.Line+1, m)
			if m.IsException() || m.Type == "error" {
				// A 401 answer the test provoked is logged by the browser; that is expected.
				if !strings.Contains(text, "401") {
					b.mu.Lock()
					b.problems = append(b.problems, text)
					b.mu.Unlock()
				}
			}
		}
	}()
	return b
}

// do runs the steps within 45 s; on failure it saves a screenshot and
// stops the test.
func (b *browser) do(step string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 45*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		name := strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
				return r
			}
			return '-'
		}, step)
		b.screenshot("failed-" + name + ".png")
		b.t.Fatalf("%s: %v", step, err)
	}
}

// eval returns the value of a JavaScript expression as text.
func (b *browser) eval(expr string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[any](expr))
	if err != nil {
		b.t.Fatalf("evaluating %s: %v", expr, err)
	}
	return fmt.Sprint(v)
}

func (b *browser) text(css string) string {
	b.t.Helper()
	return b.eval(fmt.Sprintf(`(document.querySelector(%s) || {}).textContent ?? ''`, jsString(css)))
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	b.screenshotTo(filepath.Join(b.artifacts, name))
}

func (b *browser) screenshotTo(path string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Errorf("screenshot %s: %v", path, err)
		return
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Error(err)
	}
}

func (b *browser) checkConsole() {
	b.t.Helper()
	time.Sleep(100 * time.Millisecond) // let the last console messages arrive
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		b.t.Errorf("browser console: %s", p)
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func tail(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	b = b[len(b)-n:]
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	return b
}
