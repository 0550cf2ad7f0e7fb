package forwarder_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/omnisync/omnisync/consumers/forwarder"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/deadletter"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
)

// rig is a state topic and a dead-letter topic of the test's own, on one
// cluster, with a registry.
type rig struct {
	k          testenv.Kafka
	cl         *kgo.Client
	adm        *kadm.Client
	serde      *codec.Serde
	topic, dlq string
	group      string
}

func newRig(t *testing.T, k testenv.Kafka, partitions int32) *rig {
	t.Helper()
	ctx := context.Background()
	cl, err := kafka.NewClient(k.Config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	r := &rig{k: k, cl: cl, adm: kadm.NewClient(cl), topic: testenv.UniqueName(t, "state"),
		dlq: testenv.UniqueName(t, "dlq"), group: testenv.UniqueName(t, "forward")}
	compact := "compact"
	if _, err := r.adm.CreateTopic(ctx, partitions, -1, map[string]*string{"cleanup.policy": &compact}, r.topic); err != nil {
		t.Fatal(err)
	}
	if _, err := r.adm.CreateTopic(ctx, 1, -1, nil, r.dlq); err != nil {
		t.Fatal(err)
	}
	reg, _ := testenv.Registry(t)
	if r.serde, err = codec.New(ctx, reg); err != nil {
		t.Fatal(err)
	}
	return r
}

var base = time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)

// state is version v of customer id, with its name set to name.
func state(id string, v int64, name string) *events.CustomerState {
	at := base.Add(time.Duration(v) * time.Minute)
	return &events.CustomerState{
		CustomerID: id, Version: v, UpdatedAt: at, PolicyHash: "p1", LastContactChannel: events.ChannelUnknown,
		Fields: map[string]events.Register{"name": {ValueJSON: fmt.Sprintf("%q", name), OccurredAt: at,
			EventID: fmt.Sprintf("%s-e%d", id, v), Channel: events.ChannelWeb, Source: "web/test"}},
		Identities: []events.Identity{{Kind: "phone", Value: "+8613800138000"}},
		Conflicts:  []events.Conflict{},
	}
}

// produce writes states keyed by customer ID, in order.
func (r *rig) produce(t *testing.T, states ...*events.CustomerState) {
	t.Helper()
	var recs []*kgo.Record
	for _, s := range states {
		b, err := r.serde.Encode(s)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: r.topic, Key: []byte(s.CustomerID), Value: b})
	}
	if err := r.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// run starts a forwarder member to target; stop ends it (also at cleanup).
func (r *rig) run(t *testing.T, target string, metrics *forwarder.Metrics, tweak func(*forwarder.Config)) (stop func()) {
	t.Helper()
	cfg := forwarder.Config{Kafka: r.k.Config(), Group: r.group, Serde: r.serde, Target: target, Topic: r.topic,
		DeadLetterTopic: r.dlq,
		Logger:          zaptest.NewLogger(t), Metrics: metrics}
	if tweak != nil {
		tweak(&cfg)
	}
	f, err := forwarder.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("forwarder: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// committed returns the group's committed offset per partition of the
// state topic (absent: nothing committed).
func (r *rig) committed(t *testing.T) map[int32]int64 {
	t.Helper()
	offs, err := r.adm.FetchOffsets(context.Background(), r.group)
	if errors.Is(err, kerr.GroupIDNotFound) { // the embedded broker's answer before the first commit
		return map[int32]int64{}
	}
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == r.topic && o.Err == nil && o.At >= 0 {
			out[o.Partition] = o.At
		}
	})
	return out
}

// waitCommittedToEnd waits until the group has committed the end of every
// partition of the state topic.
func (r *rig) waitCommittedToEnd(t *testing.T) {
	t.Helper()
	ends, err := r.adm.ListEndOffsets(context.Background(), r.topic)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := r.committed(t)
		behind := false
		ends.Each(func(o kadm.ListedOffset) {
			if o.Offset > 0 && got[o.Partition] < o.Offset {
				behind = true
			}
		})
		if !behind {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("offsets not committed to the end: committed %v, ends %v", got, ends)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// delivery is one request the target received.
type delivery struct {
	body   forwarder.Body
	header http.Header
	raw    []byte
}

// target is an httptest server that records every request and answers
// with the status and body answer returns for it (attempt counts the
// requests for this customer version from 1).
type target struct {
	*httptest.Server
	mu       sync.Mutex
	attempts map[string]int
	ok       []delivery // requests answered 2xx, in order
}

func newTarget(t *testing.T, answer func(r *http.Request, b forwarder.Body, attempt int) (int, string)) *target {
	t.Helper()
	tg := &target{attempts: map[string]int{}}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		var b forwarder.Body
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(raw, &b) != nil {
			t.Errorf("bad request: %s %s %q", r.Method, r.Header.Get("Content-Type"), raw)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		key := fmt.Sprintf("%s:%d", b.CustomerID, b.Version)
		tg.mu.Lock()
		tg.attempts[key]++
		n := tg.attempts[key]
		tg.mu.Unlock()
		code, text := answer(r, b, n)
		if code >= 200 && code < 300 {
			tg.mu.Lock()
			tg.ok = append(tg.ok, delivery{body: b, header: r.Header.Clone(), raw: raw})
			tg.mu.Unlock()
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, text)
	}))
	t.Cleanup(tg.Close)
	return tg
}

func (tg *target) delivered() []delivery {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return append([]delivery(nil), tg.ok...)
}

func (tg *target) attemptsOf(key string) int {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return tg.attempts[key]
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Every state record reaches the target once, each customer's versions in
// order, with the bearer token, the idempotency key and a valid signature;
// the offsets are committed to the end.
func TestDeliversEveryState(t *testing.T) {
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		r := newRig(t, k, 3)
		const customers, versions = 8, 5
		var states []*events.CustomerState
		for v := int64(1); v <= versions; v++ {
			for c := range customers {
				states = append(states, state(fmt.Sprintf("c-%d", c), v, fmt.Sprintf("name %d.%d", c, v)))
			}
		}
		states[0].Deleted = true // a deletion is forwarded like any change
		r.produce(t, states...)
		tg := newTarget(t, func(*http.Request, forwarder.Body, int) (int, string) { return http.StatusNoContent, "" })
		reg := prometheus.NewRegistry()
		m := forwarder.NewMetrics(reg, r.group)
		r.run(t, tg.URL+"/hooks/omnisync", m, func(c *forwarder.Config) { c.Token, c.Secret = "tok-1", "sec-1" })

		waitFor(t, "every state delivered", func() bool { return len(tg.delivered()) >= len(states) })
		r.waitCommittedToEnd(t)
		got := tg.delivered()
		if len(got) != len(states) {
			t.Fatalf("target acknowledged %d requests, want %d (each state once)", len(got), len(states))
		}
		last := map[string]int64{}
		for _, d := range got {
			b := d.body
			if b.Version != last[b.CustomerID]+1 {
				t.Errorf("%s: version %d after %d: versions must arrive in order", b.CustomerID, b.Version, last[b.CustomerID])
			}
			last[b.CustomerID] = b.Version
			var c int
			if _, err := fmt.Sscanf(b.CustomerID, "c-%d", &c); err != nil {
				t.Fatal(err)
			}
			var name string
			if err := json.Unmarshal(b.Fields["name"].Value, &name); err != nil || name != fmt.Sprintf("name %d.%d", c, b.Version) {
				t.Errorf("%s v%d: name %s (%v)", b.CustomerID, b.Version, b.Fields["name"].Value, err)
			}
			if f := b.Fields["name"]; f.Channel != events.ChannelWeb || f.EventID != fmt.Sprintf("%s-e%d", b.CustomerID, b.Version) ||
				!f.OccurredAt.Equal(base.Add(time.Duration(b.Version)*time.Minute)) {
				t.Errorf("%s v%d: field provenance %+v", b.CustomerID, b.Version, f)
			}
			if len(b.Identities) != 1 || b.Identities[0].Value != "+8613800138000" || b.PolicyHash != "p1" {
				t.Errorf("%s v%d: body %+v", b.CustomerID, b.Version, b)
			}
			if want := b.CustomerID == "c-0" && b.Version == 1; b.Deleted != want {
				t.Errorf("%s v%d: deleted=%v", b.CustomerID, b.Version, b.Deleted)
			}
			if h := d.header.Get("Authorization"); h != "Bearer tok-1" {
				t.Errorf("Authorization %q", h)
			}
			if h := d.header.Get("Idempotency-Key"); h != fmt.Sprintf("%s:%d", b.CustomerID, b.Version) {
				t.Errorf("Idempotency-Key %q", h)
			}
			mac := hmac.New(sha256.New, []byte("sec-1"))
			mac.Write(d.raw)
			if h := d.header.Get("X-Omnisync-Signature"); h != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
				t.Errorf("signature %q does not sign the body", h)
			}
		}
		if len(last) != customers {
			t.Errorf("%d customers delivered, want %d", len(last), customers)
		}
		if n := metric(t, reg, "omnisync_forwarder_deliveries_total", ""); n != float64(len(states)) {
			t.Errorf("deliveries metric %v, want %d", n, len(states))
		}
	})
}

// A target answering 503 is retried until it takes the record, and nothing
// is committed while the delivery is unacknowledged.
func TestRetriesThrough503AndCommitsOnlyAfter2xx(t *testing.T) {
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		r := newRig(t, k, 1)
		r.produce(t, state("c-1", 1, "first"))
		release := make(chan struct{})
		tg := newTarget(t, func(_ *http.Request, _ forwarder.Body, n int) (int, string) {
			if n <= 3 {
				return http.StatusServiceUnavailable, "overloaded"
			}
			<-release // the fourth attempt hangs until the test lets it answer
			return http.StatusOK, ""
		})
		reg := prometheus.NewRegistry()
		m := forwarder.NewMetrics(reg, r.group)
		r.run(t, tg.URL, m, nil)

		waitFor(t, "the fourth attempt", func() bool { return tg.attemptsOf("c-1:1") == 4 })
		for range 10 { // the target has not answered: no commit may happen
			if got := r.committed(t); len(got) > 0 {
				close(release)
				t.Fatalf("offsets %v committed before the target acknowledged", got)
			}
			time.Sleep(50 * time.Millisecond)
		}
		close(release)
		r.waitCommittedToEnd(t)
		if got := tg.delivered(); len(got) != 1 || got[0].body.CustomerID != "c-1" {
			t.Fatalf("delivered %+v", got)
		}
		if n := metric(t, reg, "omnisync_forwarder_retries_total", "503"); n != 3 {
			t.Errorf("retries{reason=503} = %v, want 3", n)
		}
	})
}

// A record whose delivery was cut off (the member stopped before the
// target answered) is delivered again by the next member of the group.
func TestUnacknowledgedRecordIsResentAfterRestart(t *testing.T) {
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		r := newRig(t, k, 1)
		r.produce(t, state("c-1", 1, "first"), state("c-1", 2, "second"))
		hang := make(chan struct{})
		tg := newTarget(t, func(req *http.Request, b forwarder.Body, n int) (int, string) {
			if b.Version == 2 && n == 1 {
				close(hang)
				<-req.Context().Done() // never answers: the forwarder stops first
				return http.StatusGatewayTimeout, ""
			}
			return http.StatusOK, ""
		})
		stop := r.run(t, tg.URL, nil, nil)
		<-hang
		stop()
		if got := r.committed(t); got[0] != 0 && got[0] != 1 {
			t.Fatalf("committed %v while version 2 was unacknowledged", got)
		}
		r.run(t, tg.URL, nil, nil)
		r.waitCommittedToEnd(t)
		var versions []int64
		for _, d := range tg.delivered() {
			versions = append(versions, d.body.Version)
		}
		// Version 1 may come twice (at least once); version 2 must come.
		if len(versions) == 0 || versions[len(versions)-1] != 2 || tg.attemptsOf("c-1:2") != 2 {
			t.Fatalf("acknowledged versions %v, attempts at v2 %d", versions, tg.attemptsOf("c-1:2"))
		}
	})
}

// A 400 sends the record to the dead-letter topic with the status and the
// target's reason, as does a record that cannot be decoded; the records
// after them are delivered and everything is committed.
func TestDeadLettersRefusedAndUndecodableRecords(t *testing.T) {
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		r := newRig(t, k, 1)
		if err := r.cl.ProduceSync(context.Background(), &kgo.Record{Topic: r.topic, Key: []byte("c-junk"), Value: []byte("not avro")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		r.produce(t, state("c-bad", 1, "refused"), state("c-good", 1, "taken"))
		// As large as a record can be under franz-go's default 1,000,012-byte
		// batch: kept whole, with the reason and origin around it, its dead
		// letter would be too large for Kafka.
		const huge = 999_850
		if err := r.cl.ProduceSync(context.Background(), &kgo.Record{Topic: r.topic, Key: []byte("c-huge"), Value: bytes.Repeat([]byte{0xff}, huge)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		tg := newTarget(t, func(_ *http.Request, b forwarder.Body, _ int) (int, string) {
			if b.CustomerID == "c-bad" {
				return http.StatusBadRequest, "phone: not a valid number"
			}
			return http.StatusOK, ""
		})
		reg := prometheus.NewRegistry()
		m := forwarder.NewMetrics(reg, r.group)
		r.run(t, tg.URL, m, nil)
		r.waitCommittedToEnd(t)
		if got := tg.delivered(); len(got) != 1 || got[0].body.CustomerID != "c-good" {
			t.Fatalf("delivered %+v, want only c-good", got)
		}
		if n := tg.attemptsOf("c-bad:1"); n != 1 {
			t.Errorf("a 400 was tried %d times, want once", n)
		}

		c, err := kafka.NewClient(k.Config(), kgo.ConsumeTopics(r.dlq), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		letters := map[string]events.DeadLetter{}
		for len(letters) < 3 && ctx.Err() == nil {
			c.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
				var dl events.DeadLetter
				if err := r.serde.Decode(ctx, rec.Value, &dl); err != nil {
					t.Errorf("dead letter does not decode: %v", err)
					return
				}
				letters[string(rec.Key)] = dl
			})
		}
		bad, junk := letters["c-bad"], letters["c-junk"]
		if bad.Stage != "forward" || bad.Component != "forwarder/"+r.group || bad.Headers["status"] != "400" ||
			!strings.Contains(bad.Reason, "400") || !strings.Contains(bad.Reason, "phone: not a valid number") || bad.Offset == nil || *bad.Offset != 1 || bad.Topic == nil || *bad.Topic != r.topic {
			t.Errorf("dead letter of the refused record: %+v", bad)
		}
		var st events.CustomerState
		if err := r.serde.Decode(ctx, bad.Payload, &st); err != nil || st.CustomerID != "c-bad" {
			t.Errorf("dead letter payload is not the original record: %v %+v", err, st)
		}
		if junk.Stage != "forward" || string(junk.Payload) != "not avro" || junk.Offset == nil || *junk.Offset != 0 {
			t.Errorf("dead letter of the undecodable record: %+v", junk)
		}
		if big := letters["c-huge"]; !bytes.Equal(big.Payload, bytes.Repeat([]byte{0xff}, deadletter.MaxPayload)) || big.PayloadSize != huge || !big.PayloadTruncated || big.Offset == nil || *big.Offset != 3 {
			t.Errorf("dead letter of the huge record keeps %d bytes of %d (truncated %v), offset %v", len(big.Payload), big.PayloadSize, big.PayloadTruncated, big.Offset)
		}
		if junk.PayloadSize != int64(len("not avro")) || junk.PayloadTruncated {
			t.Errorf("dead letter of a small record: size %d, truncated %v", junk.PayloadSize, junk.PayloadTruncated)
		}
		if n := metric(t, reg, "omnisync_forwarder_dead_letters_total", ""); n != 3 {
			t.Errorf("dead letters metric %v, want 3", n)
		}
	})
}

// metric returns the value of a counter in reg, of the series whose reason
// label is reason (any series when reason is empty).
func metric(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := reason == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					match = true
				}
			}
			if match {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
