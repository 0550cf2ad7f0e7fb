// Package producers mounts the channel producers on an HTTP mux: each
// channel at /ingest/<name>, all running the same ingest pipeline.
package producers

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/omnisync/omnisync/producers/app"
	"github.com/omnisync/omnisync/producers/crm"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/producers/miniprogram"
	"github.com/omnisync/omnisync/producers/phone"
	"github.com/omnisync/omnisync/producers/web"
	"github.com/omnisync/omnisync/producers/wechat"
)

// channels builds each channel from its credentials.
var channels = map[string]func(ingest.Credentials) ingest.Channel{
	"web":         func(c ingest.Credentials) ingest.Channel { return web.New(c.Channels.Web) },
	"crm":         func(c ingest.Credentials) ingest.Channel { return crm.New(c.Channels.CRM) },
	"app":         func(c ingest.Credentials) ingest.Channel { return app.New(c.Channels.App) },
	"phone":       func(c ingest.Credentials) ingest.Channel { return phone.New(c.Channels.Phone) },
	"miniprogram": func(c ingest.Credentials) ingest.Channel { return miniprogram.New(c.Channels.MiniProgram) },
	"wechat":      func(c ingest.Credentials) ingest.Channel { return wechat.New(c.Channels.WeChat) },
}

// Names lists the channels, sorted.
func Names() []string {
	names := make([]string, 0, len(channels))
	for n := range channels {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Path is where a channel's endpoint is served.
func Path(name string) string { return "/ingest/" + name }

// Mount serves the named channels ("all" for every one) on mux.
func Mount(mux *http.ServeMux, p *ingest.Pipeline, creds ingest.Credentials, names ...string) error {
	if len(names) == 1 && names[0] == "all" {
		names = Names()
	}
	for _, n := range names {
		build, ok := channels[n]
		if !ok {
			return fmt.Errorf("unknown channel %q (want one of %v or all)", n, Names())
		}
		mux.Handle(Path(n), p.Handler(build(creds)))
	}
	return nil
}
