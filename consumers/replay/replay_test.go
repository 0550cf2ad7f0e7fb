package replay_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/omnisync/omnisync/api"
	"github.com/omnisync/omnisync/consumers/materializer"
	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/replay"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/consumers/store/postgres"
	"github.com/omnisync/omnisync/consumers/store/sqlite"
	"github.com/omnisync/omnisync/consumers/verify"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/schemas"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

const token = "replay-test-token"

// rig is a live deployment on the real Kafka: a store, a member of its
// group and the API over the store, with producers feeding the topics. The
// Kafka is the shared test Kafka: a replay verifies every customer it folds
// before it swaps, other tests' customers included, which agree whatever
// order the two topics were folded in (docs/design.md, Messages, deletes
// and versions).
type rig struct {
	k      testenv.Kafka
	cl     *kgo.Client
	serde  *codec.Serde
	dsn    string
	live   store.Store
	group  string
	prefix string   // of the test's customer IDs and names
	ids    []string // the test's customers
	from   map[string]map[int32]int64

	mu     sync.Mutex
	stream []any // everything produced, in order per customer
}

func newRig(t *testing.T, kind string) *rig {
	t.Helper()
	ctx := context.Background()
	r := &rig{k: testenv.RealKafka(t), group: testenv.UniqueName(t, "group"), prefix: testenv.UniqueName(t, "cus")}
	cl, err := kafka.NewClient(r.k.Config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	r.cl = cl
	if _, err := kafka.Provision(ctx, kadm.NewClient(cl), kafka.Layout{Partitions: 6}.Topics()); err != nil {
		t.Fatal(err)
	}
	reg, _ := testenv.Registry(t)
	if r.serde, err = codec.New(ctx, reg); err != nil {
		t.Fatal(err)
	}
	switch kind {
	case "sqlite":
		r.dsn = "sqlite:" + filepath.Join(t.TempDir(), "live.db")
		r.live, err = sqlite.Open(ctx, r.dsn[len("sqlite:"):])
	case "postgres":
		r.dsn = testenv.Postgres(t)
		r.live, err = postgres.Open(ctx, r.dsn)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.live.Close() })
	for i := range 12 {
		r.ids = append(r.ids, fmt.Sprintf("%s_%02d", r.prefix, i))
	}
	// The topics are shared: the store starts where they end now, as if
	// it had folded everything before, and so does every replay of it.
	r.from = endOffsets(t, r.k)
	if err := r.live.Apply(ctx, &store.Batch{Group: r.group, Offsets: r.from}); err != nil {
		t.Fatal(err)
	}
	return r
}

func endOffsets(t *testing.T, k testenv.Kafka) map[string]map[int32]int64 {
	t.Helper()
	end, err := materializer.LogOffsets(context.Background(), k.Config(), true)
	if err != nil {
		t.Fatal(err)
	}
	return end
}

// member runs a member of the live group with policy until stop, which
// returns what Run returned. It applies the batches of up to 4 partitions
// at once, as omnisync consume does on PostgreSQL, so that the swap and
// the in-place reset meet batches queued on several writer lanes.
func (r *rig) member(t *testing.T, policy *merge.Policy) (stop func() error, done <-chan struct{}) {
	t.Helper()
	m, err := materializer.New(materializer.Config{Kafka: r.k.Config(), Group: r.group, Store: r.live, Serde: r.serde,
		Policy: policy, MaxBatch: 2000, Writers: 4, Logger: zaptest.NewLogger(t).Named("live")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan struct{})
	var runErr error
	go func() { runErr = m.Run(ctx); close(ended) }()
	stop = func() error {
		cancel()
		<-ended
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return stop, ended
}

// produce sends values through a producer client, as the channel
// producers do: keyed by customer ID, acknowledged by all replicas.
func (r *rig) produce(t *testing.T, values ...any) {
	t.Helper()
	var recs []*kgo.Record
	for _, v := range values {
		b, err := r.serde.Encode(v)
		if err != nil {
			t.Error(err)
			return
		}
		switch v := v.(type) {
		case *events.CustomerEvent:
			recs = append(recs, &kgo.Record{Topic: schemas.CustomerEventsTopic, Key: []byte(v.CustomerID), Value: b})
		case *events.MessageEvent:
			recs = append(recs, &kgo.Record{Topic: schemas.CustomerMessagesTopic, Key: []byte(v.CustomerID), Value: b})
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock() // the stream's order is the log's, per customer
	if err := r.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Error(err)
		return
	}
	r.stream = append(r.stream, values...)
}

var base = time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)

// events makes n random events and messages of the rig's customers.
func (r *rig) events(rng *rand.Rand, n int) []any {
	channels := []events.Channel{events.ChannelWeb, events.ChannelApp, events.ChannelWeChat, events.ChannelPhone, events.ChannelCRM}
	var out []any
	for range n {
		i := rng.IntN(1 << 30)
		cid := r.ids[rng.IntN(len(r.ids))]
		ch := channels[rng.IntN(len(channels))]
		at := base.Add(time.Duration(rng.IntN(3600)) * time.Second)
		if rng.IntN(3) == 0 {
			text := fmt.Sprintf("message %d", i)
			out = append(out, &events.MessageEvent{
				MessageID: fmt.Sprintf("%s-m%d", cid, i), CustomerID: cid, Channel: ch, Source: "test/" + string(ch),
				Direction: events.DirectionInbound, SenderType: events.SenderCustomer, ContentType: events.ContentText,
				Text: &text, OccurredAt: at, IngestedAt: at.Add(time.Second),
			})
			continue
		}
		name := fmt.Sprintf("%s name %d", r.prefix, rng.IntN(5))
		phone := fmt.Sprintf("+861380013%04d", rng.IntN(3))
		out = append(out, &events.CustomerEvent{
			EventID: fmt.Sprintf("%s-e%d", cid, i), CustomerID: cid, Channel: ch, Source: "test/" + string(ch),
			Op: events.OpUpsert, OccurredAt: at, IngestedAt: at.Add(time.Second),
			Identities: []events.Identity{{Kind: "phone", Value: phone}},
			Profile:    &events.Profile{Name: &name, Phone: &phone},
		})
	}
	return out
}

// waitCaughtUp waits until the live store holds the topics' end offsets.
func (r *rig) waitCaughtUp(t *testing.T) {
	t.Helper()
	end := endOffsets(t, r.k)
	deadline := time.Now().Add(180 * time.Second) // the topics are shared: others' traffic is folded too
	for {
		held, err := r.live.Offsets(context.Background(), r.group)
		if err == nil && store.Covers(held, end) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the live store did not catch up: holds %v, want %v (%v)", held, end, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkFold checks that the live store holds exactly the fold of what was
// produced with policy: each record as the merge contract folds it,
// each message once.
func (r *rig) checkFold(t *testing.T, policy *merge.Policy) {
	t.Helper()
	ctx := context.Background()
	r.mu.Lock()
	stream := append([]any(nil), r.stream...)
	r.mu.Unlock()
	want := map[string]merge.Record{}
	messages := map[string]map[string]bool{}
	for _, v := range stream {
		switch v := v.(type) {
		case *events.CustomerEvent:
			want[v.CustomerID], _ = merge.Apply(want[v.CustomerID], v, policy)
		case *events.MessageEvent:
			want[v.CustomerID], _ = merge.ApplyMessage(want[v.CustomerID], v, policy)
			if messages[v.CustomerID] == nil {
				messages[v.CustomerID] = map[string]bool{}
			}
			messages[v.CustomerID][v.MessageID] = true
		}
	}
	got, err := r.live.Load(ctx, r.ids)
	if err != nil {
		t.Fatal(err)
	}
	for id, w := range want {
		if g, ok := got[id]; !ok || g.CanonicalHash() != w.CanonicalHash() {
			t.Errorf("customer %s: the store holds version %d (found %v), the fold of the log version %d", id, g.Version, ok, w.Version)
		}
		timeline, err := r.live.Timeline(ctx, id, nil, 100000)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		for _, m := range timeline {
			seen[m.MessageID]++
		}
		for mid := range messages[id] {
			if seen[mid] != 1 {
				t.Errorf("customer %s: message %s stored %d times, want once", id, mid, seen[mid])
			}
		}
		if len(timeline) != len(messages[id]) {
			t.Errorf("customer %s: %d messages stored, want %d", id, len(timeline), len(messages[id]))
		}
	}
}

// verifyLive checks the live store against a fresh fold of the log (what
// omnisync verify --against-log does); its members must be stopped.
func (r *rig) verifyLive(t *testing.T, policy *merge.Policy) {
	t.Helper()
	rep, err := verify.AgainstLog(context.Background(), verify.Config{Kafka: r.k.Config(), Serde: r.serde, Group: r.group,
		From: r.from, Policy: policy, TempDir: t.TempDir(), Logger: zaptest.NewLogger(t).Named("verify")}, r.live.(verify.Store))
	if err != nil {
		t.Fatal(err)
	}
	// Other tests' customers on the shared topics may include a DELETE
	// racing a newer message across the two topics, which verify can
	// report although the materializer followed the contract (see
	// docs/design.md, Verify): only this test's customers must agree.
	for _, d := range rep.Differ {
		if strings.HasPrefix(d.CustomerID, r.prefix) {
			t.Errorf("the live store does not agree with the log: %v", d)
		} else {
			t.Logf("another test's customer differs: %v", d)
		}
	}
	t.Logf("verify --against-log of the live store: %s", rep.Summary())
}

// liveSchemaOID is the OID of the PostgreSQL schema the live store's
// tables are in (0 for SQLite).
func (r *rig) liveSchemaOID(t *testing.T) uint32 {
	t.Helper()
	pg, ok := r.live.(*postgres.Store)
	if !ok {
		return 0
	}
	ctx := context.Background()
	schema, err := pg.Schema(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, r.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var oid uint32
	if err := conn.QueryRow(ctx, `SELECT oid FROM pg_namespace WHERE nspname = $1`, schema).Scan(&oid); err != nil {
		t.Fatal(err)
	}
	var left bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1 OR nspname = $2)`,
		schema+"_replaced", postgres.ShadowSchema(schema)).Scan(&left); err != nil || left {
		t.Errorf("a shadow or replaced schema is left beside %s (%v)", schema, err)
	}
	return oid
}

func (r *rig) api(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(api.Handler(api.Config{Store: r.live, AdminToken: token}))
	t.Cleanup(srv.Close)
	return srv
}

func get(url string, out any) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// While producers send and the live group folds, a shadow replay rebuilds
// the store and swaps it in: the API answers every request with the
// customers throughout, and afterwards the store holds exactly the fold
// of the log (nothing lost or doubled by the live group carrying on), with
// a customer planted in the live store alone gone.
func TestShadowReplayUnderLiveTraffic(t *testing.T) {
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			r := newRig(t, kind)
			rng := rand.New(rand.NewPCG(7, 11))
			r.produce(t, r.events(rng, 1500)...)
			stopLive, _ := r.member(t, nil)
			r.waitCaughtUp(t)
			planted := merge.Record{CustomerID: r.prefix + "_planted", Version: 1, UpdatedAt: base}
			if err := r.live.Apply(ctx, &store.Batch{Group: "elsewhere", Records: []merge.Record{planted}}); err != nil {
				t.Fatal(err)
			}
			srv := r.api(t)
			schemaOID := r.liveSchemaOID(t)

			// Live traffic and readers for the whole replay.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var reads, produced atomic.Int64
			var readErrs []error
			var errMu sync.Mutex
			wg.Add(2)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(3, 5))
				for {
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
					r.produce(t, r.events(rng, 10)...)
					produced.Add(10)
				}
			}()
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					var page api.Page[api.Customer]
					err := get(srv.URL+"/api/v1/customers?limit=500&q="+r.prefix, &page)
					if err == nil && len(page.Items) < len(r.ids) {
						err = fmt.Errorf("search gave %d customers, want at least %d", len(page.Items), len(r.ids))
					}
					var c api.Customer
					if err == nil {
						err = get(srv.URL+"/api/v1/customers/"+r.ids[reads.Load()%int64(len(r.ids))], &c)
					}
					if err == nil && len(c.Fields) == 0 {
						err = fmt.Errorf("customer %s has no fields", c.ID)
					}
					reads.Add(1)
					if err != nil {
						errMu.Lock()
						readErrs = append(readErrs, err)
						errMu.Unlock()
					}
					time.Sleep(5 * time.Millisecond)
				}
			}()

			var stopOnce sync.Once
			stopTraffic := func() { stopOnce.Do(func() { close(stop); wg.Wait() }) }
			t.Cleanup(stopTraffic)

			var progress atomic.Int64
			res, err := replay.Run(ctx, replay.Config{Kafka: r.k.Config(), Store: r.dsn, Group: r.group, Serde: r.serde,
				From: r.from, MaxBatch: 2000, Logger: zaptest.NewLogger(t).Named("replay"),
				Progress: func(done, total int64) { progress.Add(1) }, ProgressEvery: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond) // traffic after the swap
			stopTraffic()
			if !res.Swapped || res.Records < 1500 {
				t.Errorf("replay: swapped %v after folding %d records, want a swap after at least 1500", res.Swapped, res.Records)
			}
			t.Logf("replay folded %d records, verified the shadow (%s); %d produced meanwhile; %d API reads; %d progress reports", res.Records, res.Verified, produced.Load(), reads.Load(), progress.Load())
			if reads.Load() < 5 || produced.Load() == 0 || progress.Load() == 0 {
				t.Errorf("too little happened around the replay: %d reads, %d produced, %d progress reports", reads.Load(), produced.Load(), progress.Load())
			}
			for i, err := range readErrs {
				if i < 5 {
					t.Errorf("API read during the replay: %v", err)
				}
			}
			r.waitCaughtUp(t)
			if err := stopLive(); err != nil {
				t.Errorf("live member: %v", err)
			}
			if after := r.liveSchemaOID(t); kind == "postgres" && after == schemaOID {
				t.Errorf("the store's schema is still OID %d after the swap", after)
			}
			// The live member's and the API's pooled connections (pgx
			// prepares their statements) wrote and read the swapped-in
			// tables: the old ones are dropped, and the store holds all.
			r.checkFold(t, merge.DefaultPolicy())
			r.verifyLive(t, nil)
			if _, ok, err := r.live.Customer(ctx, planted.CustomerID); err != nil || ok {
				t.Errorf("the planted customer is still in the store after the swap (found %v, %v)", ok, err)
			}
		})
	}
}

// Operators replay to change the merge policy: a replay with another
// authority order builds a different store, verified against the log with
// the new policy; after the swap the API shows the new outcome, the
// members still on the old policy stop rather than mix policies, and
// members on the new one carry on.
func TestReplayWithNewPolicy(t *testing.T) {
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			r := newRig(t, kind)
			file := filepath.Join(t.TempDir(), "policy.yaml")
			if err := os.WriteFile(file, []byte("authority: [WEB, APP, CRM, AGENT, IMPORT, MINIPROGRAM, WECHAT, PHONE, UNKNOWN]\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			newPolicy, err := merge.LoadPolicy(file)
			if err != nil {
				t.Fatal(err)
			}
			// The CRM sets a phone; two hours later the web form sets
			// another: the CRM outranks the web by default, not in the
			// new policy.
			id := r.ids[0]
			phoneEvent := func(n int, ch events.Channel, phone string) *events.CustomerEvent {
				at := base.Add(time.Duration(n) * 2 * time.Hour)
				return &events.CustomerEvent{EventID: fmt.Sprintf("%s-p%d", id, n), CustomerID: id, Channel: ch, Source: "test/" + string(ch),
					Op: events.OpUpsert, OccurredAt: at, IngestedAt: at, Profile: &events.Profile{Phone: &phone}}
			}
			scenario := []any{phoneEvent(0, events.ChannelCRM, "+8613800000001"), phoneEvent(1, events.ChannelWeb, "+8613800000002")}
			outcome := func(p *merge.Policy) string {
				var rec merge.Record
				for _, e := range scenario {
					rec, _ = merge.Apply(rec, e.(*events.CustomerEvent), p)
				}
				return string(rec.Fields["phone"].Value)
			}
			before, after := outcome(merge.DefaultPolicy()), outcome(newPolicy)
			if before == after {
				t.Fatalf("the scenario gives phone %s under both policies; it must tell them apart", before)
			}
			r.produce(t, scenario...)
			r.produce(t, r.events(rand.New(rand.NewPCG(1, 2)), 300)...)
			stopOld, oldDone := r.member(t, nil)
			r.waitCaughtUp(t)
			srv := r.api(t)
			phone := func() (string, string) {
				var c api.Customer
				if err := get(srv.URL+"/api/v1/customers/"+id, &c); err != nil {
					t.Fatal(err)
				}
				return string(c.Fields["phone"].Value), c.PolicyHash
			}
			if got, _ := phone(); got != before {
				t.Fatalf("before the replay the API shows phone %s, want %s", got, before)
			}

			res, err := replay.Run(ctx, replay.Config{Kafka: r.k.Config(), Store: r.dsn, Group: r.group, Serde: r.serde,
				Policy: newPolicy, From: r.from, TempDir: t.TempDir(), Logger: zaptest.NewLogger(t).Named("replay")})
			if err != nil {
				t.Fatal(err)
			}
			if got, hash := phone(); got != after || hash != newPolicy.Hash() {
				t.Errorf("after the swap the API shows phone %s of policy %s, want %s of %s", got, hash, after, newPolicy.Hash())
			}
			t.Logf("phone %s became %s; shadow verified: %s", before, after, res.Verified)

			// The member on the old policy refuses the new store at its
			// next batch, writing nothing; one on the new policy carries on.
			r.produce(t, r.events(rand.New(rand.NewPCG(3, 4)), 50)...)
			select {
			case <-oldDone:
			case <-time.After(120 * time.Second):
				t.Fatal("the member on the old policy is still running after the swap")
			}
			if err := stopOld(); !errors.Is(err, materializer.ErrPolicyChanged) {
				t.Errorf("the member on the old policy ended with %v, want ErrPolicyChanged", err)
			}
			stopNew, _ := r.member(t, newPolicy)
			r.waitCaughtUp(t)
			if err := stopNew(); err != nil {
				t.Errorf("the member on the new policy: %v", err)
			}
			r.checkFold(t, newPolicy)
			r.verifyLive(t, newPolicy)
		})
	}
}

// openShadow opens the shadow an interrupted replay of the rig's store left.
func (r *rig) openShadow(t *testing.T) store.Store {
	t.Helper()
	ctx := context.Background()
	var sh store.Store
	var err error
	if path, ok := strings.CutPrefix(r.dsn, "sqlite:"); ok {
		if _, err := os.Stat(sqlite.ShadowPath(path)); err != nil {
			t.Fatalf("no shadow file after the interrupted replay: %v", err)
		}
		sh, err = sqlite.Open(ctx, sqlite.ShadowPath(path))
	} else {
		schema, serr := r.live.(*postgres.Store).Schema(ctx)
		if serr != nil {
			t.Fatal(serr)
		}
		sh, err = postgres.OpenSchema(ctx, r.dsn, postgres.ShadowSchema(schema))
	}
	if err != nil {
		t.Fatal(err)
	}
	return sh
}

// Interrupted, a replay leaves the live store untouched and its shadow in
// place; a re-run resumes the shadow, and one that does not verify is
// not swapped in; --restart starts over and swaps.
func TestReplayInterruptedResumesOrRestarts(t *testing.T) {
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			r := newRig(t, kind)
			r.produce(t, r.events(rand.New(rand.NewPCG(5, 6)), 1000)...)
			stopLive, _ := r.member(t, nil)
			r.waitCaughtUp(t)
			planted := merge.Record{CustomerID: r.prefix + "_planted", Version: 1, UpdatedAt: base}
			if err := r.live.Apply(ctx, &store.Batch{Group: "elsewhere", Records: []merge.Record{planted}}); err != nil {
				t.Fatal(err)
			}
			cfg := replay.Config{Kafka: r.k.Config(), Store: r.dsn, Group: r.group, Serde: r.serde, From: r.from,
				TempDir: t.TempDir(), MaxBatch: 100, ProgressEvery: 10 * time.Millisecond, Logger: zaptest.NewLogger(t).Named("replay")}

			// Ctrl-C once some of the log is folded.
			interrupted, cancel := context.WithCancel(ctx)
			cfg.Progress = func(done, total int64) {
				if done > 0 {
					cancel()
				}
			}
			if _, err := replay.Run(interrupted, cfg); !errors.Is(err, context.Canceled) {
				t.Fatalf("interrupted replay: %v, want context.Canceled", err)
			}
			cfg.Progress = nil
			if _, ok, err := r.live.Customer(ctx, planted.CustomerID); err != nil || !ok {
				t.Fatalf("the interrupted replay touched the live store: the planted customer is gone (%v)", err)
			}

			// A customer the log never had, slipped into the shadow: the
			// resumed shadow does not verify and is not swapped in.
			sh := r.openShadow(t)
			held, err := sh.Offsets(ctx, r.group)
			if err != nil {
				t.Fatal(err)
			}
			bogus := merge.Record{CustomerID: r.prefix + "_bogus", Version: 1, UpdatedAt: base}
			if err := sh.Apply(ctx, &store.Batch{Group: "elsewhere", Records: []merge.Record{bogus}}); err != nil {
				t.Fatal(err)
			}
			sh.Close()
			_, err = replay.Run(ctx, cfg)
			if !errors.Is(err, replay.ErrVerification) {
				t.Fatalf("resumed replay of a tampered shadow: %v, want ErrVerification", err)
			}
			if _, ok, err := r.live.Customer(ctx, planted.CustomerID); err != nil || !ok {
				t.Fatalf("the refused swap touched the live store: the planted customer is gone (%v)", err)
			}
			if _, ok, _ := r.live.Customer(ctx, bogus.CustomerID); ok {
				t.Fatal("the refused shadow's customer is in the live store")
			}
			t.Logf("interrupted at %v; the resumed shadow was refused: %v", held, err)

			cfg.Restart = true
			res, err := replay.Run(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Records < 1000 {
				t.Errorf("the restarted replay folded %d records, want all (at least 1000)", res.Records)
			}
			r.produce(t, r.events(rand.New(rand.NewPCG(7, 8)), 100)...)
			r.waitCaughtUp(t)
			if err := stopLive(); err != nil {
				t.Errorf("live member: %v", err)
			}
			r.checkFold(t, merge.DefaultPolicy())
			r.verifyLive(t, nil)
			if _, ok, _ := r.live.Customer(ctx, planted.CustomerID); ok {
				t.Error("the planted customer is still in the store after the swap")
			}
		})
	}
}

// In place, a replay empties the store and refolds it while the live
// group keeps running and producers keep sending: the two writers fence
// each other through the store's offsets, and the store ends as the fold
// of the log.
func TestReplayInPlace(t *testing.T) {
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			r := newRig(t, kind)
			r.produce(t, r.events(rand.New(rand.NewPCG(9, 10)), 800)...)
			stopLive, _ := r.member(t, nil)
			r.waitCaughtUp(t)
			planted := merge.Record{CustomerID: r.prefix + "_planted", Version: 1, UpdatedAt: base}
			if err := r.live.Apply(ctx, &store.Batch{Group: "elsewhere", Records: []merge.Record{planted}}); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(11, 12))
				for {
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
					r.produce(t, r.events(rng, 5)...)
				}
			}()
			res, err := replay.Run(ctx, replay.Config{Kafka: r.k.Config(), Store: r.dsn, Group: r.group, Serde: r.serde,
				From: r.from, InPlace: true, MaxBatch: 100, Logger: zaptest.NewLogger(t).Named("replay")})
			time.Sleep(300 * time.Millisecond)
			close(stop)
			wg.Wait()
			if err != nil {
				t.Fatal(err)
			}
			if res.Records < 800 {
				t.Errorf("the in-place replay folded %d records, want at least 800", res.Records)
			}
			r.waitCaughtUp(t)
			if err := stopLive(); err != nil {
				t.Errorf("live member: %v", err)
			}
			r.checkFold(t, merge.DefaultPolicy())
			r.verifyLive(t, nil)
			if _, ok, _ := r.live.Customer(ctx, planted.CustomerID); ok {
				t.Error("the planted customer survived the in-place replay")
			}
		})
	}
}

// --to-offsets end folds past the live group, to the log's end: members
// that find the store ahead of them resume from the store's offsets.
func TestReplayToEnd(t *testing.T) {
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			r := newRig(t, kind)
			r.produce(t, r.events(rand.New(rand.NewPCG(13, 14)), 300)...)
			stopLive, _ := r.member(t, nil)
			r.waitCaughtUp(t)
			if err := stopLive(); err != nil {
				t.Fatal(err)
			}
			// The group is stopped; the log moves on.
			r.produce(t, r.events(rand.New(rand.NewPCG(15, 16)), 300)...)
			before, err := r.live.Offsets(ctx, r.group)
			if err != nil {
				t.Fatal(err)
			}
			// The API's accounts are not the log's: the swap keeps them.
			agent := store.Account{Name: "ana", Role: "agent", CreatedAt: time.UnixMilli(1e12).UTC()}
			if err := r.live.(store.Accounts).CreateAccount(ctx, agent); err != nil {
				t.Fatal(err)
			}
			end := endOffsets(t, r.k)
			res, err := replay.Run(ctx, replay.Config{Kafka: r.k.Config(), Store: r.dsn, Group: r.group, Serde: r.serde,
				From: r.from, ToEnd: true, TempDir: t.TempDir(), Logger: zaptest.NewLogger(t).Named("replay")})
			if err != nil {
				t.Fatal(err)
			}
			if got, ok, err := r.live.(store.Accounts).Account(ctx, "ana"); err != nil || !ok || got != agent {
				t.Errorf("account after the swap: %+v, %v, %v; want %+v", got, ok, err, agent)
			}
			if !store.Covers(res.Offsets, end) || store.Covers(before, end) {
				t.Fatalf("the replay to the end swapped in offsets %v; the log ended at %v, the group was at %v", res.Offsets, end, before)
			}
			stopLive, _ = r.member(t, nil)
			r.produce(t, r.events(rand.New(rand.NewPCG(17, 18)), 50)...)
			r.waitCaughtUp(t)
			if err := stopLive(); err != nil {
				t.Errorf("live member: %v", err)
			}
			r.checkFold(t, merge.DefaultPolicy())
			r.verifyLive(t, nil)
		})
	}
}
