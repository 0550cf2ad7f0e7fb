package poll_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/producers/hashes"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/producers/poll"
	"github.com/omnisync/omnisync/schemas"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// api is a paginated customer API: pages of two records, linked by next.
type api struct {
	mu      sync.Mutex
	records []map[string]any
	fail    int // page that answers 500 (0: none)
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	if page == 0 {
		page = 1
	}
	if page == a.fail {
		http.Error(w, "down", http.StatusInternalServerError)
		return
	}
	from, to := (page-1)*2, min(page*2, len(a.records))
	body := map[string]any{"records": a.records[from:to]}
	if to < len(a.records) {
		body["next"] = "/customers?page=" + strconv.Itoa(page+1)
	}
	_ = json.NewEncoder(w).Encode(body)
}

func (a *api) set(f func(records []map[string]any) []map[string]any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.records = f(a.records)
}

// Polling emits exactly what changed: every record on the first pass; on
// the next, the two edited records, the added one and a delete of the
// removed one (not of one now refused, which is still listed); nothing after a restart (the hashes come back from Kafka);
// nothing deleted by a pass that could not read every page.
func TestPollEmitsOnlyChanges(t *testing.T) {
	k := testenv.RealKafka(t)
	ctx := context.Background()
	cl, err := kafka.NewClient(k.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kafka.Provision(ctx, kadm.NewClient(cl), kafka.DefaultLayout.Topics()); err != nil {
		t.Fatal(err)
	}
	reg, _ := testenv.Registry(t)
	serde, err := codec.New(ctx, reg)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := ingest.NewDirectory(k.Config(), serde, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go dir.Run(dctx)
	<-dir.Ready()
	p := ingest.New(ingest.Config{Client: cl, Serde: serde, Directory: dir})

	a := &api{}
	for i := range 5 {
		a.records = append(a.records, map[string]any{"id": fmt.Sprintf("P-%d", i), "name": fmt.Sprintf("Name %d", i),
			"phone": fmt.Sprintf("1380013800%d", i), "vip_level": i, "tags": []string{"t"}})
	}
	a.records = append(a.records, map[string]any{"id": "P-bad", "phone": "12"})
	srv := httptest.NewServer(a)
	defer srv.Close()
	source := testenv.UniqueName(t, "poll")
	newPoller := func() (*poll.Poller, func()) {
		t.Helper()
		store, err := hashes.Open(ctx, k.Config(), "", "poll:"+source)
		if err != nil {
			t.Fatal(err)
		}
		pl, err := poll.New(poll.Config{URL: srv.URL + "/customers", Source: source, Pipeline: p, Hashes: store, Logger: zaptest.NewLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return pl, store.Close
	}
	// produced returns the source's events since from: CRM ID → ops.
	produced := func(from map[string]map[int32]kgo.Offset) map[string][]events.Op {
		t.Helper()
		out := map[string][]events.Op{}
		for _, r := range testenv.RecordsSince(t, k, schemas.CustomerEventsTopic, from[schemas.CustomerEventsTopic]) {
			var ev events.CustomerEvent
			if serde.Decode(ctx, r.Value, &ev) == nil && len(ev.Identities) > 0 && ev.Identities[0].Scope == source {
				out[ev.Identities[0].Value] = append(out[ev.Identities[0].Value], ev.Op)
				if ev.Channel != events.ChannelCRM || !strings.HasPrefix(ev.Source, "producer/crm/"+source+"@") {
					t.Errorf("event %s: channel %s, source %s", ev.EventID, ev.Channel, ev.Source)
				}
			}
		}
		return out
	}
	pass := func(pl *poll.Poller) poll.Pass {
		t.Helper()
		got, err := pl.Pass(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	pl, closeStore := newPoller()
	from := testenv.EndOffsets(t, cl, schemas.CustomerEventsTopic)
	if got := pass(pl); got != (poll.Pass{Records: 6, Changed: 5, Rejected: 1, Complete: true}) {
		t.Fatalf("first pass: %+v", got)
	}
	if got := produced(from); len(got) != 5 {
		t.Fatalf("first pass produced %v, want the five good records", got)
	}

	from = testenv.EndOffsets(t, cl, schemas.CustomerEventsTopic)
	a.set(func(rs []map[string]any) []map[string]any {
		rs[0]["phone"] = "12" // P-0 is refused now, but still listed: not deleted
		rs[1]["name"] = "Name 1 edited"
		rs[3]["phone"] = "13900139003"
		rs = slices.Delete(rs, 2, 3) // P-2 is gone
		return append(rs, map[string]any{"id": "P-9", "name": "New"})
	})
	if got := pass(pl); got != (poll.Pass{Records: 6, Changed: 3, Deleted: 1, Unchanged: 1, Rejected: 2, Complete: true}) {
		t.Fatalf("pass after edits: %+v", got)
	}
	closeStore()
	want := map[string][]events.Op{"P-1": {events.OpUpsert}, "P-3": {events.OpUpsert}, "P-9": {events.OpUpsert}, "P-2": {events.OpDelete}}
	if got := produced(from); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pass after edits produced %v, want %v", got, want)
	}

	// A restart: the hashes come back from Kafka, nothing is sent again.
	from = testenv.EndOffsets(t, cl, schemas.CustomerEventsTopic)
	pl, closeStore = newPoller()
	defer closeStore()
	if got := pass(pl); got != (poll.Pass{Records: 6, Unchanged: 4, Rejected: 2, Complete: true}) {
		t.Fatalf("pass after a restart: %+v", got)
	}
	// A pass that fails on page 2 deletes nothing (the records it did not
	// read are not gone).
	a.mu.Lock()
	a.fail = 2
	a.mu.Unlock()
	if got, err := pl.Pass(ctx); err == nil || got.Complete {
		t.Fatalf("pass with page 2 down: %+v, %v; want an error", got, err)
	}
	if got := produced(from); len(got) != 0 {
		t.Fatalf("the restart's pass and the incomplete pass produced %v, want nothing", got)
	}
}
