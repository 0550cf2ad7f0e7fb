package console_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/omnisync/omnisync/producers/ingest"
)

// TestTwoAgentsLive has two agents, each signed in with their own name and
// password in their own browser, open the same customer: a new message and
// agent A's resolution appear in agent B's console without a reload, and
// B's console names A as the resolver.
func TestTwoAgentsLive(t *testing.T) {
	chromium := chromiumPath(t)
	artifacts := artifactsDir(t)
	dev := startDev(t)
	fang := feedCustomer(t, dev)
	for _, name := range []string{"agent-a", "agent-b"} {
		dev.post(t, "/api/v1/agents", dev.creds.AdminToken, map[string]any{"name": name, "role": "agent", "password": "correct horse battery"})
	}
	signIn := func(name string) *browser {
		b := newBrowser(t, chromium, artifacts)
		b.do(name+" signs in", chromedp.Navigate(dev.base+"/"),
			chromedp.WaitVisible(chromedp.ID("signin-name")),
			chromedp.SendKeys(chromedp.ID("signin-name"), name),
			chromedp.SendKeys(chromedp.ID("signin-password"), "correct horse battery\n"),
			chromedp.WaitVisible(chromedp.ID("search")))
		if got := b.text("#agent-name"); got != name+" · agent" {
			t.Errorf("%s's console shows %q as the signed-in agent", name, got)
		}
		if got := b.eval(`document.cookie.includes('omnisync_session')`); got != "false" {
			t.Errorf("%s: the session cookie is readable by script", name)
		}
		b.do(name+" opens 王芳", chromedp.Navigate(dev.base+"/#/customers/"+fang),
			chromedp.WaitVisible(chromedp.CSS("#conflicts [data-testid=conflict]")))
		return b
	}
	a, b := signIn("agent-a"), signIn("agent-b")
	reloads := b.eval(`String(performance.getEntriesByType('navigation').length) + ':' + (window.__marker = 'no reload')`)

	// A new message for her arrives while both look at her.
	sent := time.Now()
	web := dev.creds.Channels.Web
	dev.post(t, "/ingest/web", web.Key, map[string]any{
		"visitor_id": "v-wf-01", "customer_id": fang, "customer_hash": ingest.SignClaim(web.IdentitySecret, "customer_id", fang),
		"events": []any{map[string]any{"type": "message", "id": "w-wf-live-1", "occurred_at": time.Now().UTC().Format(time.RFC3339),
			"conversation_id": "web-wf-1", "direction": "inbound", "content_type": "text", "text": "请问发货了吗？（实时）"}}})
	b.do("the message appears in B's console", chromedp.Poll[chromedp.Void](
		`[...document.querySelectorAll('[data-testid=message-text]')].some(e => e.textContent === '请问发货了吗？（实时）')`,
		chromedp.WithPollingTimeout(10*time.Second)))
	t.Logf("message shown in B's console %s after the ingest call returned", time.Since(sent).Round(time.Millisecond))

	// A resolves the phone conflict; B sees it closed, by A.
	phoneCard := a.eval(`[...document.querySelectorAll('#conflicts [data-testid=conflict]')].find(e => e.querySelector('.conflict-head strong').textContent === 'Phone').dataset.conflictId`)
	clicked := time.Now()
	a.do("A takes the candidate phone", chromedp.Click(chromedp.CSS(fmt.Sprintf(`[data-testid=conflict][data-conflict-id=%q] [data-testid=resolve-take_candidate]`, phoneCard))))
	b.do("the resolution appears in B's console", chromedp.Poll[chromedp.Void](
		fmt.Sprintf(`document.querySelector('[data-testid=resolved-conflict][data-conflict-id=%q]')?.dataset.status === 'TOOK_CANDIDATE'`, phoneCard),
		chromedp.WithPollingTimeout(10*time.Second)))
	t.Logf("resolution shown in B's console %s after A's click", time.Since(clicked).Round(time.Millisecond))
	if got := b.text(fmt.Sprintf(`[data-testid=resolved-conflict][data-conflict-id=%q]`, phoneCard)); !strings.Contains(got, "by agent-a") {
		t.Errorf("B's console shows the resolved conflict as %q, want it by agent-a", got)
	}
	if got := b.eval(`String(performance.getEntriesByType('navigation').length) + ':' + window.__marker`); got != reloads {
		t.Errorf("B's console reloaded (%s, before %s)", got, reloads)
	}
	if c := dev.conflict(t, fang, phoneCard); c.ResolvedBy == nil || *c.ResolvedBy != "agent-a" {
		t.Errorf("the API shows the conflict resolved by %v, want agent-a", c.ResolvedBy)
	}
	b.screenshot("agent-b-live.png")
	a.checkConsole()
	b.checkConsole()
}
