package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/omnisync/omnisync/api"
	"github.com/omnisync/omnisync/internal/demo"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/pkg/registry"
	"github.com/omnisync/omnisync/producers"
	"github.com/omnisync/omnisync/producers/ingest"
	"github.com/omnisync/omnisync/producers/wechat"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// devProcess is a running `omnisync dev`.
type devProcess struct {
	cmd                   *exec.Cmd
	http, kafka, registry string
	client                *http.Client // default http.DefaultClient
	log                   string       // its output, the banner included
	adminToken            string
	credentials           ingest.Credentials
}

// startDev starts `omnisync dev` with extra flags; given a client TLS
// configuration, it talks HTTPS to it (pass --tls-cert and --tls-key).
// seedDemo plays the demo's scenario into dev through its channel
// endpoints, with CRM edits published straight to its Kafka, and returns
// that CRM publisher (its client closes when the test ends).
func seedDemo(t *testing.T, dev *devProcess, root string) api.KafkaPublisher {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := kafka.NewClient(kafka.Config{Brokers: []string{dev.kafka}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	reg, err := registry.New([]string{dev.registry})
	if err != nil {
		t.Fatal(err)
	}
	serde, err := codec.New(ctx, reg)
	if err != nil {
		t.Fatal(err)
	}
	crm := api.KafkaPublisher{Client: cl, Serde: serde}
	if err := demo.Run(ctx, demo.Config{BaseURL: dev.http, Credentials: dev.credentials, CRM: crm, SeededMarker: filepath.Join(root, "seeded")}); err != nil {
		t.Fatal(err)
	}
	return crm
}

func startDev(t *testing.T, dataDir string, addrs [3]string, clientTLS *tls.Config, args ...string) *devProcess {
	t.Helper()
	cmd := exec.Command(testenv.Binary(t), append([]string{"dev", "--data-dir", dataDir, "--http", addrs[0], "--kafka-listen", addrs[1],
		"--registry-listen", addrs[2], "--log-level", "warn"}, args...)...)
	log, err := os.OpenFile(filepath.Join(dataDir, "..", "dev.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	scheme, client := "http://", http.DefaultClient
	if clientTLS != nil {
		scheme, client = "https://", &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS}}
	}
	p := &devProcess{cmd: cmd, http: scheme + addrs[0], kafka: addrs[1], registry: scheme + addrs[2], client: client, log: log.Name()}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := client.Get(p.http + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(log.Name())
			t.Fatalf("omnisync dev not ready after 90 s; its log:\n%s", b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if p.credentials, err = ingest.LoadCredentials(filepath.Join(dataDir, "credentials.json")); err != nil {
		t.Fatal(err)
	}
	p.adminToken = p.credentials.AdminToken
	return p
}

// stop interrupts the process as Ctrl-C does and expects a clean exit.
func (p *devProcess) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("omnisync dev did not exit cleanly on SIGINT: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("omnisync dev still running 30 s after SIGINT")
	}
}

// get fetches an API path into v and returns the status code.
func (p *devProcess) get(t *testing.T, path string, v any) int {
	t.Helper()
	return p.do(t, http.MethodGet, path, nil, v)
}

func (p *devProcess) do(t *testing.T, method, path string, body any, v any) int {
	t.Helper()
	var in io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		in = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, p.http+path, in)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+p.adminToken)
	client := p.client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if v != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

// eventually retries check until it returns "" or the time is up.
func eventually(t *testing.T, what string, check func() string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		why := check()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s", what, why)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func (p *devProcess) customer(t *testing.T, q string) (api.Customer, bool) {
	var page api.Page[api.CustomerSummary]
	if code := p.get(t, "/api/v1/customers?q="+url.QueryEscape(q), &page); code != http.StatusOK || len(page.Items) != 1 {
		return api.Customer{}, false
	}
	var c api.Customer
	return c, p.get(t, "/api/v1/customers/"+page.Items[0].ID, &c) == http.StatusOK
}

func (p *devProcess) timeline(t *testing.T, id string) []api.Message {
	var all []api.Message
	cursor := ""
	for {
		var page api.Page[api.Message]
		if code := p.get(t, "/api/v1/customers/"+id+"/timeline?limit=3&cursor="+cursor, &page); code != http.StatusOK {
			t.Fatalf("timeline of %s: %d", id, code)
		}
		all = append(all, page.Items...)
		if cursor = page.NextCursor; cursor == "" {
			return all
		}
	}
}

// snapshot is everything the API says about every customer.
func (p *devProcess) snapshot(t *testing.T) []byte {
	t.Helper()
	var out bytes.Buffer
	cursor := ""
	for {
		var page api.Page[api.CustomerSummary]
		if code := p.get(t, "/api/v1/customers?limit=2&cursor="+cursor, &page); code != http.StatusOK {
			t.Fatalf("listing customers: %d", code)
		}
		for _, s := range page.Items {
			var c api.Customer
			p.get(t, "/api/v1/customers/"+s.ID, &c)
			b, _ := json.Marshal(struct {
				Customer api.Customer
				Timeline []api.Message
			}{c, p.timeline(t, s.ID)})
			out.Write(append(b, '\n'))
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	var conflicts api.Page[api.Conflict]
	p.get(t, "/api/v1/conflicts?status=all&limit=500", &conflicts)
	b, _ := json.Marshal(conflicts)
	out.Write(b)
	return out.Bytes()
}

// TestDevEndToEnd runs `omnisync dev` as a user does: posts to all five
// ingest endpoints with the generated credentials (and a CRM edit straight
// to Kafka), reads the merged customers, their conflicts and timelines
// through the API, resolves a conflict, restarts, and finds the same data.
func TestDevEndToEnd(t *testing.T) {
	root := t.TempDir()
	dataDir := filepath.Join(root, "data")
	addrs := [3]string{testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)}
	dev := startDev(t, dataDir, addrs, nil)
	if code := dev.get(t, "/api/v1/customers", nil); code != http.StatusOK {
		t.Fatalf("API with the generated admin token: %d", code)
	}
	req, _ := http.NewRequest(http.MethodGet, dev.http+"/api/v1/customers", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("API without a token: %v %v", resp.Status, err)
	}
	// The WeChat channels run in safe mode: a key each, plain pushes refused
	// (the demo below sends encrypted ones).
	for name, cred := range map[string]ingest.WeChatCredential{"wechat": dev.credentials.Channels.WeChat, "miniprogram": dev.credentials.Channels.MiniProgram} {
		if len(cred.EncodingAESKey) != 43 {
			t.Fatalf("%s: generated EncodingAESKey %q, want 43 characters", name, cred.EncodingAESKey)
		}
		ts, nonce := strconv.FormatInt(time.Now().Unix(), 10), "dev-plain"
		resp, err := http.Post(dev.http+"/ingest/"+name+"?"+url.Values{"signature": {wechat.Sign(cred.Token, ts, nonce)}, "timestamp": {ts}, "nonce": {nonce}}.Encode(),
			"text/plain", strings.NewReader("plain"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s: a plain push in safe mode: %s, want 401", name, resp.Status)
		}
	}

	seedDemo(t, dev, root)

	// 李娜: app profile and chat, web chat, a phone call found by her number,
	// and a web write of another phone number held for review.
	var liNa api.Customer
	eventually(t, "李娜's merged record", func() string {
		c, ok := dev.customer(t, demo.LiNa.Name)
		if !ok {
			return "not found by name"
		}
		liNa = c
		var channels []string
		for _, m := range dev.timeline(t, c.ID) {
			if !slices.Contains(channels, m.Channel) {
				channels = append(channels, m.Channel)
			}
		}
		if len(channels) != 3 || len(c.Conflicts) != 1 {
			return fmt.Sprintf("timeline channels %v, %d conflicts", channels, len(c.Conflicts))
		}
		return ""
	})
	if got := string(liNa.Fields["phone"].Value); got != `"+8613800138000"` || liNa.Fields["phone"].Channel != "APP" {
		t.Errorf("李娜's phone = %s from %s, want the app's +8613800138000 kept", got, liNa.Fields["phone"].Channel)
	}
	if c := liNa.Conflicts[0]; c.Field != "phone" || string(c.Candidate) != `"+8613911112222"` || c.CandidateChannel != "WEB" || c.Status != "OPEN" {
		t.Errorf("李娜's conflict = %+v", c)
	}
	calls := 0
	for _, m := range dev.timeline(t, liNa.ID) {
		if m.ContentType == "TRANSCRIPT" && m.Transcript != nil && m.Transcript.CallID == "call-demo-ln-1" {
			calls++
		}
	}
	if calls != 4 {
		t.Errorf("李娜's call has %d transcript segments on her timeline, want 4", calls)
	}
	// 张伟: the CRM outranks the web for his e-mail.
	eventually(t, "张伟's CRM edit", func() string {
		c, ok := dev.customer(t, demo.ZhangWei.Name)
		if !ok || c.Fields["email"].Channel != "CRM" || string(c.Fields["email"].Value) != `"zhangwei@example.cn"` {
			return fmt.Sprintf("e-mail %+v", c.Fields["email"])
		}
		return ""
	})
	// 陈静: the official account and the mini-program (one unionid), the
	// CRM's name, the app, the web and a call, all on one customer.
	eventually(t, "陈静 on every channel", func() string {
		c, ok := dev.customer(t, demo.ChenJing.Name)
		if !ok || c.ID != demo.ChenJing.ID() {
			return fmt.Sprintf("found %v as %s, want %s", ok, c.ID, demo.ChenJing.ID())
		}
		var channels []string
		for _, m := range dev.timeline(t, c.ID) {
			if !slices.Contains(channels, m.Channel) {
				channels = append(channels, m.Channel)
			}
		}
		slices.Sort(channels)
		if strings.Join(channels, ",") != "APP,MINIPROGRAM,PHONE,WEB,WECHAT" || c.Fields["name"].Channel != "CRM" {
			return fmt.Sprintf("timeline channels %v, name from %s", channels, c.Fields["name"].Channel)
		}
		return ""
	})
	// WeChat and mini-program customers, found by their openids.
	eventually(t, "WeChat and mini-program customers", func() string {
		for _, openid := range []string{demo.LiuYang.WeChat.OpenID, demo.ChenJing.WeChat.OpenID, demo.LiuYang.WeChat.MiniOpenID, demo.ChenJing.WeChat.MiniOpenID} {
			c, ok := dev.customer(t, openid)
			if !ok {
				return "no customer with openid " + openid
			}
			if len(dev.timeline(t, c.ID)) == 0 {
				return "no messages for openid " + openid
			}
		}
		return ""
	})
	// 刘洋: the official account, the mini-program, an app account merged
	// by his WeChat login, and calls from his number: one customer.
	eventually(t, "刘洋 as one customer", func() string {
		c, ok := dev.customer(t, demo.LiuYang.Name)
		if !ok {
			return "no customer named " + demo.LiuYang.Name
		}
		var channels []string
		for _, m := range dev.timeline(t, c.ID) {
			if !slices.Contains(channels, m.Channel) {
				channels = append(channels, m.Channel)
			}
		}
		slices.Sort(channels)
		if strings.Join(channels, ",") != "APP,MINIPROGRAM,PHONE,WECHAT" || len(c.AlsoKnownAs) != 1 || c.AlsoKnownAs[0].DecidedBy != "policy/wechat_unionid" {
			return fmt.Sprintf("timeline channels %v, also known as %+v", channels, c.AlsoKnownAs)
		}
		return ""
	})
	var queue api.Page[api.Conflict]
	eventually(t, "the review queue", func() string {
		dev.get(t, "/api/v1/conflicts", &queue)
		if len(queue.Items) != 5 {
			return fmt.Sprintf("%d open conflicts, want 5 (李娜's phone, Wang's e-mail, David's order number, 陈静's e-mail, 陈静 and an earlier caller with her number)", len(queue.Items))
		}
		return ""
	})
	if !slices.ContainsFunc(queue.Items, func(c api.Conflict) bool {
		return c.Field == "merge" && c.CustomerID == demo.ChenJing.ID() && c.CandidateChannel == "PHONE"
	}) {
		t.Errorf("no merge suggestion for 陈静 in the review queue: %+v", queue.Items)
	}

	// An agent takes the web's number; the materializer applies the RESOLVE.
	var accepted api.ResolveAccepted
	if code := dev.do(t, http.MethodPost, "/api/v1/conflicts/"+liNa.Conflicts[0].ID+"/resolve",
		api.ResolveRequest{Choice: "take_candidate"}, &accepted); code != http.StatusAccepted {
		t.Fatalf("resolve: %d", code)
	}
	eventually(t, "the resolution applied", func() string {
		c, _ := dev.customer(t, demo.LiNa.Name)
		if string(c.Fields["phone"].Value) != `"+8613911112222"` || c.Conflicts[0].Status != "TOOK_CANDIDATE" || c.NeedsReview {
			return fmt.Sprintf("phone %s, conflict %s", c.Fields["phone"].Value, c.Conflicts[0].Status)
		}
		return ""
	})
	if code := dev.do(t, http.MethodPost, "/api/v1/conflicts/"+liNa.Conflicts[0].ID+"/resolve",
		api.ResolveRequest{Choice: "keep_current"}, nil); code != http.StatusConflict {
		t.Errorf("resolving a resolved conflict: %d, want 409", code)
	}
	var status api.SyncStatus
	dev.get(t, "/api/v1/sync/status", &status)
	if len(status.Channels) != len(producers.Names()) || len(status.Groups) == 0 || status.Groups[0].Lag == nil {
		t.Errorf("sync status: %+v", status)
	}

	before, creds := dev.snapshot(t), dev.credentials
	dev.stop(t)
	dev = startDev(t, dataDir, addrs, nil)
	if !reflect.DeepEqual(dev.credentials, creds) {
		t.Fatal("the credentials changed across a restart")
	}
	if after := dev.snapshot(t); !bytes.Equal(before, after) {
		t.Errorf("the API says something else after a restart:\nbefore: %s\nafter:  %s", before, after)
	}
	dev.stop(t)
}
