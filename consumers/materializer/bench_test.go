package materializer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/omnisync/omnisync/consumers/materializer"
	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/consumers/store/postgres"
	"github.com/omnisync/omnisync/consumers/store/sqlite"
	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/schemas"
)

// pgWriters is Config.Writers for PostgreSQL: 4, as omnisync consume
// sets it, or OMNISYNC_BENCH_PG_WRITERS.
var pgWriters = func() int {
	if n, err := strconv.Atoi(os.Getenv("OMNISYNC_BENCH_PG_WRITERS")); err == nil && n > 0 {
		return n
	}
	return 4
}()

// benchCustomers is how many customers the replay benchmarks' log covers:
// OMNISYNC_BENCH_REPLAY_CUSTOMERS, default 50000.
var benchCustomers = func() int {
	if n, err := strconv.Atoi(os.Getenv("OMNISYNC_BENCH_REPLAY_CUSTOMERS")); err == nil && n > 0 {
		return n
	}
	return 50_000
}()

// benchLogLengths are the log lengths the replay benchmarks run at:
// OMNISYNC_BENCH_REPLAY_EVENTS (comma-separated, e.g. 100000,1000000),
// default 100000.
func benchLogLengths(b *testing.B) []int {
	spec := os.Getenv("OMNISYNC_BENCH_REPLAY_EVENTS")
	if spec == "" {
		spec = "100000"
	}
	var out []int
	for _, f := range strings.Split(spec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			b.Fatalf("OMNISYNC_BENCH_REPLAY_EVENTS: %q is not a positive number of events", f)
		}
		out = append(out, n)
	}
	return out
}

// benchLog is a log produced once to the real Kafka, on two topics of its
// own (deleted when the benchmark ends): the records between from and to.
type benchLog struct {
	k                     testenv.Kafka
	serde                 *codec.Serde
	eventsTopic, msgTopic string
	from, to              map[string]map[int32]int64
	events                int // records between from and to
	n                     int // of them produced by produceBenchLog (seed of its generator)
}

var (
	benchLogsMu sync.Mutex
	benchLogs   = map[int]*benchLog{}
)

// produceBenchLog produces n entries (79% profile upserts, 20% messages,
// 1% deletes over benchCustomers customers, generated like storebench's)
// to two fresh topics of 6 partitions, once per length while b runs.
func produceBenchLog(b *testing.B, n int) *benchLog {
	benchLogsMu.Lock()
	defer benchLogsMu.Unlock()
	if l, ok := benchLogs[n]; ok {
		return l
	}
	k := testenv.RealKafka(b)
	ctx := context.Background()
	cl, err := kafka.NewClient(k.Config(), kgo.MaxBufferedRecords(50_000))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	name := testenv.UniqueName(b, "bench")
	l := &benchLog{k: k, n: n, eventsTopic: name + ".events", msgTopic: name + ".messages"}
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopics(ctx, 6, -1, nil, l.eventsTopic, l.msgTopic); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		benchLogsMu.Lock()
		delete(benchLogs, n)
		benchLogsMu.Unlock()
		cl, err := kafka.NewClient(k.Config())
		if err != nil {
			b.Error(err)
			return
		}
		defer cl.Close()
		if _, err := kadm.NewClient(cl).DeleteTopics(context.Background(), l.eventsTopic, l.msgTopic); err != nil {
			b.Errorf("deleting the benchmark's topics: %v", err)
		}
	})
	if _, err := kafka.Provision(ctx, adm, kafka.Layout{Partitions: 6}.Topics()); err != nil {
		b.Fatal(err) // the dead-letter topic, should a record fail to decode
	}
	reg, _ := testenv.Registry(b)
	if l.serde, err = codec.New(ctx, reg); err != nil {
		b.Fatal(err)
	}
	l.from = endOffsets(b, cl, l)
	gen := newBenchGen(uint64(n))
	var wg sync.WaitGroup
	var produceErr error
	var errMu sync.Mutex
	for range n {
		ev, msg := gen.next()
		var rec *kgo.Record
		if ev != nil {
			v, err := l.serde.Encode(ev)
			if err != nil {
				b.Fatal(err)
			}
			rec = &kgo.Record{Topic: l.eventsTopic, Key: []byte(ev.CustomerID), Value: v}
		} else {
			v, err := l.serde.Encode(msg)
			if err != nil {
				b.Fatal(err)
			}
			rec = &kgo.Record{Topic: l.msgTopic, Key: []byte(msg.CustomerID), Value: v}
		}
		wg.Add(1)
		cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				errMu.Lock()
				produceErr = err
				errMu.Unlock()
			}
			wg.Done()
		})
	}
	wg.Wait()
	if produceErr != nil {
		b.Fatalf("producing the benchmark log: %v", produceErr)
	}
	l.to = endOffsets(b, cl, l)
	for topic, parts := range l.to {
		for p, end := range parts {
			l.events += int(end - l.from[topic][p])
		}
	}
	benchLogs[n] = l
	return l
}

func endOffsets(b *testing.B, cl *kgo.Client, l *benchLog) map[string]map[int32]int64 {
	out := map[string]map[int32]int64{}
	for topic, parts := range testenv.EndOffsets(b, cl, l.eventsTopic, l.msgTopic) {
		out[topic] = map[int32]int64{}
		for p, o := range parts {
			out[topic][p] = o.EpochOffset().Offset
		}
	}
	return out
}

// benchGen generates the log deterministically.
type benchGen struct {
	rng *rand.Rand
	n   int
}

func newBenchGen(seed uint64) *benchGen { return &benchGen{rng: rand.New(rand.NewPCG(seed, 11))} }

var benchChannels = []events.Channel{events.ChannelWeb, events.ChannelApp, events.ChannelWeChat, events.ChannelCRM, events.ChannelPhone}

func (g *benchGen) next() (*events.CustomerEvent, *events.MessageEvent) {
	g.n++
	c := g.rng.IntN(benchCustomers)
	cust, id := benchCustomer(c), fmt.Sprintf("ev_%012d", g.n)
	at := base.Add(time.Duration(g.n) * 10 * time.Millisecond)
	ch := benchChannels[g.rng.IntN(len(benchChannels))]
	switch r := g.rng.IntN(100); {
	case r < 20:
		text := fmt.Sprintf("message %d", g.n)
		return nil, &events.MessageEvent{
			MessageID: "msg_" + id, CustomerID: cust, ConversationID: "conv-" + cust, Channel: ch, Source: "bench",
			Direction: events.DirectionInbound, SenderType: events.SenderCustomer, SenderID: cust,
			ContentType: events.ContentText, Text: &text, OccurredAt: at, IngestedAt: at,
		}
	case r < 21:
		return &events.CustomerEvent{EventID: id, CustomerID: cust, Channel: events.ChannelAgent, Source: "bench", Op: events.OpDelete, OccurredAt: at, IngestedAt: at}, nil
	}
	p := &events.Profile{}
	for range 1 + g.rng.IntN(3) {
		v := g.rng.IntN(3)
		switch g.rng.IntN(5) {
		case 0:
			p.Name = ptr(fmt.Sprintf("客户 %d 号 v%d", c, v))
		case 1:
			p.Phone = ptr(fmt.Sprintf("+86138%08d", c*3+v))
		case 2:
			p.Email = ptr(fmt.Sprintf("c%d.v%d@example.com", c, v))
		case 3:
			p.VIPLevel = ptr(int32(v))
		default:
			p.Attributes = map[string]string{"segment": fmt.Sprintf("s%d", v)}
		}
	}
	return &events.CustomerEvent{
		EventID: id, CustomerID: cust, Channel: ch, Source: "bench", Op: events.OpUpsert, OccurredAt: at, IngestedAt: at,
		Profile: p, Identities: []events.Identity{{Kind: "device", Value: fmt.Sprintf("dev-%d-%s", c, ch)}},
	}, nil
}

func benchCustomer(c int) string { return fmt.Sprintf("bench_%07d", c) }

// recordBytes is the mean size of the stored records' JSON: records carry
// their history (conflicts, identities), so memory per record grows with
// the events per customer, not with the log's length.
func recordBytes(b *testing.B, st store.Store) float64 {
	var total, n int
	for start := 0; start < benchCustomers; start += 5000 {
		var ids []string
		for c := start; c < min(start+5000, benchCustomers); c++ {
			ids = append(ids, benchCustomer(c))
		}
		recs, err := st.Load(context.Background(), ids)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range recs {
			doc, err := r.MarshalJSON()
			if err != nil {
				b.Fatal(err)
			}
			total, n = total+len(doc), n+1
		}
	}
	return float64(total) / float64(max(n, 1))
}

// usage samples the process while a replay runs: the high-water marks of
// the Go heap in use and of the resident set, and the CPU time spent.
type usage struct {
	stop              chan struct{}
	done              chan struct{}
	peakHeap, peakRSS uint64
	cpu0              time.Duration
}

func startUsage() *usage {
	runtime.GC()
	debug.FreeOSMemory()
	u := &usage{stop: make(chan struct{}), done: make(chan struct{}), cpu0: cpuTime()}
	go func() {
		defer close(u.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			u.peakHeap = max(u.peakHeap, ms.HeapInuse)
			u.peakRSS = max(u.peakRSS, rss())
			select {
			case <-u.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return u
}

// report stops sampling and reports the figures per event.
func (u *usage) report(b *testing.B, events int, elapsed time.Duration) {
	close(u.stop)
	<-u.done
	cpu := cpuTime() - u.cpu0
	b.ReportMetric(float64(events)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(events), "cpu-µs/event")
	b.ReportMetric(float64(u.peakHeap)/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(u.peakRSS)/(1<<20), "peak-RSS-MB")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rss is the process's resident set now (Linux), 0 elsewhere.
func rss() uint64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

// replay runs members materializers of one group into fresh stores
// opened by open (one per member, on the same database) until the store
// holds the log's end offsets, and reports events/s, CPU and memory.
func replay(b *testing.B, l *benchLog, members int, open func(b *testing.B) func() store.Store, writers int) {
	for range b.N {
		b.StopTimer()
		opener := open(b)
		first := opener()
		group := testenv.UniqueName(b, "replay")
		// The group starts where the log starts, as if the store had
		// applied everything before it.
		if err := first.Apply(context.Background(), &store.Batch{Group: group, Offsets: l.from}); err != nil {
			b.Fatal(err)
		}
		u := startUsage()
		b.StartTimer()
		start := time.Now()
		ctx, cancel := context.WithCancel(context.Background())
		errs := make(chan error, members)
		for i := range members {
			st := first
			if i > 0 {
				st = opener()
			}
			m, err := materializer.New(materializer.Config{Kafka: l.k.Config(), Group: group, Store: st, Serde: l.serde, Logger: zap.NewNop(), Writers: writers,
				EventsTopic: l.eventsTopic, MessagesTopic: l.msgTopic})
			if err != nil {
				b.Fatal(err)
			}
			go func() { errs <- m.Run(ctx) }()
		}
		waitOffsets(b, first, group, l.to, errs)
		elapsed := time.Since(start)
		b.StopTimer()
		u.report(b, l.events, elapsed)
		cancel()
		b.ReportMetric(recordBytes(b, first), "record-B")
		for range members {
			if err := <-errs; err != nil {
				b.Errorf("materializer: %v", err)
			}
		}
	}
}

// waitOffsets waits until st holds the offsets to for group.
func waitOffsets(b *testing.B, st store.Store, group string, to map[string]map[int32]int64, errs chan error) {
	deadline := time.Now().Add(30 * time.Minute)
	for {
		held, err := st.Offsets(context.Background(), group)
		if err != nil {
			b.Fatal(err)
		}
		behind := false
		for topic, parts := range to {
			for p, end := range parts {
				if held[topic][p] < end {
					behind = true
				}
			}
		}
		if !behind {
			return
		}
		select {
		case err := <-errs:
			b.Fatalf("a materializer stopped during the replay: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("replay not done after 30 minutes: store holds %v, want %v", held, to)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func openPostgresStores(b *testing.B) func() store.Store {
	dsn := testenv.Postgres(b)
	return func() store.Store {
		s, err := postgres.Open(context.Background(), dsn)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
}

func openSQLiteStores(b *testing.B) func() store.Store {
	path := filepath.Join(b.TempDir(), "replay.db")
	return func() store.Store {
		s, err := sqlite.Open(context.Background(), path)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
}

// BenchmarkReplay measures a replay through the real Kafka
// (OMNISYNC_TEST_KAFKA; on topics of its own) into an empty store: one
// member of a fresh group reads the log (benchCustomers customers; its length per
// OMNISYNC_BENCH_REPLAY_EVENTS), decodes, folds and applies it until the
// store holds the log's end offsets. Beside it, the baselines: reading and
// decoding the same records with franz-go and the codec alone; and
// writing the rows the replay writes (the same log folded in batches of
// 5000 in memory, untimed) to plain PostgreSQL tables with one multi-row
// UNNEST upsert per table and batch, or with COPY into staging tables and
// one INSERT … SELECT per table. Reported: events/s, CPU-µs per event of
// this process (the client side; the database's own CPU is not in it),
// and the high-water marks of the Go heap in use and of the resident set
// during the replay, which must not grow with the log's length.
func BenchmarkReplay(b *testing.B) {
	for _, n := range benchLogLengths(b) {
		b.Run(fmt.Sprintf("events=%dk", n/1000), func(b *testing.B) {
			l := produceBenchLog(b, n)
			b.Run("baseline=read-decode", func(b *testing.B) { readDecode(b, l) })
			b.Run("baseline=unnest-upsert", func(b *testing.B) { writeRows(b, l, unnestUpsert) })
			b.Run("baseline=copy", func(b *testing.B) { writeRows(b, l, copyRows) })
			b.Run("postgres", func(b *testing.B) { replay(b, l, 1, openPostgresStores, pgWriters) })
			b.Run("sqlite", func(b *testing.B) { replay(b, l, 1, openSQLiteStores, 1) })
		})
	}
}

// BenchmarkReplayMembers measures the same replay by two members of one
// group beside one member.
func BenchmarkReplayMembers(b *testing.B) {
	for _, n := range benchLogLengths(b) {
		b.Run(fmt.Sprintf("events=%dk", n/1000), func(b *testing.B) {
			l := produceBenchLog(b, n)
			for _, s := range []struct {
				name    string
				open    func(b *testing.B) func() store.Store
				writers int
			}{{"postgres", openPostgresStores, pgWriters}, {"sqlite", openSQLiteStores, 1}} {
				b.Run(s.name, func(b *testing.B) {
					b.Run("baseline=members=1", func(b *testing.B) { replay(b, l, 1, s.open, s.writers) })
					b.Run("members=2", func(b *testing.B) { replay(b, l, 2, s.open, s.writers) })
				})
			}
		})
	}
}

// BenchmarkReplayMemory shows that a replayer's memory (omnisync replay's
// fold, materializer.NewReplay) does not grow with the log: the same
// benchCustomers customers with a log of 100k entries (the baseline) and
// of OMNISYNC_BENCH_REPLAY_LARGE entries (default 1,000,000), each
// replayed from the log's start into an empty store until the store holds
// the log's end. Reported as BenchmarkReplay: events/s, CPU-µs per event,
// and the peak Go heap in use and peak RSS during the replay, which
// benchratio prints beside the baseline's. (The verification a replay
// runs before its swap is verify.AgainstLog: BenchmarkVerifyMemory.)
func BenchmarkReplayMemory(b *testing.B) {
	large := 1_000_000
	if v := os.Getenv("OMNISYNC_BENCH_REPLAY_LARGE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("OMNISYNC_BENCH_REPLAY_LARGE=%q: want a positive number of events", v)
		}
		large = n
	}
	small, big := produceBenchLog(b, 100_000), produceBenchLog(b, large)
	for _, s := range []struct {
		name string
		open func(b *testing.B) func() store.Store
	}{{"sqlite", openSQLiteStores}, {"postgres", openPostgresStores}} {
		b.Run(s.name, func(b *testing.B) {
			b.Run("baseline=100k-events", func(b *testing.B) { replayer(b, small, s.open) })
			b.Run(fmt.Sprintf("%dk-events", large/1000), func(b *testing.B) { replayer(b, big, s.open) })
		})
	}
}

// replayer replays the log into a fresh store with a replayer
// (materializer.NewReplay, CatchUp to the log's end) and reports events/s,
// CPU and memory.
func replayer(b *testing.B, l *benchLog, open func(b *testing.B) func() store.Store) {
	for range b.N {
		b.StopTimer()
		st := open(b)()
		u := startUsage()
		b.StartTimer()
		start := time.Now()
		r, err := materializer.NewReplay(context.Background(), materializer.Config{Kafka: l.k.Config(), Group: testenv.UniqueName(b, "replay"),
			Store: st, Serde: l.serde, Logger: zap.NewNop(), EventsTopic: l.eventsTopic, MessagesTopic: l.msgTopic}, l.from)
		if err != nil {
			b.Fatal(err)
		}
		if err := r.CatchUp(context.Background(), l.to); err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		r.Close()
		u.report(b, l.events, elapsed)
	}
}

// readDecode reads the log's records with a plain franz-go consumer and
// decodes each with the codec: the floor of any replay.
func readDecode(b *testing.B, l *benchLog) {
	for range b.N {
		b.StopTimer()
		offsets := map[string]map[int32]kgo.Offset{}
		for topic, parts := range l.from {
			offsets[topic] = map[int32]kgo.Offset{}
			for p, o := range parts {
				offsets[topic][p] = kgo.NewOffset().At(o)
			}
		}
		cl, err := kafka.NewClient(l.k.Config(), kgo.ConsumePartitions(offsets))
		if err != nil {
			b.Fatal(err)
		}
		u := startUsage()
		b.StartTimer()
		start := time.Now()
		ctx := context.Background()
		left := l.events
		for left > 0 {
			fs := cl.PollRecords(ctx, 5000)
			if err := fs.Err0(); err != nil {
				b.Fatal(err)
			}
			fs.EachRecord(func(r *kgo.Record) {
				if r.Offset >= l.to[r.Topic][r.Partition] {
					return
				}
				left--
				var err error
				if r.Topic == l.eventsTopic {
					err = l.serde.Decode(ctx, r.Value, new(events.CustomerEvent))
				} else {
					err = l.serde.Decode(ctx, r.Value, new(events.MessageEvent))
				}
				if err != nil {
					b.Fatal(err)
				}
			})
		}
		elapsed := time.Since(start)
		b.StopTimer()
		u.report(b, l.events, elapsed)
		cl.Close()
	}
}

// writeRows folds the log in memory in batches of 5000 records (untimed)
// and times writing each batch's rows with write, one transaction a batch.
func writeRows(b *testing.B, l *benchLog, write func(ctx context.Context, tx pgx.Tx, bt *store.Batch) error) {
	for range b.N {
		b.StopTimer()
		pool, err := pgxpool.New(context.Background(), testenv.Postgres(b))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := pool.Exec(context.Background(), plainSchema); err != nil {
			b.Fatal(err)
		}
		gen := newBenchGen(uint64(l.n))
		state := map[string]merge.Record{}
		policy := merge.DefaultPolicy()
		var written time.Duration
		cpu := time.Duration(0)
		for done := 0; done < l.n; done += 5000 {
			bt := &store.Batch{Group: "bench", Offsets: map[string]map[int32]int64{schemas.CustomerEventsTopic: {0: int64(done)}}}
			changed := map[string]bool{}
			for range min(5000, l.n-done) {
				ev, msg := gen.next()
				var o merge.Outcome
				if ev != nil {
					state[ev.CustomerID], o = merge.Apply(state[ev.CustomerID], ev, policy)
					changed[ev.CustomerID] = changed[ev.CustomerID] || o.Changed
				} else {
					state[msg.CustomerID], o = merge.ApplyMessage(state[msg.CustomerID], msg, policy)
					changed[msg.CustomerID] = changed[msg.CustomerID] || o.Changed
					if o.Ignored == "" {
						bt.Messages = append(bt.Messages, *msg)
					}
				}
			}
			for id, c := range changed {
				if c {
					bt.Records = append(bt.Records, state[id])
				}
			}
			slices.SortFunc(bt.Records, func(x, y merge.Record) int { return strings.Compare(x.CustomerID, y.CustomerID) })
			cpu0, start := cpuTime(), time.Now()
			b.StartTimer()
			if err := pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error { return write(context.Background(), tx, bt) }); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			written += time.Since(start)
			cpu += cpuTime() - cpu0
		}
		pool.Close()
		b.ReportMetric(float64(l.n)/written.Seconds(), "events/s")
		b.ReportMetric(float64(cpu.Microseconds())/float64(l.n), "cpu-µs/event")
	}
}

const plainSchema = `
	CREATE TABLE customers (customer_id text PRIMARY KEY, version bigint NOT NULL, name text, phone text, email text,
		updated_at timestamptz NOT NULL, record json NOT NULL);
	CREATE TABLE customer_fields (customer_id text, field text, value json NOT NULL, occurred_at timestamptz NOT NULL,
		event_id text NOT NULL, channel text NOT NULL, source text NOT NULL, PRIMARY KEY (customer_id, field));
	CREATE TABLE messages (message_id text PRIMARY KEY, customer_id text NOT NULL, occurred_at timestamptz NOT NULL, event json NOT NULL);
	CREATE TABLE consumer_offsets (group_id text, topic text, partition integer, next_offset bigint NOT NULL,
		PRIMARY KEY (group_id, topic, partition))`

// plainRows are a batch's rows as column arrays.
type plainRows struct {
	ids, names, phones, emails, docs        []*string
	versions                                []int64
	updated                                 []time.Time
	fCust, fField, fValue, fEv, fChan, fSrc []string
	fAt                                     []time.Time
	mID, mCust, mEvent                      []string
	mAt                                     []time.Time
}

func rowsOf(bt *store.Batch) (*plainRows, error) {
	r := &plainRows{}
	str := func(rec *merge.Record, f string) *string {
		if g, ok := rec.Fields[f]; ok {
			return &g.Value
		}
		return nil
	}
	for i := range bt.Records {
		rec := &bt.Records[i]
		doc, err := rec.MarshalJSON()
		if err != nil {
			return nil, err
		}
		r.ids, r.docs = append(r.ids, &rec.CustomerID), append(r.docs, ptr(string(doc)))
		r.names, r.phones, r.emails = append(r.names, str(rec, "name")), append(r.phones, str(rec, "phone")), append(r.emails, str(rec, "email"))
		r.versions, r.updated = append(r.versions, rec.Version), append(r.updated, rec.UpdatedAt)
		for f, g := range rec.Fields {
			r.fCust, r.fField, r.fValue, r.fAt = append(r.fCust, rec.CustomerID), append(r.fField, f), append(r.fValue, g.Value), append(r.fAt, g.Stamp.At)
			r.fEv, r.fChan, r.fSrc = append(r.fEv, g.Stamp.EventID), append(r.fChan, string(g.Channel)), append(r.fSrc, g.Source)
		}
	}
	for i := range bt.Messages {
		m := &bt.Messages[i]
		ev, err := jsonOf(m)
		if err != nil {
			return nil, err
		}
		r.mID, r.mCust, r.mAt, r.mEvent = append(r.mID, m.MessageID), append(r.mCust, m.CustomerID), append(r.mAt, m.OccurredAt), append(r.mEvent, ev)
	}
	return r, nil
}

// unnestUpsert writes a batch with one multi-row UNNEST upsert per table.
func unnestUpsert(ctx context.Context, tx pgx.Tx, bt *store.Batch) error {
	r, err := rowsOf(bt)
	if err != nil {
		return err
	}
	batch := &pgx.Batch{}
	batch.Queue(`INSERT INTO customers SELECT u.id, u.version, u.name, u.phone, u.email, u.updated, u.doc::json
		FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[])
			AS u(id, version, name, phone, email, updated, doc)
		ON CONFLICT (customer_id) DO UPDATE SET version = excluded.version, name = excluded.name, phone = excluded.phone,
			email = excluded.email, updated_at = excluded.updated_at, record = excluded.record`,
		r.ids, r.versions, r.names, r.phones, r.emails, r.updated, r.docs)
	batch.Queue(`INSERT INTO customer_fields SELECT u.c, u.f, u.v::json, u.at, u.e, u.ch, u.s
		FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::text[]) AS u(c, f, v, at, e, ch, s)
		ON CONFLICT (customer_id, field) DO UPDATE SET value = excluded.value, occurred_at = excluded.occurred_at,
			event_id = excluded.event_id, channel = excluded.channel, source = excluded.source`,
		r.fCust, r.fField, r.fValue, r.fAt, r.fEv, r.fChan, r.fSrc)
	batch.Queue(`INSERT INTO messages SELECT u.id, u.c, u.at, u.e::json
		FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[]) AS u(id, c, at, e) ON CONFLICT (message_id) DO NOTHING`,
		r.mID, r.mCust, r.mAt, r.mEvent)
	queuePlainOffsets(batch, bt)
	return tx.SendBatch(ctx, batch).Close()
}

// copyRows writes a batch with COPY into temporary staging tables and one
// INSERT … SELECT … ON CONFLICT per table.
func copyRows(ctx context.Context, tx pgx.Tx, bt *store.Batch) error {
	r, err := rowsOf(bt)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS s_customers (LIKE customers) ON COMMIT DELETE ROWS;
		CREATE TEMP TABLE IF NOT EXISTS s_fields (LIKE customer_fields) ON COMMIT DELETE ROWS;
		CREATE TEMP TABLE IF NOT EXISTS s_messages (LIKE messages) ON COMMIT DELETE ROWS`); err != nil {
		return err
	}
	cust := make([][]any, len(r.ids))
	for i := range r.ids {
		cust[i] = []any{r.ids[i], r.versions[i], r.names[i], r.phones[i], r.emails[i], r.updated[i], r.docs[i]}
	}
	fields := make([][]any, len(r.fCust))
	for i := range r.fCust {
		fields[i] = []any{r.fCust[i], r.fField[i], r.fValue[i], r.fAt[i], r.fEv[i], r.fChan[i], r.fSrc[i]}
	}
	msgs := make([][]any, len(r.mID))
	for i := range r.mID {
		msgs[i] = []any{r.mID[i], r.mCust[i], r.mAt[i], r.mEvent[i]}
	}
	for _, c := range []struct {
		table string
		cols  []string
		rows  [][]any
	}{
		{"s_customers", []string{"customer_id", "version", "name", "phone", "email", "updated_at", "record"}, cust},
		{"s_fields", []string{"customer_id", "field", "value", "occurred_at", "event_id", "channel", "source"}, fields},
		{"s_messages", []string{"message_id", "customer_id", "occurred_at", "event"}, msgs},
	} {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{c.table}, c.cols, pgx.CopyFromRows(c.rows)); err != nil {
			return fmt.Errorf("COPY into %s: %w", c.table, err)
		}
	}
	batch := &pgx.Batch{}
	batch.Queue(`INSERT INTO customers SELECT * FROM s_customers ON CONFLICT (customer_id) DO UPDATE SET version = excluded.version,
		name = excluded.name, phone = excluded.phone, email = excluded.email, updated_at = excluded.updated_at, record = excluded.record`)
	batch.Queue(`INSERT INTO customer_fields SELECT * FROM s_fields ON CONFLICT (customer_id, field) DO UPDATE SET value = excluded.value,
		occurred_at = excluded.occurred_at, event_id = excluded.event_id, channel = excluded.channel, source = excluded.source`)
	batch.Queue(`INSERT INTO messages SELECT * FROM s_messages ON CONFLICT (message_id) DO NOTHING`)
	queuePlainOffsets(batch, bt)
	return tx.SendBatch(ctx, batch).Close()
}

func jsonOf(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func queuePlainOffsets(batch *pgx.Batch, bt *store.Batch) {
	for t, ps := range bt.Offsets {
		for p, n := range ps {
			batch.Queue(`INSERT INTO consumer_offsets VALUES ($1, $2, $3, $4)
				ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = excluded.next_offset`, bt.Group, t, p, n)
		}
	}
}
