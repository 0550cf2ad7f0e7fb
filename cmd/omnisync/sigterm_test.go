package main

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/consumers/store/postgres"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/schemas"
)

// Two `omnisync consume` processes of one group into PostgreSQL; one gets
// SIGTERM. It must leave the group on its way out (the command waits for
// the materializer before it exits), so the coordinator hands all
// partitions to the other at once instead of after the session timeout.
// A member killed with SIGKILL is evicted after the session timeout.
func TestConsumeSIGTERMHandsOverWithinSeconds(t *testing.T) {
	dsn := testenv.Postgres(t)
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		ctx := context.Background()
		cl, err := kafka.NewClient(k.Config())
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		adm := kadm.NewClient(cl)
		if _, err := kafka.Provision(ctx, adm, kafka.Layout{Partitions: 6}.Topics()); err != nil {
			t.Fatal(err)
		}
		_, registryURL := testenv.Registry(t)

		// The group starts where the topics end now: the members read no
		// other test's records.
		group := testenv.UniqueName(t, "sigterm")
		ends := map[string]map[int32]int64{}
		partitions := 0
		for topic, parts := range testenv.EndOffsets(t, cl, schemas.CustomerEventsTopic, schemas.CustomerMessagesTopic) {
			ends[topic] = map[int32]int64{}
			for p, o := range parts {
				ends[topic][p] = o.EpochOffset().Offset
				partitions++
			}
		}
		st, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Apply(ctx, &store.Batch{Group: group, Offsets: ends}); err != nil {
			t.Fatal(err)
		}
		st.Close()

		dir := t.TempDir()
		env := []string{"OMNISYNC_KAFKA_BROKERS=" + k.Brokers[0]}
		member := func(name string) *os.Process {
			addr := testenv.FreeAddr(t)
			return startService(t, dir, name, addr, true, env, "consume", "--group", group, "--store", dsn,
				"--registry", registryURL, "--listen", addr).Process
		}
		// assigned is the coordinator's view: each member's partitions.
		assigned := func() (state string, members map[string]map[string][]int32) {
			described, err := adm.DescribeGroups(ctx, group)
			if err != nil {
				return err.Error(), nil
			}
			g := described[group]
			members = map[string]map[string][]int32{}
			for _, m := range g.Members {
				members[m.MemberID] = map[string][]int32{}
				if c, ok := m.Assigned.AsConsumer(); ok {
					for _, tp := range c.Topics {
						members[m.MemberID][tp.Topic] = tp.Partitions
					}
				}
			}
			return g.State, members
		}
		owning := func(members map[string]map[string][]int32) int {
			n := 0
			for _, topics := range members {
				for _, ps := range topics {
					n += len(ps)
				}
			}
			return n
		}
		waitFor := func(what string, timeout time.Duration, cond func(state string, members map[string]map[string][]int32) bool) time.Duration {
			t.Helper()
			start := time.Now()
			for {
				state, members := assigned()
				if cond(state, members) {
					return time.Since(start)
				}
				if time.Since(start) > timeout {
					t.Fatalf("%s: not within %s; group %s, members %v", what, timeout, state, members)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}

		member("consume-a")
		b := member("consume-b")
		waitFor("two members owning every partition", 90*time.Second, func(state string, members map[string]map[string][]int32) bool {
			return state == "Stable" && len(members) == 2 && owning(members) == partitions
		})
		_, members := assigned()
		for id, topics := range members {
			events, messages := slices.Clone(topics[schemas.CustomerEventsTopic]), slices.Clone(topics[schemas.CustomerMessagesTopic])
			slices.Sort(events)
			slices.Sort(messages)
			if !slices.Equal(events, messages) {
				t.Errorf("member %s owns events partitions %v but messages partitions %v", id, events, messages)
			}
		}

		// SIGTERM: the member leaves. Then a third member joins and is
		// killed (SIGKILL): it cannot leave, and the coordinator evicts it
		// after the session timeout.
		stop := func(p *os.Process, name string, sig syscall.Signal) (time.Duration, *os.ProcessState) {
			t.Helper()
			signal := map[syscall.Signal]string{syscall.SIGTERM: "SIGTERM", syscall.SIGKILL: "SIGKILL"}[sig]
			start := time.Now()
			if err := p.Signal(sig); err != nil {
				t.Fatal(err)
			}
			exited := make(chan *os.ProcessState, 1)
			go func() { ps, _ := p.Wait(); exited <- ps }()
			waitFor("the other member owning every partition after "+signal+" to "+name, 60*time.Second,
				func(state string, members map[string]map[string][]int32) bool {
					return state == "Stable" && len(members) == 1 && owning(members) == partitions
				})
			took := time.Since(start)
			select {
			case ps := <-exited:
				t.Logf("%s to %s: the other member owned all %d partitions %s later (%s exited: %v)",
					signal, name, partitions, took.Round(time.Millisecond), name, ps)
				return took, ps
			case <-time.After(30 * time.Second):
				t.Fatalf("%s still runs 30 s after %s", name, signal)
			}
			return 0, nil
		}
		took, ps := stop(b, "consume-b", syscall.SIGTERM)
		if !ps.Success() {
			b, _ := os.ReadFile(filepath.Join(dir, "consume-b.log"))
			t.Errorf("consume-b exited with %v after SIGTERM; its log:\n%s", ps, b)
		}
		if took > 5*time.Second {
			t.Errorf("the other member owned every partition %s after SIGTERM, want at most 5s (the session timeout is %s: did the member leave the group?)",
				took.Round(time.Millisecond), kafka.GroupSessionTimeout)
		}

		c := member("consume-c")
		waitFor("two members owning every partition again", 90*time.Second, func(state string, members map[string]map[string][]int32) bool {
			return state == "Stable" && len(members) == 2 && owning(members) == partitions
		})
		took, _ = stop(c, "consume-c", syscall.SIGKILL)
		if limit := kafka.GroupSessionTimeout + 5*time.Second; took > limit {
			t.Errorf("the other member owned every partition %s after SIGKILL, want at most %s (session timeout + 5s)", took.Round(time.Millisecond), limit)
		}
	})
}

// While its PostgreSQL store is cut off, `omnisync consume --listen`
// answers /readyz with 503 naming the store as unavailable, and 200 again
// within seconds of its return.
func TestConsumeReadyzNamesStoreOutage(t *testing.T) {
	dsn := testenv.Postgres(t)
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		proxy := testenv.StartOutageProxy(t, u.Host)
		proxied := *u
		proxied.Host = proxy.Addr()
		_, registryURL := testenv.Registry(t)
		addr := testenv.FreeAddr(t)
		startService(t, t.TempDir(), "consume", addr, true, []string{"OMNISYNC_KAFKA_BROKERS=" + k.Brokers[0]},
			"consume", "--group", testenv.UniqueName(t, "readyz"), "--store", proxied.String(), "--registry", registryURL, "--listen", addr)
		readyz := func() (int, string) {
			resp, err := http.Get("http://" + addr + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		until := func(what string, cond func(int, string) bool) time.Duration {
			t.Helper()
			start := time.Now()
			for {
				code, body := readyz()
				if cond(code, body) {
					return time.Since(start)
				}
				if time.Since(start) > 30*time.Second {
					t.Fatalf("%s: not within 30s; /readyz %d %s", what, code, body)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}

		proxy.SetDown(true)
		until("/readyz answering 503 naming the store", func(code int, body string) bool {
			return code == http.StatusServiceUnavailable && strings.Contains(body, `"store":"store unavailable: `)
		})
		proxy.SetDown(false)
		took := until("/readyz answering 200", func(code int, _ string) bool { return code == http.StatusOK })
		t.Logf("store back: /readyz answered 200 %s later", took.Round(time.Millisecond))
		if took > 5*time.Second {
			t.Errorf("/readyz answered 200 %s after the store's return, want at most 5s", took.Round(time.Millisecond))
		}
	})
}
