package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/omnisync/omnisync/api"
	"github.com/omnisync/omnisync/internal/demo"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/schemas"
)

// startService runs one omnisync command as its own process, as
// docker-compose.yml does, and waits until it listens on addr (and, when
// ready is set, until addr answers /readyz). The process gets SIGINT when
// the test ends, unless the test waited for it before.
func startService(t *testing.T, logDir, name, addr string, ready bool, env []string, args ...string) *exec.Cmd {
	t.Helper()
	log, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testenv.Binary(t), append(args, "--log-level", "warn")...)
	cmd.Stdout, cmd.Stderr, cmd.Env = log, log, append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		log.Close()
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok := false
		if ready {
			if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
				resp.Body.Close()
				ok = resp.StatusCode == http.StatusOK
			}
		} else if c, err := (&net.Dialer{}).Dial("tcp", addr); err == nil {
			c.Close()
			ok = true
		}
		if ok {
			return cmd
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(log.Name())
			t.Fatalf("%s not ready on %s after 60 s; its log:\n%s", name, addr, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestServicesOnPostgres runs the production shape of docker-compose.yml
// as separate processes on one machine — broker, schema registry, the
// channel producers, a materializer into the real PostgreSQL publishing
// state, a forwarder to a target system, and the API — feeds it through
// the ingest endpoints, and checks what agents and the target see.
func TestServicesOnPostgres(t *testing.T) {
	dsn := testenv.Postgres(t)
	dir := t.TempDir()
	brokerAddr, registryAddr, producerAddr := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	consumeAddr, forwardAddr, apiAddr := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	registryURL := "http://" + registryAddr

	// The target system: records each delivery, answers 503 to the first.
	var mu sync.Mutex
	delivered := map[string]int64{} // customer ID → newest version delivered
	first := true
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			CustomerID string `json:"customer_id"`
			Version    int64  `json:"version"`
		}
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if first {
			first = false
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if err := json.Unmarshal(b, &body); err != nil || body.CustomerID == "" || r.Header.Get("Authorization") != "Bearer target-token" {
			t.Errorf("target got %s (auth %q): %v", b, r.Header.Get("Authorization"), err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		delivered[body.CustomerID] = max(delivered[body.CustomerID], body.Version)
	}))
	defer target.Close()

	var creds ingest.Credentials
	creds.AdminToken = "admin-token"
	creds.Channels.Web.Key, creds.Channels.App.Key, creds.Channels.Phone.Key = "web-key", "app-key", "phone-key"
	creds.Channels.Web.IdentitySecret, creds.Channels.App.IdentitySecret = "web-identity-secret", "app-identity-secret"
	creds.Channels.WeChat = ingest.WeChatCredential{AppID: "wx-oa", Token: "wechat-token"}
	creds.Channels.MiniProgram = ingest.WeChatCredential{AppID: "wx-mp", Token: "mini-token"}
	env := []string{"OMNISYNC_KAFKA_BROKERS=" + brokerAddr, "OMNISYNC_ADMIN_TOKEN=admin-token",
		"OMNISYNC_WEB_KEY=web-key", "OMNISYNC_APP_KEY=app-key", "OMNISYNC_PHONE_KEY=phone-key",
		"OMNISYNC_WEB_IDENTITY_SECRET=web-identity-secret", "OMNISYNC_APP_IDENTITY_SECRET=app-identity-secret",
		"OMNISYNC_WECHAT_APP_ID=wx-oa", "OMNISYNC_WECHAT_TOKEN=wechat-token",
		"OMNISYNC_MINIPROGRAM_APP_ID=wx-mp", "OMNISYNC_MINIPROGRAM_TOKEN=mini-token",
		"OMNISYNC_FORWARD_TOKEN=target-token"}

	startService(t, dir, "broker", brokerAddr, false, env, "broker", "--data-dir", filepath.Join(dir, "broker"), "--listen", brokerAddr)
	topics := exec.Command(testenv.Binary(t), "topics", "create", "--brokers", brokerAddr, "--partitions", "6")
	if out, err := topics.CombinedOutput(); err != nil {
		t.Fatalf("omnisync topics create: %v\n%s", err, out)
	}
	startService(t, dir, "registry", registryAddr, false, env, "registry", "--listen", registryAddr)
	startService(t, dir, "produce", producerAddr, true, env, "produce", "--channel", "all", "--listen", producerAddr, "--registry", registryURL)
	startService(t, dir, "consume", consumeAddr, true, env, "consume", "--group", "omnisync-postgres", "--store", dsn,
		"--publish-state", "--registry", registryURL, "--listen", consumeAddr)
	startService(t, dir, "forward", forwardAddr, true, env, "forward", "--target", target.URL, "--group", "omnisync-forward-test",
		"--registry", registryURL, "--listen", forwardAddr)
	startService(t, dir, "api", apiAddr, true, env, "api", "--store", dsn, "--http", apiAddr, "--registry", registryURL,
		"--scrape", "http://"+producerAddr+"/metrics,http://"+consumeAddr+"/metrics")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := kafka.NewClient(kafka.Config{Brokers: []string{brokerAddr}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	serde, err := newSerde(ctx, registryURL)
	if err != nil {
		t.Fatal(err)
	}
	if err := demo.Run(ctx, demo.Config{BaseURL: "http://" + producerAddr, Credentials: creds,
		CRM: api.KafkaPublisher{Client: cl, Serde: serde}, SeededMarker: filepath.Join(dir, "seeded")}); err != nil {
		t.Fatal(err)
	}

	agent := &devProcess{http: "http://" + apiAddr, adminToken: "admin-token"}
	var queue api.Page[api.Conflict]
	eventually(t, "the review queue in PostgreSQL", func() string {
		agent.get(t, "/api/v1/conflicts", &queue)
		if len(queue.Items) != 5 {
			return fmt.Sprintf("%d open conflicts, want 5", len(queue.Items))
		}
		return ""
	})
	liNa, ok := agent.customer(t, demo.LiNa.Name)
	if !ok || len(agent.timeline(t, liNa.ID)) != 9 {
		t.Fatalf("李娜 through the API on PostgreSQL: found %v, timeline %d messages, want 9", ok, len(agent.timeline(t, liNa.ID)))
	}
	if code := agent.do(t, http.MethodPost, "/api/v1/conflicts/"+liNa.Conflicts[0].ID+"/resolve",
		api.ResolveRequest{Choice: "set_value", Value: ptr("139-0000-1111")}, nil); code != http.StatusAccepted {
		t.Fatalf("resolve: %d", code)
	}
	var resolved api.Customer
	eventually(t, "the resolution in PostgreSQL", func() string {
		resolved, _ = agent.customer(t, demo.LiNa.Name)
		if string(resolved.Fields["phone"].Value) != `"+8613900001111"` || resolved.Fields["phone"].Channel != "AGENT" {
			return fmt.Sprintf("phone %s from %s", resolved.Fields["phone"].Value, resolved.Fields["phone"].Channel)
		}
		return ""
	})
	// The API, running apart, reports on the producers and the materializer.
	var status api.SyncStatus
	eventually(t, "the sync status of the other services", func() string {
		agent.get(t, "/api/v1/sync/status", &status)
		requests := 0.0
		for _, c := range status.Channels {
			requests += c.Requests
		}
		for _, g := range status.Groups {
			if g.Group == "omnisync-postgres" && g.ApplyRate > 0 && g.EndToEndLatencyMS.P99 != nil && requests >= 10 && len(status.Errors) == 0 {
				return ""
			}
		}
		return fmt.Sprintf("%+v", status)
	})
	// Each service's own Kafka clients report on its /metrics.
	for url, metric := range map[string]string{"http://" + producerAddr + "/metrics": "omnisync_kafka_produce_bytes_total",
		"http://" + consumeAddr + "/metrics": "omnisync_kafka_fetch_bytes_total"} {
		if v, ok := kafkaMetric(t, url, metric, schemas.CustomerEventsTopic); !ok || v <= 0 {
			t.Errorf("%s: %s for %s is %v (found %v), want bytes", url, metric, schemas.CustomerEventsTopic, v, ok)
		}
	}
	// The target system ends with every customer at the version agents see.
	eventually(t, "the forwarder delivering the merged records", func() string {
		var page api.Page[api.CustomerSummary]
		agent.get(t, "/api/v1/customers?limit=100", &page)
		mu.Lock()
		defer mu.Unlock()
		if len(page.Items) < 8 {
			return fmt.Sprintf("%d customers in the API", len(page.Items))
		}
		for _, c := range page.Items {
			if delivered[c.ID] != c.Version {
				return fmt.Sprintf("customer %s: target has version %d, the store %d", c.ID, delivered[c.ID], c.Version)
			}
		}
		return ""
	})
}

func ptr[T any](v T) *T { return &v }
