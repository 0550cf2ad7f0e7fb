package ingest

import (
	"testing"

	"github.com/omnisync/omnisync/pkg/events"
)

// BenchmarkResolve measures resolving one event's identities through the
// identity graph (links, redirects, merge candidates) beside the bare
// directory lookups it needs (baseline=lookups): the cost the graph adds
// to every ingested event.
func BenchmarkResolve(b *testing.B) {
	d := graph(map[string]string{IdentityKey(appUser): "cus_x", IdentityKey(unionid): "cus_f", IdentityKey(caller): "cus_p"})
	d.remember(redirectOf("cus_x"), "cus_f")
	cases := map[string][]events.Identity{
		"new":       {vid("wechat_openid", "wx-oa", "o-new"), vid("wechat_unionid", "", "u-new")},
		"known":     {openid, unionid},
		"merged":    {appUser, vid("device", "", "d-1")},
		"candidate": {appUser, caller, unionid},
	}
	p := New(Config{Directory: d})
	for name, ids := range cases {
		b.Run(name+"/baseline=lookups", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				for _, id := range ids {
					d.Lookup(id)
				}
			}
		})
		b.Run(name+"/graph", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				res := d.Resolve("", ids, map[string]string{})
				p.stitch(res, trigger{id: "ev-1", channel: events.ChannelApp})
			}
		})
	}
}
