package materializer_test

import (
	"context"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"github.com/omnisync/omnisync/consumers/materializer"
	"github.com/omnisync/omnisync/consumers/store/postgres"
	"github.com/omnisync/omnisync/internal/testenv"
)

// A member whose PostgreSQL store goes away keeps retrying, says the store
// is unavailable (StoreErr, omnisync_materializer_store_up 0) and applies
// everything produced meanwhile within 5 s of the store's return.
func TestStoreOutageResumesWithinSeconds(t *testing.T) {
	dsn := testenv.Postgres(t)
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		r := newRig(t, k)
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		proxy := testenv.StartOutageProxy(t, u.Host)
		proxied := *u
		proxied.Host = proxy.Addr()
		ctx := context.Background()
		direct, err := postgres.Open(ctx, dsn) // the test's own view, not through the proxy
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { direct.Close() })
		st, err := postgres.Open(ctx, proxied.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })

		group := testenv.UniqueName(t, "outage")
		r.startAtEnd(t, direct, group)
		reg := prometheus.NewRegistry()
		m, err := materializer.New(materializer.Config{Kafka: r.k.Config(), Group: group, Store: st, Serde: r.serde,
			Logger: zaptest.NewLogger(t), Metrics: materializer.NewMetrics(reg, group)})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- m.Run(runCtx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("materializer: %v", err)
			}
		})
		storeUp := func() float64 {
			t.Helper()
			v, err := testutil.GatherAndCount(reg, "omnisync_materializer_store_up")
			if err != nil || v != 1 {
				t.Fatalf("omnisync_materializer_store_up: %d series (%v), want 1", v, err)
			}
			fams, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range fams {
				if f.GetName() == "omnisync_materializer_store_up" {
					return f.GetMetric()[0].GetGauge().GetValue()
				}
			}
			return -1
		}

		stream := randomStream(rand.New(rand.NewPCG(3, 5)), customers(t, 12), 400)
		r.produce(t, stream[:200]...)
		waitCaughtUp(t, direct, group, r.endOffsets(t), 90*time.Second)
		if up := storeUp(); up != 1 {
			t.Fatalf("store_up %v while the store answers, want 1", up)
		}

		proxy.SetDown(true)
		r.produce(t, stream[200:]...)
		ends := r.endOffsets(t)
		deadline := time.Now().Add(30 * time.Second)
		for m.StoreErr() == nil || storeUp() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("30 s into the outage: StoreErr %v, store_up %v; want an error and 0", m.StoreErr(), storeUp())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := m.StoreErr(); !strings.Contains(err.Error(), "store unavailable") {
			t.Errorf("StoreErr = %q, want it to say store unavailable", err)
		}
		time.Sleep(8 * time.Second) // long enough for the backoff to reach its cap

		proxy.SetDown(false)
		back := time.Now()
		waitCaughtUp(t, direct, group, ends, 60*time.Second)
		resumed := time.Since(back)
		t.Logf("store back: everything produced during the outage applied %s later", resumed.Round(time.Millisecond))
		if resumed > 5*time.Second {
			t.Errorf("consumption resumed %s after the store's return, want at most 5s", resumed.Round(time.Millisecond))
		}
		if err := m.StoreErr(); err != nil || storeUp() != 1 {
			t.Errorf("after the outage: StoreErr %v, store_up %v; want nil and 1", err, storeUp())
		}
		want, wantMessages := expected(stream)
		checkStore(t, direct, want, wantMessages)
	})
}
