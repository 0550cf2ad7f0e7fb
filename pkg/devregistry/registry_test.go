package devregistry

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"
)

// testCluster starts an in-process one-broker Kafka for the test.
func testCluster(t *testing.T) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func testClient(t *testing.T, c *kfake.Cluster, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, opts...)...)
	if err != nil {
		t.Fatalf("creating Kafka client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// serve starts a registry on c, with a client of its own, behind an HTTP
// server, both stopped when the test ends.
func serve(t *testing.T, c *kfake.Cluster, opts ...Option) (*Registry, *api) {
	t.Helper()
	reg, err := New(testContext(t), testClient(t, c), zaptest.NewLogger(t), opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(reg)
	t.Cleanup(srv.Close)
	return reg, &api{t, srv.URL}
}

// api calls a registry over HTTP.
type api struct {
	t   *testing.T
	url string
}

func (a *api) do(method, path, body string) (int, string) {
	a.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.url+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		a.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	if ct := res.Header.Get("Content-Type"); ct != contentType {
		a.t.Errorf("%s %s: Content-Type %q, want %q", method, path, ct, contentType)
	}
	return res.StatusCode, string(b)
}

// must calls the registry and fails the test unless it answers 200.
func (a *api) must(method, path, body string) string {
	a.t.Helper()
	status, got := a.do(method, path, body)
	if status != http.StatusOK {
		a.t.Fatalf("%s %s: status %d: %s", method, path, status, got)
	}
	return got
}

// register registers schema under subject and returns its ID.
func (a *api) register(subject, schema string) int {
	a.t.Helper()
	var res struct{ ID int }
	if err := json.Unmarshal([]byte(a.must("POST", "/subjects/"+subject+"/versions", schemaBody(schema))), &res); err != nil {
		a.t.Fatal(err)
	}
	return res.ID
}

func schemaBody(schema string) string { return `{"schema":` + q(schema) + `}` }

// q quotes s as a JSON string.
func q(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// sameJSON reports whether a and b are equal as JSON values.
func sameJSON(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// rec returns an Avro record schema User with the given fields.
func rec(fields string) string {
	return `{"type":"record","name":"User","namespace":"t","fields":[` + fields + `]}`
}

func TestNewRejectsUnsuitableClientsAndTopics(t *testing.T) {
	c := testCluster(t)
	admin := testClient(t, c)
	ctx := testContext(t)
	for _, topic := range []struct {
		name       string
		partitions int32
		configs    map[string]*string
	}{
		{"three-partitions", 3, nil},
		{"not-compacted", 1, map[string]*string{"cleanup.policy": ptr("delete")}},
	} {
		res, err := kadm.NewClient(admin).CreateTopic(ctx, topic.partitions, -1, topic.configs, topic.name)
		if err != nil || res.Err != nil {
			t.Fatalf("creating %s: %v %v", topic.name, err, res.Err)
		}
	}
	tests := []struct {
		name    string
		client  []kgo.Opt
		opts    []Option
		wantErr string
	}{
		{"group consumer", []kgo.Opt{kgo.ConsumerGroup("g"), kgo.ConsumeTopics("x")}, nil, "consumer group"},
		{"consumes topics", []kgo.Opt{kgo.ConsumeTopics("x")}, nil, "already consumes"},
		{"leader acks", []kgo.Opt{kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite()}, nil, "AllISRAcks"},
		{"transactional", []kgo.Opt{kgo.TransactionalID("tx")}, nil, "transactional"},
		{"several partitions", nil, []Option{Topic("three-partitions")}, "has 3 partitions"},
		{"not compacted", nil, []Option{Topic("not-compacted")}, "cleanup.policy is delete"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(ctx, testClient(t, c, tt.client...), zaptest.NewLogger(t), tt.opts...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New: got error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
