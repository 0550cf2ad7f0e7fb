// Package materializer runs a consumer group that folds omnisync's customer
// events and messages into versioned records (package merge) and writes
// them, exactly once in effect, into a store (a store.Writer): each batch
// of records and the group's per-partition offsets are applied in one
// store transaction, and on (re)assignment the group seeks to the offsets
// the store holds. Offsets are also committed to Kafka so lag tools see
// progress. Each batch is a compare-and-set from the offsets the store
// held (store.Batch.From): when a replay swapped another store in or reset
// this one, or another writer moved them, the member drops the batch (and
// every later one it folded meanwhile, and the records it holds in
// memory) and resumes from the store's offsets; when the store now has
// another policy it stops (ErrPolicyChanged). NewReplay runs the same fold
// as a replayer.
//
// Transient failures (store or broker down, registry unreachable) are
// retried with the project's policy (package retry: backoff capped at 2 s,
// so work resumes within seconds of the dependency's return) and never skip
// data; while the store fails, StoreErr says so (and the metric
// omnisync_materializer_store_up is 0). Records that can never be decoded
// go to the dead-letter topic with the reason and their
// topic/partition/offset, and processing moves on.
//
// Membership is dynamic (see kafka.GroupOpts): a member that stops (Run
// returns) leaves the group at once, so the others take its partitions
// over in a rebalance; one that vanishes without leaving is evicted after
// kafka.GroupSessionTimeout.
package materializer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/deadletter"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/pkg/retry"
	"github.com/omnisync/omnisync/schemas"
)

// ErrPolicyChanged is returned by Run when the store was built with another
// merge policy: its records must be rebuilt by a replay.
var ErrPolicyChanged = errors.New("the store was built with another merge policy; run with the store's policy, or rebuild the store with omnisync replay --policy")

// Config configures a Materializer.
type Config struct {
	Kafka  kafka.Config
	Group  string // the consumer group, one per target store
	Store  store.Writer
	Serde  *codec.Serde
	Policy *merge.Policy // default merge.DefaultPolicy()
	// PublishState publishes each changed record to the compacted state
	// topic after the store commit.
	PublishState bool
	// MaxBatch is the most records applied in one store transaction;
	// default 5000.
	MaxBatch int
	// EventsTopic and MessagesTopic are the topics folded; default
	// schemas.CustomerEventsTopic and schemas.CustomerMessagesTopic
	// (benchmarks use topics of their own).
	EventsTopic, MessagesTopic string
	// StateTopic is where PublishState publishes; default
	// schemas.CustomerStateTopic.
	StateTopic string
	// Writers is how many store transactions run at once, each for other
	// partitions; default 1. PostgreSQL applies them in parallel; SQLite
	// has one writer, so more gain nothing there.
	Writers int
	// MaxCached is how many customer records the member keeps in memory
	// between batches, so that a customer folded again soon is not loaded
	// and decoded from the store again; default 20000. Records of batches
	// not yet applied are kept beyond it.
	MaxCached int
	// MaxCachedBytes bounds the same records by their estimated size;
	// default 32 MiB. Records grow with a customer's history, so with
	// the count alone the cache would grow with the events per customer.
	MaxCachedBytes int
	Logger         *zap.Logger
	Metrics        *Metrics // optional
}

// Materializer is one member of a consumer group, or (NewReplay) a
// replayer folding every partition into a store without joining a group.
type Materializer struct {
	cfg    Config
	opts   []kgo.Opt   // of the group member's client
	cl     *kgo.Client // created by Run (by NewReplay for a replayer)
	cache  *recordCache
	w      *writer
	replay bool // no group: direct partitions, no commits, no dead letters sent

	mu       sync.Mutex
	storeErr error // the last store operation's error; nil once one succeeds
	// held is, per owned partition, the offset the store holds for the
	// group as this member last read or applied it (store.NoOffset when
	// none); planned is where the store will be once every batch
	// submitted is applied: the next batch's From, below which polled
	// records are old (buffered from before a re-seek).
	held, planned map[string]map[int32]int64
	// generation is the store generation (store.Writer.Generation) read
	// with held: every batch carries it, so a store that changed under the
	// member's records refuses them even where the offsets agree.
	generation string
	// start is, for a replayer, where it started per partition.
	start map[string]map[int32]int64
}

// withDefaults fills in cfg's defaults.
func withDefaults(cfg Config) Config {
	if cfg.Policy == nil {
		cfg.Policy = merge.DefaultPolicy()
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 5000
	}
	if cfg.Writers <= 0 {
		cfg.Writers = 1
	}
	cfg.EventsTopic = cmp.Or(cfg.EventsTopic, schemas.CustomerEventsTopic)
	cfg.MessagesTopic = cmp.Or(cfg.MessagesTopic, schemas.CustomerMessagesTopic)
	cfg.StateTopic = cmp.Or(cfg.StateTopic, schemas.CustomerStateTopic)
	if cfg.MaxCached <= 0 {
		cfg.MaxCached = 20000
	}
	if cfg.MaxCachedBytes <= 0 {
		cfg.MaxCachedBytes = 32 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return cfg
}

// New returns a member of cfg.Group; Run starts it.
func New(cfg Config) (*Materializer, error) {
	cfg = withDefaults(cfg)
	m := &Materializer{cfg: cfg, cache: newRecordCache(cfg.MaxCached, cfg.MaxCachedBytes), w: newWriter(cfg.Writers),
		held: map[string]map[int32]int64{}, planned: map[string]map[int32]int64{}}
	if _, err := cfg.Kafka.Opts(); err != nil {
		return nil, err
	}
	m.opts = append(kafka.GroupOpts(),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.EventsTopic, cfg.MessagesTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.AdjustFetchOffsetsFn(m.storeOffsets),
		// The range assignor gives partition i of both topics (same count,
		// keyed by customer ID) to one member, so one member folds each
		// customer; the sticky default does not promise that.
		kgo.Balancers(kgo.RangeBalancer()),
		// With BlockRebalanceOnPoll these run between batches, after the
		// polled batch is in the store: a partition moves to its new owner
		// only with the store's offsets for all that was polled from it.
		kgo.OnPartitionsRevoked(m.revoked),
		kgo.OnPartitionsLost(m.revoked),
		// Fetch no more than a few batches ahead: the client buffers what
		// it fetched, and on a replay it could fetch far ahead of the
		// store (franz-go's defaults buffer up to 50 MB compressed per
		// broker).
		kgo.FetchMaxBytes(fetchMaxBytes),
		// Small per-partition shares make a poll span several partitions,
		// whose batches the writer applies at once.
		kgo.FetchMaxPartitionBytes(fetchMaxBytes/16),
		kgo.MaxConcurrentFetches(2),
	)
	return m, nil
}

// storeOffsets replaces the offsets committed in Kafka with the ones the
// store holds: the store is the truth of what it has applied.
func (m *Materializer) storeOffsets(ctx context.Context, assigned map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	held, gen, err := m.readOffsets(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]map[int32]kgo.Offset, len(assigned))
	resume := map[string]map[int32]int64{}
	for topic, parts := range assigned {
		out[topic] = make(map[int32]kgo.Offset, len(parts))
		for p := range parts {
			if next, ok := held[topic][p]; ok {
				out[topic][p] = kgo.NewOffset().At(next).WithEpoch(-1)
				if resume[topic] == nil {
					resume[topic] = map[int32]int64{}
				}
				resume[topic][p] = next
			} else {
				out[topic][p] = kgo.NewOffset().AtStart()
			}
		}
	}
	m.mu.Lock()
	m.generation = gen
	for topic, parts := range assigned {
		if m.held[topic] == nil {
			m.held[topic], m.planned[topic] = map[int32]int64{}, map[int32]int64{}
		}
		for p := range parts {
			next, ok := held[topic][p]
			if !ok {
				next = store.NoOffset
			}
			m.held[topic][p], m.planned[topic][p] = next, next
		}
	}
	m.mu.Unlock()
	m.cfg.Metrics.setNext(resume)
	m.cfg.Logger.Info("partitions assigned; resuming at the store's offsets", zap.Any("offsets", resume))
	return out, nil
}

// fetchMaxBytes bounds one fetch response (compressed bytes).
const fetchMaxBytes = 4 << 20

// lockWriter takes the write lock of a store that has one writer at a
// time, waiting as a standby while another member holds it: a second
// member of a SQLite store's group would only contend for the same lock.
// It returns nil and no error when ctx ends first.
func (m *Materializer) lockWriter(ctx context.Context, sw store.SingleWriter) (unlock func(), err error) {
	for logged := false; ; logged = true {
		unlock, ok, err := sw.TryLockWriter()
		if err != nil {
			return nil, fmt.Errorf("taking the store's write lock: %w", err)
		}
		if ok {
			if logged {
				m.cfg.Logger.Info("took the store's write lock; joining the group")
			}
			return unlock, nil
		}
		if !logged {
			m.cfg.Logger.Warn("another process writes this store, which has one writer (SQLite): this member waits as a standby " +
				"and joins the group when the writer stops; use PostgreSQL to spread partitions over members")
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// revoked waits until every polled batch is in the store (or dropped,
// or the writer stopped), so partitions move only between applied
// batches, forgets the records held in memory (another member may write
// them now) and the offsets and lag of partitions this member no longer
// owns.
func (m *Materializer) revoked(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
	m.w.drain()
	m.cache.reset()
	m.mu.Lock()
	for topic, ps := range parts {
		for _, p := range ps {
			delete(m.held[topic], p)
			delete(m.planned[topic], p)
		}
	}
	m.mu.Unlock()
	m.cfg.Metrics.revoked(parts)
	if len(parts) > 0 {
		m.cfg.Logger.Info("partitions revoked", zap.Any("partitions", parts))
	}
}

// Run consumes until ctx ends. It returns ErrPolicyChanged (wrapped) when
// the store was built with another policy, and nil after a clean shutdown.
func (m *Materializer) Run(ctx context.Context) error {
	if sw, ok := m.cfg.Store.(store.SingleWriter); ok {
		unlock, err := m.lockWriter(ctx, sw)
		if err != nil || ctx.Err() != nil {
			return err
		}
		defer unlock()
	}
	cl, err := kafka.NewClient(m.cfg.Kafka, m.opts...)
	if err != nil {
		return err
	}
	m.cl = cl
	defer func() {
		if err := kafka.CloseMember(m.cl); err != nil {
			m.cfg.Logger.Warn("leaving the consumer group", zap.Error(err))
		}
	}()
	if err := m.checkPolicy(ctx); err != nil {
		return err
	}
	var publisher *kgo.Client
	if m.cfg.PublishState {
		if publisher, err = kafka.NewClient(m.cfg.Kafka); err != nil {
			return err
		}
		defer publisher.Close()
	}
	// Polled batches are folded here and applied in order by the writer
	// goroutine, so the next batch is read, decoded and folded while the
	// store applies the one before. A rebalance waits in revoked until the
	// writer has applied every polled batch. When the store refused a
	// batch because its offsets moved, the writer drops every later batch
	// and wakes the poll; the member then re-seeks (resync).
	go m.w.run(ctx, m, publisher)
	defer m.w.close()
	for {
		pctx, wake := context.WithCancel(ctx)
		m.w.setWake(wake)
		fs := m.cl.PollRecords(pctx, m.cfg.MaxBatch)
		m.w.setWake(nil)
		wake()
		if ctx.Err() != nil {
			return nil
		}
		if err := m.w.failed(); err != nil {
			return err
		}
		if m.w.moved() {
			// What was polled may predate the re-seek.
			if err := m.resync(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			m.cl.AllowRebalance()
			continue
		}
		fs.EachError(func(topic string, p int32, err error) {
			m.cfg.Logger.Warn("fetch error", zap.String("topic", topic), zap.Int32("partition", p), zap.Error(err))
		})
		m.cfg.Metrics.fetched(fs)
		recs := fs.Records()
		if len(recs) > 0 {
			jobs, err := m.fold(ctx, recs)
			for _, j := range jobs {
				if err == nil {
					err = m.w.submit(ctx, j)
				}
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
		m.cl.AllowRebalance()
	}
}

// checkPolicy refuses a store built with another merge policy.
func (m *Materializer) checkPolicy(ctx context.Context) error {
	hash, err := m.cfg.Store.PolicyHash(ctx)
	if err != nil {
		return fmt.Errorf("reading the store's policy hash: %w", err)
	}
	m.setStoreErr(nil)
	if hash != "" && hash != m.cfg.Policy.Hash() {
		return fmt.Errorf("%w (store %s, configured %s)", ErrPolicyChanged, hash, m.cfg.Policy.Hash())
	}
	return nil
}

// readOffsets reads the store's generation, then the group's offsets: a
// store swapped in between is refused at the first batch.
func (m *Materializer) readOffsets(ctx context.Context) (held map[string]map[int32]int64, gen string, err error) {
	err = m.storeOp(ctx, "reading the store's offsets", func() error {
		if gen, err = m.cfg.Store.Generation(ctx); err != nil {
			return err
		}
		held, err = m.cfg.Store.Offsets(ctx, m.cfg.Group)
		return err
	})
	return held, gen, err
}

// resync follows the store after it refused a batch because its offsets
// moved under this member (a replay's swap or reset, a zombie member):
// once every submitted batch is applied or dropped, it forgets the
// records held in memory (folded from a store state that may no longer
// exist), reads the store's offsets and moves every owned partition there
// (kgo.Client.SetOffsets drops what was buffered).
func (m *Materializer) resync(ctx context.Context) error {
	m.w.drain()
	m.cache.reset()
	held, gen, err := m.readOffsets(ctx)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.generation = gen
	set := map[string]map[int32]kgo.EpochOffset{}
	resume := map[string]map[int32]int64{}
	for topic, parts := range m.held {
		set[topic], resume[topic] = map[int32]kgo.EpochOffset{}, map[int32]int64{}
		for p := range parts {
			next, ok := held[topic][p]
			if ok {
				resume[topic][p] = next
			}
			parts[p], m.planned[topic][p] = next, next
			if !ok {
				// Offset 0 is the log's start, or out of range and reset
				// to the start (ConsumeResetOffset); a replayer restarts
				// where it started.
				parts[p], m.planned[topic][p] = store.NoOffset, store.NoOffset
				next = 0
				if m.replay {
					next = m.start[topic][p]
				}
			}
			set[topic][p] = kgo.EpochOffset{Epoch: -1, Offset: next}
		}
	}
	m.mu.Unlock()
	m.cfg.Logger.Warn("the store's offsets moved under this member (a replay's swap or reset, or another member); resuming from them",
		zap.Any("offsets", resume))
	m.cl.SetOffsets(set)
	m.cfg.Metrics.setNext(resume)
	m.w.resume()
	return nil
}

// fresh drops the records of partitions this member does not own and
// those below the offsets the store will hold once the submitted batches
// are applied (left in the client's buffers from before a re-seek).
func (m *Materializer) fresh(recs []*kgo.Record) []*kgo.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := recs[:0:0]
	for _, rec := range recs {
		planned, ok := m.planned[rec.Topic][rec.Partition]
		if !ok || (planned != store.NoOffset && rec.Offset < planned) {
			continue
		}
		out = append(out, rec)
	}
	return out
}

// plan returns the From of a batch of partition number p (the offsets
// the store will hold for p of both topics once the batches before it are
// applied) and records that the store will hold offsets once it is.
func (m *Materializer) plan(p int32, offsets map[string]map[int32]int64) map[string]map[int32]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	from := map[string]map[int32]int64{}
	for _, topic := range []string{m.cfg.EventsTopic, m.cfg.MessagesTopic} {
		if planned, ok := m.planned[topic][p]; ok {
			from[topic] = map[int32]int64{p: planned}
		}
	}
	for topic, parts := range offsets {
		for p, next := range parts {
			if _, ok := m.planned[topic][p]; ok {
				m.planned[topic][p] = next
			}
		}
	}
	return from
}

// applied records the offsets a batch moved the store to.
func (m *Materializer) applied(offsets map[string]map[int32]int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for topic, parts := range offsets {
		for p, next := range parts {
			if _, owned := m.held[topic][p]; owned {
				m.held[topic][p] = next
			}
		}
	}
}

// job is a folded batch of one partition number for the writer.
type job struct {
	partition int32
	batch     *store.Batch
	stats     batchStats
	// commit is the offsets to commit to Kafka once applied.
	commit map[string]map[int32]kgo.EpochOffset
	done   chan struct{} // closed once applied, or once the writer stopped
}

// fold decodes and folds one polled batch into the records and offsets of
// store transactions, one per partition number. Records of a partition
// arrive in order; a customer's events are all on one partition.
func (m *Materializer) fold(ctx context.Context, recs []*kgo.Record) ([]*job, error) {
	recs = m.fresh(recs)
	if len(recs) == 0 {
		return nil, nil
	}
	decoded, deadLetters, err := m.decode(ctx, recs)
	if err != nil {
		return nil, err
	}
	if m.replay {
		// The live group sent them when it read these records first.
		deadLetters = nil
	}
	if len(deadLetters) > 0 {
		if err := m.retry(ctx, "writing dead letters", func() error {
			return kafka.ProduceAndWait(ctx, m.cl, deadLetters...)
		}); err != nil {
			return nil, err
		}
		m.cfg.Metrics.deadLetters(len(deadLetters))
	}

	// The records of this batch's customers: from memory (which holds
	// what this member folded, applied or not yet), else one Load of the
	// rest. A customer not in memory is in no batch the writer has yet to
	// apply, so the store's row is current. Both are of the generation
	// read here (a resync, which changes it, runs on this goroutine).
	m.mu.Lock()
	gen := m.generation
	m.mu.Unlock()
	current := map[string]merge.Record{}
	var missing []string
	for _, d := range decoded {
		id := d.CustomerID()
		if _, ok := current[id]; ok {
			continue
		}
		if r, ok := m.cache.get(id); ok {
			current[id] = r
		} else {
			current[id] = merge.Record{}
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		var stored map[string]merge.Record
		if err := m.storeOp(ctx, "loading records", func() error {
			var err error
			stored, err = m.cfg.Store.Load(ctx, missing)
			return err
		}); err != nil {
			return nil, err
		}
		for id, r := range stored {
			current[id] = r
			m.cache.add(id, r)
		}
	}

	// One job per partition number: a customer's events and messages are
	// on the same partition of both topics, so each job holds all of its
	// customers' changes and the offsets they came to, and the writer may
	// apply jobs of other partitions at once.
	jobs := map[int32]*job{}
	jobOf := func(p int32) *job {
		j := jobs[p]
		if j == nil {
			j = &job{partition: p, done: make(chan struct{}), commit: map[string]map[int32]kgo.EpochOffset{},
				batch: &store.Batch{Group: m.cfg.Group, PolicyHash: m.cfg.Policy.Hash(), Generation: gen, Offsets: map[string]map[int32]int64{}}}
			jobs[p] = j
		}
		return j
	}
	perPartition := map[int32][]Decoded{}
	for _, d := range decoded {
		perPartition[d.partition] = append(perPartition[d.partition], d.Decoded)
	}
	before := maps.Clone(current)
	outcomes := map[int32]*stats{}
	var emitted []events.CustomerEvent
	for _, p := range slices.Sorted(maps.Keys(perPartition)) {
		j, o := jobOf(p), &stats{}
		outcomes[p] = o
		j.batch.Records, j.batch.Messages = Fold(current, perPartition[p], m.cfg.Policy, func(out merge.Outcome) {
			o.add(out)
			emitted = append(emitted, out.Emit...)
		})
		for _, r := range j.batch.Records {
			current[r.CustomerID] = r
			// What the customer was before this batch, as the store holds
			// it once the batches before are applied: the store then
			// writes only the child rows that changed.
			if b, ok := before[r.CustomerID]; ok && b.Version > 0 {
				if j.batch.Base == nil {
					j.batch.Base = map[string]merge.Record{}
				}
				j.batch.Base[r.CustomerID] = b
			}
		}
	}
	for _, rec := range recs {
		j := jobOf(rec.Partition)
		if j.batch.Offsets[rec.Topic] == nil {
			j.batch.Offsets[rec.Topic] = map[int32]int64{}
			j.commit[rec.Topic] = map[int32]kgo.EpochOffset{}
		}
		j.batch.Offsets[rec.Topic][rec.Partition] = rec.Offset + 1
		j.commit[rec.Topic][rec.Partition] = kgo.EpochOffset{Epoch: rec.LeaderEpoch, Offset: rec.Offset + 1}
	}
	// Emitted events are in the log before any store transaction of this
	// batch commits (docs/design.md, Customer merge): a crash in between
	// folds the batch again and emits the same events, which the receiving
	// fold absorbs as duplicates.
	if err := m.emit(ctx, emitted); err != nil {
		return nil, err
	}
	out := make([]*job, 0, len(jobs))
	for _, p := range slices.Sorted(maps.Keys(jobs)) {
		j := jobs[p]
		var o stats
		if outcomes[p] != nil {
			o = *outcomes[p]
		}
		j.stats = newBatchStats(o, perPartition[p])
		j.batch.From = m.plan(p, j.batch.Offsets)
		m.cache.pin(j.batch.Records)
		out = append(out, j)
	}
	return out, nil
}

// emit produces the events a batch's fold emitted, in fold order, keyed by
// their customer ID, to the events topic and waits for Kafka's
// acknowledgement. A replayer emits too: under a new policy its hand-offs
// are not in the log yet, and under the same one its copies are the live
// group's, absorbed as duplicates (docs/design.md, Replay).
func (m *Materializer) emit(ctx context.Context, evs []events.CustomerEvent) error {
	if len(evs) == 0 {
		return nil
	}
	recs := make([]*kgo.Record, len(evs))
	for i := range evs {
		value, err := m.cfg.Serde.Encode(&evs[i])
		if err != nil {
			return fmt.Errorf("encoding emitted event %s of customer %s: %w", evs[i].EventID, evs[i].CustomerID, err)
		}
		recs[i] = &kgo.Record{Topic: m.cfg.EventsTopic, Key: []byte(evs[i].CustomerID), Value: value}
	}
	if err := m.retry(ctx, "producing emitted events", func() error {
		return kafka.ProduceAndWait(ctx, m.cl, recs...)
	}); err != nil {
		return err
	}
	m.cfg.Metrics.emittedEvents(len(recs))
	return nil
}

// apply writes a folded batch to the store, then commits its offsets to
// Kafka and publishes its records. When the store's offsets moved from
// the batch's From it writes nothing and returns the
// *store.OffsetsMovedError; when the store has another policy, an
// ErrPolicyChanged.
func (m *Materializer) apply(ctx context.Context, j *job, publisher *kgo.Client) error {
	batch := j.batch
	var refused error // by the compare-and-set: the store answered
	err := m.storeOp(ctx, "applying a batch to the store", func() error {
		err := m.cfg.Store.Apply(ctx, batch)
		var moved *store.OffsetsMovedError
		if errors.As(err, &moved) || errors.Is(err, store.ErrPolicyMismatch) {
			refused = err
			return nil
		}
		return err
	})
	switch {
	case err != nil:
		return err
	case errors.Is(refused, store.ErrPolicyMismatch):
		return fmt.Errorf("%w: %w", ErrPolicyChanged, refused)
	case refused != nil:
		return refused
	}
	m.applied(batch.Offsets)
	m.cache.unpin(batch.Records)
	m.cfg.Metrics.observeBatch(j.stats, time.Now())
	m.cfg.Metrics.setNext(batch.Offsets)
	if m.replay {
		return nil
	}

	// For lag tools; the store's offsets are the truth, so a failed commit
	// is only logged. It does not wait: a rebalance may be waiting for
	// this writer.
	m.cl.CommitOffsets(ctx, j.commit, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
		if err != nil && ctx.Err() == nil {
			m.cfg.Logger.Warn("committing offsets to Kafka", zap.Error(err))
		}
	})
	if publisher != nil && len(batch.Records) > 0 {
		if err := m.retry(ctx, "publishing state", func() error { return m.publish(ctx, publisher, batch.Records) }); err != nil {
			return err
		}
	}
	return nil
}

// Decoded is one decoded record of the events or the messages topic:
// exactly one of Event and Message is set.
type Decoded struct {
	Event   *events.CustomerEvent
	Message *events.MessageEvent
}

// CustomerID is the customer the record is for.
func (d Decoded) CustomerID() string {
	if d.Event != nil {
		return d.Event.CustomerID
	}
	return d.Message.CustomerID
}

func (d Decoded) ingestedAt() time.Time {
	if d.Event != nil {
		return d.Event.IngestedAt
	}
	return d.Message.IngestedAt
}

// check refuses what no store can hold: numbers that are not finite
// (Avro's double carries NaN and infinities; JSON and SQL do not); and a
// merge hand-off whose snapshot does not decode (checkHandOff).
func (d Decoded) check() error {
	if e := d.Event; e != nil {
		return checkHandOff(e)
	}
	m := d.Message
	if m == nil {
		return nil
	}
	finite := func(name string, v float64) error {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("message %s: %s is %v, not a finite number", m.MessageID, name, v)
		}
		return nil
	}
	if l := m.Location; l != nil {
		if err := errors.Join(finite("location.latitude", l.Latitude), finite("location.longitude", l.Longitude),
			finite("location.precision_m", l.PrecisionM)); err != nil {
			return err
		}
	}
	if tr := m.Transcript; tr != nil {
		return finite("transcript.confidence", float64(tr.Confidence))
	}
	return nil
}

// checkHandOff refuses a MERGE hand-off (emitted: it carries a policy
// hash) whose snapshot does not decode to the absorbed customer's record,
// which merge.Apply would ignore as malformed.
func checkHandOff(e *events.CustomerEvent) error {
	m := e.Merge
	if e.Op != events.OpMerge || m == nil || m.PolicyHash == "" || m.SnapshotJSON == nil {
		return nil
	}
	var r merge.Record
	if err := r.UnmarshalJSON([]byte(*m.SnapshotJSON)); err != nil {
		return fmt.Errorf("merge hand-off %s: snapshot_json does not decode: %w", e.EventID, err)
	}
	if r.CustomerID != m.AbsorbedID {
		return fmt.Errorf("merge hand-off %s: snapshot_json is the record of %q, not of the absorbed customer %q", e.EventID, r.CustomerID, m.AbsorbedID)
	}
	return nil
}

// RejectedError is a record that can never be folded: it does not decode,
// holds a number no store can hold, is a merge hand-off whose
// snapshot does not decode, or its key is not its customer ID. The
// materializer sends it to the dead-letter topic with Reason.
type RejectedError struct{ Reason error }

func (e *RejectedError) Error() string { return "record rejected: " + e.Reason.Error() }
func (e *RejectedError) Unwrap() error { return e.Reason }

// Decode decodes one record of the events or the messages topic as the
// materializer does. A record that can never be folded is a
// *RejectedError; any other error is transient (the registry did not
// answer) and worth retrying. A record of another topic decodes to the
// zero Decoded, which callers skip.
func Decode(ctx context.Context, serde *codec.Serde, rec *kgo.Record) (Decoded, error) {
	return decodeFrom(ctx, serde, rec, schemas.CustomerEventsTopic, schemas.CustomerMessagesTopic)
}

// decodeFrom is Decode with the events and the messages topic named.
func decodeFrom(ctx context.Context, serde *codec.Serde, rec *kgo.Record, eventsTopic, messagesTopic string) (Decoded, error) {
	var d Decoded
	var target any
	switch rec.Topic {
	case eventsTopic:
		d.Event = new(events.CustomerEvent)
		target = d.Event
	case messagesTopic:
		d.Message = new(events.MessageEvent)
		target = d.Message
	default:
		return Decoded{}, nil
	}
	if err := serde.Decode(ctx, rec.Value, target); err != nil {
		var de *codec.DecodeError
		if errors.As(err, &de) {
			return Decoded{}, &RejectedError{err}
		}
		return Decoded{}, err
	}
	why := d.check()
	if d.CustomerID() == "" || d.CustomerID() != string(rec.Key) {
		why = fmt.Errorf("record key %q does not match its customer ID %q", rec.Key, d.CustomerID())
	}
	if why != nil {
		return Decoded{}, &RejectedError{why}
	}
	return d, nil
}

// Fold folds decoded records, in order, into their customers' records
// under policy p, as the materializer folds every batch: stored holds the
// records before (a customer absent has the zero record; stored is not
// modified). It returns the changed records, sorted by customer ID, and
// the messages to store, in order. outcome, when not nil, is called with
// every event's outcome.
func Fold(stored map[string]merge.Record, decoded []Decoded, p *merge.Policy, outcome func(merge.Outcome)) ([]merge.Record, []events.MessageEvent) {
	changed := map[string]merge.Record{}
	var messages []events.MessageEvent
	for _, d := range decoded {
		id := d.CustomerID()
		r, ok := changed[id]
		if !ok {
			r = stored[id]
		}
		var o merge.Outcome
		switch {
		case d.Event != nil:
			r, o = merge.Apply(r, d.Event, p)
		case d.Message != nil:
			r, o = merge.ApplyMessage(r, d.Message, p)
			if o.Ignored == "" {
				messages = append(messages, *d.Message)
			}
		}
		if outcome != nil {
			outcome(o)
		}
		if o.Changed {
			changed[id] = r
		}
	}
	records := make([]merge.Record, 0, len(changed))
	for _, id := range keys(changed) {
		records = append(records, changed[id])
	}
	return records, messages
}

// decoded is a decoded record and the partition it came from.
type decoded struct {
	Decoded
	partition int32
}

// decode decodes every record, retrying transient failures; records that
// will never decode or cannot be stored become dead letters. The records
// are decoded on GOMAXPROCS goroutines and returned in their order.
func (m *Materializer) decode(ctx context.Context, recs []*kgo.Record) ([]decoded, []*kgo.Record, error) {
	type result struct {
		d   Decoded
		why error // not storable: a dead letter
	}
	results := make([]result, len(recs))
	workers := min(runtime.GOMAXPROCS(0), (len(recs)+255)/256)
	chunk := (len(recs) + workers - 1) / workers
	g, gctx := errgroup.WithContext(ctx)
	for start := 0; start < len(recs); start += chunk {
		part := recs[start:min(start+chunk, len(recs))]
		out := results[start:]
		g.Go(func() error {
			for i, rec := range part {
				var d Decoded
				err := m.retry(gctx, "decoding a record", func() error {
					var err error
					d, err = decodeFrom(gctx, m.cfg.Serde, rec, m.cfg.EventsTopic, m.cfg.MessagesTopic)
					var rejected *RejectedError
					if errors.As(err, &rejected) {
						return retry.Permanent(err)
					}
					return err
				})
				var rejected *RejectedError
				switch {
				case errors.As(err, &rejected):
					out[i] = result{why: rejected.Reason}
				case err != nil:
					return err
				default:
					out[i] = result{d: d}
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	out := make([]decoded, 0, len(recs))
	var dead []*kgo.Record
	for i, r := range results {
		switch {
		case r.why != nil:
			dl, err := m.deadLetter(recs[i], r.why)
			if err != nil {
				return nil, nil, err
			}
			dead = append(dead, dl)
		case r.d.Event != nil || r.d.Message != nil: // else another topic
			out = append(out, decoded{r.d, recs[i].Partition})
		}
	}
	return out, dead, nil
}

func (m *Materializer) deadLetter(rec *kgo.Record, why error) (*kgo.Record, error) {
	m.cfg.Logger.Warn("record sent to the dead-letter topic", zap.String("topic", rec.Topic),
		zap.Int32("partition", rec.Partition), zap.Int64("offset", rec.Offset), zap.Error(why))
	dl, err := deadletter.Consumed(m.cfg.Serde, schemas.DeadLetterTopic, rec, events.DeadLetter{
		Stage: "materialize", Component: "materializer/" + m.cfg.Group, Reason: why.Error(),
	})
	if err != nil {
		return nil, fmt.Errorf("encoding a dead letter: %w", err)
	}
	return dl, nil
}

func (m *Materializer) publish(ctx context.Context, cl *kgo.Client, records []merge.Record) error {
	out := make([]*kgo.Record, 0, len(records))
	for _, r := range records {
		st := r.State()
		value, err := m.cfg.Serde.Encode(&st)
		if err != nil {
			return fmt.Errorf("encoding state of %s: %w", r.CustomerID, err)
		}
		out = append(out, &kgo.Record{Topic: m.cfg.StateTopic, Key: []byte(r.CustomerID), Value: value})
	}
	return kafka.ProduceAndWait(ctx, cl, out...)
}

// retry runs fn with the project's retry policy.
func (m *Materializer) retry(ctx context.Context, what string, fn func() error) error {
	return retry.Do(ctx, m.cfg.Logger, what, fn)
}

// storeOp runs a store operation with the retry policy, recording whether
// the store answers.
func (m *Materializer) storeOp(ctx context.Context, what string, fn func() error) error {
	return m.retry(ctx, what, func() error {
		err := fn()
		if ctx.Err() == nil { // an error from our own shutdown says nothing of the store
			m.setStoreErr(err)
		}
		return err
	})
}

func (m *Materializer) setStoreErr(err error) {
	m.mu.Lock()
	was := m.storeErr
	m.storeErr = err
	m.mu.Unlock()
	m.cfg.Metrics.storeUp(err == nil)
	switch {
	case err != nil && was == nil:
		m.cfg.Logger.Error("store unavailable; retrying", zap.Error(err))
	case err == nil && was != nil:
		m.cfg.Logger.Info("store available again")
	}
}

// StoreErr is nil while the store answers, else the error of the last
// store operation, which is being retried: the member makes no progress
// until the store is back.
func (m *Materializer) StoreErr() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.storeErr != nil {
		return fmt.Errorf("store unavailable: %w", m.storeErr)
	}
	return nil
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
