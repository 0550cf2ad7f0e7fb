package console_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/omnisync/omnisync/api"
	"github.com/omnisync/omnisync/internal/demo"
	"github.com/omnisync/omnisync/internal/testenv"
)

// TestDemoInBrowser runs `omnisync dev --demo` and opens the console as a
// newcomer does: the first screen of the customer list starts with the seven
// named customers, who between them show web, app, WeChat and phone
// activity (the fan 刘洋 is one customer; the one unnamed customer, an
// earlier caller with 陈静's number, comes last); 陈静's 360 view has every
// channel on one timeline, her open conflict and the merge suggestion. That view is the README's screenshot: with
// OMNISYNC_UPDATE_SCREENSHOT=1 it is written to docs/console.png.
func TestDemoInBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	artifacts := artifactsDir(t)
	dev := startDev(t, "--demo")

	// The scenario is in the store once the review queue holds its four
	// conflicts and the merge suggestion, and 陈静's timeline has all five
	// channels.
	chen := demo.ChenJing.ID()
	var seen string
	dev.waitFor(t, "the demo scenario in the store", func() bool {
		var queue api.Page[api.Conflict]
		var timeline api.Page[api.Message]
		if !dev.getJSON(t, "/api/v1/conflicts", &queue) || !dev.getJSON(t, "/api/v1/customers/"+chen+"/timeline?limit=500", &timeline) {
			return false
		}
		var channels []string
		for _, m := range timeline.Items {
			if !slices.Contains(channels, m.Channel) {
				channels = append(channels, m.Channel)
			}
		}
		slices.Sort(channels)
		seen = fmt.Sprintf("%d open conflicts, 陈静's timeline channels %v", len(queue.Items), channels)
		return len(queue.Items) == 5 && strings.Join(channels, ",") == "APP,MINIPROGRAM,PHONE,WEB,WECHAT"
	}, &seen)

	b := newBrowser(t, chromium, artifacts)
	b.do("open the console", chromedp.Navigate(dev.base+"/#token="+url.QueryEscape(dev.creds.AdminToken)),
		chromedp.WaitVisible(chromedp.CSS("[data-testid=result]")))
	// The first screen: what the list shows above the fold.
	first := b.eval(`JSON.stringify([...document.querySelectorAll('[data-testid=result]')]
		.filter(e => e.getBoundingClientRect().top < window.innerHeight)
		.map(e => ({name: e.querySelector('.result-name').textContent,
			channels: [...e.querySelectorAll('[data-channel]')].map(c => c.dataset.channel)})))`)
	t.Logf("first screen of the customer list: %s", first)
	var onScreen []struct {
		Name     string
		Channels []string
	}
	if err := json.Unmarshal([]byte(first), &onScreen); err != nil {
		t.Fatal(err)
	}
	// Named customers come first (the list is ordered by the latest
	// activity, and the unnamed fan's is older), and between them they show
	// every channel.
	channels := map[string]bool{}
	named := 0
	for i, c := range onScreen {
		if c.Name == "Unnamed customer" {
			continue
		}
		if named != i {
			t.Errorf("%s is listed after an unnamed customer: %s", c.Name, first)
		}
		named++
		for _, ch := range c.Channels {
			channels[ch] = true
		}
	}
	if named < 7 {
		t.Errorf("%d named customers on the first screen, want the demo's 7: %s", named, first)
	}
	for _, ch := range []string{"WEB", "APP", "WECHAT", "MINIPROGRAM", "PHONE"} {
		if !channels[ch] {
			t.Errorf("no %s activity among the named customers on the first screen: %s", ch, first)
		}
	}

	b.do("open 陈静", chromedp.Navigate(dev.base+"/#/customers/"+url.PathEscape(chen)),
		chromedp.WaitVisible(chromedp.CSS("#timeline [data-testid=call]")),
		chromedp.WaitVisible(chromedp.CSS("#conflicts [data-testid=conflict]")))
	if got := b.eval(`[...document.querySelectorAll('#conflicts [data-testid=conflict] strong')].map(e => e.textContent).join()`); got != "E-mail,Same person?" && got != "Same person?,E-mail" {
		t.Errorf("陈静's review items %q, want her e-mail conflict and the merge suggestion", got)
	}
	if got := b.text("#customer-name"); got != demo.ChenJing.Name {
		t.Errorf("customer name %q, want %s", got, demo.ChenJing.Name)
	}
	if got := b.eval(`[...new Set([...document.querySelectorAll('#timeline [data-channel]')].map(e => e.dataset.channel))].sort().join()`); got != "APP,MINIPROGRAM,PHONE,WEB,WECHAT" {
		t.Errorf("陈静's timeline channels %q, want APP,MINIPROGRAM,PHONE,WEB,WECHAT", got)
	}
	b.screenshot("demo-customer-360.png")
	if os.Getenv("OMNISYNC_UPDATE_SCREENSHOT") == "1" {
		// Without a CJK font Chromium draws the names as boxes.
		if out, err := exec.Command("fc-list", ":lang=zh", "family").Output(); err != nil || len(strings.TrimSpace(string(out))) == 0 {
			t.Fatalf("no CJK font (fc-list :lang=zh: %v); scripts/test-deps.sh installs fonts-noto-cjk", err)
		}
		path := filepath.Join(testenv.RepoRoot(t), "docs", "console.png")
		b.screenshotTo(path)
		t.Logf("wrote %s", path)
	}
	b.checkConsole()
}
