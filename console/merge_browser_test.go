package console_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/omnisync/omnisync/api"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/producers/ingest"
)

// TestConsoleMergeSuggestionAndUnmerge runs `omnisync dev`, makes the
// identity graph suggest a merge (a caller's number, later verified by SMS
// in an app user's login), and works it in headless Chromium: the
// suggestion in the review queue with its evidence, confirmed there; the
// survivor's 360 view lists the other customer under "Also known as" with
// both timelines on one; Unmerge splits them again.
func TestConsoleMergeSuggestionAndUnmerge(t *testing.T) {
	chromium := chromiumPath(t)
	artifacts := artifactsDir(t)
	dev := startDev(t)

	app, phone := dev.creds.Channels.App, dev.creds.Channels.Phone
	sign := func(name, value string) string { return ingest.SignClaim(app.IdentitySecret, name, value) }
	number := "+8613712345678"
	user := ingest.CustomerIDFor(events.Identity{Kind: "app_user", Value: "u-merge-1"})
	caller := ingest.CustomerIDFor(events.Identity{Kind: "phone", Value: number})
	survivor, absorbed := min(user, caller), max(user, caller)
	t0 := time.Now().Add(-time.Hour).UTC()
	at := func(min int) string { return t0.Add(time.Duration(min) * time.Minute).Format(time.RFC3339) }
	msg := func(id string, min int, text string) map[string]any {
		return map[string]any{"type": "message", "id": id, "occurred_at": at(min), "text": text}
	}
	appPost := func(withPhone bool, evs ...any) {
		body := map[string]any{"device_id": "d-merge-1", "user_id": "u-merge-1", "user_hash": sign("user_id", "u-merge-1"),
			"app_version": "5.3.0", "platform": "android", "events": evs}
		if withPhone {
			body["phone"], body["phone_hash"] = number, sign("phone", number)
		}
		dev.post(t, "/ingest/app", app.Key, body)
	}
	appPost(false, map[string]any{"type": "profile", "id": "p-merge-1", "occurred_at": at(0), "profile": map[string]any{"name": "赵磊"}},
		msg("m-merge-1", 1, "App 里的订单在哪里看？"))
	dev.post(t, "/ingest/phone", phone.Key, map[string]any{
		"call_id": "call-merge-1", "direction": "inbound", "caller": number, "callee": "4008001234", "agent_id": "agent-21",
		"started_at": at(10), "ended_at": at(11), "segments": []map[string]any{
			{"speaker": "caller", "start_ms": 0, "end_ms": 3000, "text": "我想查一下订单。", "confidence": 0.9}}})
	var state string
	dev.waitFor(t, "the two customers", func() bool {
		_, a := dev.customer(t, user)
		_, b := dev.customer(t, caller)
		return a && b
	})
	appPost(true, msg("m-merge-2", 20, "我用手机号登录了"))
	var suggestion api.Conflict
	dev.waitFor(t, "the merge suggestion", func() bool {
		c, _ := dev.customer(t, survivor)
		for _, x := range c.Conflicts {
			if x.Field == "merge" && x.Status == "OPEN" {
				suggestion = x
				return true
			}
		}
		state = fmt.Sprintf("%+v", c.Conflicts)
		return false
	}, &state)

	b := newBrowser(t, chromium, artifacts)
	row := fmt.Sprintf(`[data-testid=review-row][data-conflict-id=%q]`, suggestion.ID)
	b.do("open the review queue", chromedp.Navigate(dev.base+"/#token="+url.QueryEscape(dev.creds.AdminToken)),
		chromedp.WaitVisible(chromedp.ID("search")),
		chromedp.Click(chromedp.CSS("[data-testid=nav-review]")),
		chromedp.WaitVisible(chromedp.CSS(row)))
	if got := b.text(row + " [data-testid=suggested-customer]"); got != absorbed {
		t.Errorf("suggested customer %q, want %s", got, absorbed)
	}
	if got := b.text(row + " .suggestion-body"); !containsAll(got, "phone "+number, "app user u-merge-1") {
		t.Errorf("suggestion evidence %q, want the number and the app user", got)
	}
	b.screenshot("review-queue-suggestion.png")
	b.do("confirm the merge", chromedp.Click(chromedp.CSS(row+" [data-testid=resolve-take_candidate]")),
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.querySelector(%s).dataset.status === 'TOOK_CANDIDATE'`, jsString(row)),
			chromedp.WithPollingTimeout(30*time.Second)))

	aka := fmt.Sprintf(`#also-known-as [data-testid=aka][data-customer-id=%q]`, absorbed)
	b.do("open the survivor", chromedp.Navigate(dev.base+"/#/customers/"+url.PathEscape(survivor)),
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`!!document.querySelector(%s)`, jsString(aka)), chromedp.WithPollingTimeout(30*time.Second)))
	if got := b.text(aka); !containsAll(got, "by bootstrap-admin", "phone "+number) {
		t.Errorf("also known as %q, want who merged and the evidence", got)
	}
	if got := b.eval(`[...new Set([...document.querySelectorAll('#timeline [data-channel]')].map(e => e.dataset.channel))].sort().join()`); got != "APP,PHONE" {
		t.Errorf("one timeline's channels %q, want APP,PHONE", got)
	}
	b.screenshot("customer-360-merged.png")
	b.do("unmerge", chromedp.Click(chromedp.CSS(aka+" [data-testid=unmerge]")),
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`!document.querySelector(%s) && !!document.getElementById('customer-name')`, jsString(aka)),
			chromedp.WithPollingTimeout(30*time.Second)))
	dev.waitFor(t, "two customers again", func() bool {
		s, _ := dev.customer(t, survivor)
		a, _ := dev.customer(t, absorbed)
		state = fmt.Sprintf("survivor also known as %+v, absorbed %s redirected %v", s.AlsoKnownAs, a.ID, a.RedirectedFrom)
		return len(s.AlsoKnownAs) == 0 && a.ID == absorbed && a.RedirectedFrom == nil
	}, &state)
	b.checkConsole()
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
