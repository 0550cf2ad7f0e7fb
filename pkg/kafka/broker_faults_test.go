package kafka_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/kafka"
)

// TestBrokerFaults runs omnisync's produce path (kafka.ProduceAndWait with
// the client settings of kafka.Config.Opts) against a real three-node
// cluster (scripts/kafka.sh, with its failover settings) while brokers die:
// one broker's death must be invisible to clients, and no acknowledged
// record may ever be lost.
func TestBrokerFaults(t *testing.T) {
	c := testenv.KafkaNodes(t, 3)
	cl := newClient(t, c.Kafka)
	adm := kadm.NewClient(cl)

	// kill -9 of one broker under a steady open-loop load of 150 records/s,
	// each given the ingest pipeline's 10 s budget: first the active
	// controller (which also leads partitions), then another partition
	// leader, each restarted after a 15 s failover window. ≥ 99.9 % of all
	// records are acknowledged within their budget, and every acknowledged
	// one is in the log exactly once.
	t.Run("kill one broker", func(t *testing.T) {
		topic := faultTopic(t, adm, 6) // two partitions led by each broker
		l := startLoad(cl, topic, 150, func() time.Duration { return 10 * time.Second })
		time.Sleep(5 * time.Second)
		const window = 15 * time.Second
		var kills []time.Time
		var events timeline
		for i := range 2 {
			victim := pickVictim(t, adm, cl, topic, i == 0)
			kills = append(kills, time.Now())
			events.add("node %d killed", victim)
			c.StopNode(t, int(victim), true)
			time.Sleep(window)
			events.add("node %d restarting", victim)
			c.StartNode(t, int(victim))
			events.add("node %d serving again", victim)
			time.Sleep(5 * time.Second)
		}
		results := l.stop()
		events.logSlowest(t, results, 5)

		for i, at := range kills {
			in := between(results, at, at.Add(window))
			s := summarize(in)
			t.Logf("kill %d, failover window of %v: %d records, %d acknowledged (%.3f %%), latency of the acknowledged p50 %v p99 %v max %v",
				i+1, window, s.sent, s.acked, s.share(), s.p50, s.p99, s.max)
		}
		s := summarize(results)
		t.Logf("whole run: %d records, %d acknowledged within 10 s (%.3f %%), latency p50 %v p99 %v max %v; first error: %v",
			s.sent, s.acked, s.share(), s.p50, s.p99, s.max, s.firstErr)
		if s.share() < 99.9 {
			t.Errorf("only %.3f %% of %d records were acknowledged within 10 s across two broker kills; want ≥ 99.9 %% (first error: %v)",
				s.share(), s.sent, s.firstErr)
		}
		checkAckedOnce(t, c.Kafka, adm, cl, topic, results)
	})

	// Every broker killed at once under load, then started again, cycles
	// times, with short request deadlines (0.3–1 s) so that many records
	// are still on their way when the wait for them ends, around both the
	// kill and the return. Every acknowledged record must be in the log.
	//
	// Why 8 cycles: had a loss shown in 1 of 3 runs of a 20 s outage, take
	// one cycle here to be at least as likely to show it — what can lose a
	// record is a batch in flight when the brokers die or come back while
	// its wait ends, not the outage's length (nothing is in flight while
	// every broker is down), and each cycle has both moments at 150
	// records/s with deadlines 10–30 times shorter. Then 8 cycles all pass
	// despite the bug with probability (2/3)^8 ≈ 4 %. Each cycle costs
	// ~20–30 s here, mostly three JVMs starting.
	t.Run("all brokers down", func(t *testing.T) {
		const cycles, outage = 8, 4 * time.Second
		topic := faultTopic(t, adm, 6) // two partitions led by each broker
		l := startLoad(cl, topic, 150, func() time.Duration {
			return 300*time.Millisecond + rand.N(700*time.Millisecond)
		})
		var falseAcks int
		for cycle := 1; cycle <= cycles; cycle++ {
			l.waitAcked(t, 20, 2*time.Minute)
			c.StopAll(t, true)
			down := time.Now()
			time.Sleep(outage)
			restart := time.Now()
			c.StartAll(t)
			// No broker was up between down and restart: nothing sent and
			// answered wholly inside that span can have been acknowledged.
			for _, r := range l.snapshot() {
				if r.err == nil && r.start.After(down) && r.start.Add(r.latency).Before(restart) {
					falseAcks++
				}
			}
		}
		l.waitAcked(t, 20, 2*time.Minute)
		results := l.stop()
		s := summarize(results)
		t.Logf("%d cycles of all brokers killed for %v: %d records, %d acknowledged, %d not (first error: %v)",
			cycles, outage, s.sent, s.acked, s.sent-s.acked, s.firstErr)
		if falseAcks > 0 {
			t.Errorf("%d records were acknowledged while every broker was down", falseAcks)
		}
		missing := checkAckedOnce(t, c.Kafka, adm, cl, topic, results)
		t.Logf("acknowledged records missing from the log: %d", missing)
	})
}

// faultTopic creates a topic of the given partitions, replication factor 3
// and min.insync.replicas 2.
func faultTopic(t *testing.T, adm *kadm.Client, partitions int32) string {
	t.Helper()
	return newTopic(t, adm, "faults", partitions, 3, map[string]*string{"min.insync.replicas": kadm.StringPtr("2")}, time.Minute)
}

// pickVictim returns the active controller when controller is set, else a
// broker that is not; either way one that leads a partition of topic.
func pickVictim(t *testing.T, adm *kadm.Client, cl *kgo.Client, topic string, controller bool) int32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	active, err := testenv.ActiveController(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	topics, err := adm.ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	leads := map[int32]int{}
	for _, p := range topics[topic].Partitions {
		leads[p.Leader]++
	}
	for _, b := range []int32{active, 1, 2, 3} {
		if (b == active) == controller && leads[b] > 0 {
			t.Logf("killing node %d (active controller: %d; it leads %d of %d partitions of %s)",
				b, active, leads[b], len(topics[topic].Partitions), topic)
			return b
		}
	}
	t.Fatalf("no broker to kill: active controller %d, partition leaders %v", active, leads)
	return 0
}

// timeline is what a test did when, to place the slowest records.
type timeline []struct {
	at   time.Time
	what string
}

func (tl *timeline) add(format string, args ...any) {
	*tl = append(*tl, struct {
		at   time.Time
		what string
	}{time.Now(), fmt.Sprintf(format, args...)})
}

// logSlowest logs the n slowest acknowledged records, each placed after
// the latest event before it started.
func (tl timeline) logSlowest(t *testing.T, results []result, n int) {
	t.Helper()
	acked := slices.DeleteFunc(slices.Clone(results), func(r result) bool { return r.err != nil })
	slices.SortFunc(acked, func(a, b result) int { return int(b.latency - a.latency) })
	for _, r := range acked[:min(n, len(acked))] {
		place := "before any fault"
		for _, e := range tl {
			if !e.at.After(r.start) {
				place = fmt.Sprintf("%v after %s", r.start.Sub(e.at).Round(time.Millisecond), e.what)
			}
		}
		t.Logf("slow: %s took %v, sent %s", r.value, r.latency.Round(time.Millisecond), place)
	}
}

// result is one record's fate: acknowledged (err nil) within its deadline
// or not, and how long the caller waited.
type result struct {
	value   string
	start   time.Time
	latency time.Duration
	err     error
}

// load is an open-loop producer: it starts a record every 1/rate s
// whatever became of the earlier ones, as independent clients do, each
// through kafka.ProduceAndWait with its own deadline.
type load struct {
	mu      sync.Mutex
	results []result
	done    chan struct{}
	wg      sync.WaitGroup
}

func startLoad(cl *kgo.Client, topic string, rate int, deadline func() time.Duration) *load {
	l := &load{done: make(chan struct{})}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		begin := time.Now()
		for i := 0; ; i++ {
			select {
			case <-l.done:
				return
			case <-time.After(time.Until(begin.Add(time.Duration(i) * time.Second / time.Duration(rate)))):
			}
			rec := &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "cus_%d", i), Value: fmt.Appendf(nil, "%s-%d", topic, i)}
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), deadline())
				defer cancel()
				start := time.Now()
				err := kafka.ProduceAndWait(ctx, cl, rec)
				r := result{value: string(rec.Value), start: start, latency: time.Since(start), err: err}
				l.mu.Lock()
				l.results = append(l.results, r)
				l.mu.Unlock()
			}()
		}
	}()
	return l
}

// stop ends the load and returns every record's result once all answered.
func (l *load) stop() []result {
	close(l.done)
	l.wg.Wait()
	return l.snapshot()
}

func (l *load) snapshot() []result {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.results)
}

// waitAcked waits until n more records are acknowledged: the cluster serves.
func (l *load) waitAcked(t *testing.T, n int, limit time.Duration) {
	t.Helper()
	count := func() (acked int) {
		for _, r := range l.snapshot() {
			if r.err == nil {
				acked++
			}
		}
		return acked
	}
	want := count() + n
	for deadline := time.Now().Add(limit); count() < want; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d records acknowledged in %v after the brokers came back", n, limit)
		}
	}
}

// between returns the results of records started in [from, to).
func between(results []result, from, to time.Time) []result {
	var in []result
	for _, r := range results {
		if !r.start.Before(from) && r.start.Before(to) {
			in = append(in, r)
		}
	}
	return in
}

type summary struct {
	sent, acked   int
	p50, p99, max time.Duration
	firstErr      error
}

func (s summary) share() float64 {
	if s.sent == 0 {
		return 0
	}
	return 100 * float64(s.acked) / float64(s.sent)
}

func summarize(results []result) summary {
	s := summary{sent: len(results)}
	var lat []time.Duration
	for _, r := range results {
		if r.err != nil {
			if s.firstErr == nil {
				s.firstErr = r.err
			}
			continue
		}
		s.acked++
		lat = append(lat, r.latency)
	}
	slices.Sort(lat)
	if n := len(lat); n > 0 {
		at := func(q float64) time.Duration { return lat[min(n-1, int(q*float64(n)))].Round(time.Millisecond) }
		s.p50, s.p99, s.max = at(0.50), at(0.99), lat[n-1].Round(time.Millisecond)
	}
	return s
}

// checkAckedOnce reads topic to its end once every record has settled and
// reports each acknowledged record that is missing or stored twice; it
// returns how many are missing.
func checkAckedOnce(t *testing.T, k testenv.Kafka, adm *kadm.Client, producer *kgo.Client, topic string, results []result) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Records whose wait ended unacknowledged are still being produced.
	if err := producer.Flush(ctx); err != nil {
		t.Fatalf("flushing the producer: %v", err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("listing end offsets of %s: %v", topic, err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	consumer := newClient(t, k, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	stored := map[string]int{}
	for len(want) > 0 {
		fetches := consumer.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s back: partitions not read to their end: %v", topic, want)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			stored[string(r.Value)]++
			if end, ok := want[r.Partition]; ok && r.Offset >= end-1 {
				delete(want, r.Partition)
			}
		})
	}
	var acked, missing, twice int
	for _, r := range results {
		if r.err != nil {
			continue
		}
		acked++
		switch stored[r.value] {
		case 0:
			missing++
			t.Errorf("acknowledged record %s (sent %s, acknowledged after %v) is not in the log", r.value, r.start.Format("15:04:05.000"), r.latency)
		case 1:
		default:
			twice++
			t.Errorf("acknowledged record %s is in the log %d times", r.value, stored[r.value])
		}
	}
	t.Logf("read back %d records of %s: %d acknowledged ones, %d missing, %d stored more than once", len(stored), topic, acked, missing, twice)
	return missing
}
