// Package materializer runs a consumer group that folds omnisync's customer
// events and messages into versioned records (package merge) and writes
// them, exactly once in effect, into a store (a store.Writer): each batch
// of records and the group's per-partition offsets are applied in one
// store transaction, and on (re)assignment the group seeks to the offsets
// the store holds. Offsets are also committed to Kafka so lag tools see
// progress.
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
var ErrPolicyChanged = errors.New("the store was built with another merge policy; replay the topics into a fresh store")

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
	// Writers is how many store transactions run at once, each for other
	// partitions; default 1. PostgreSQL applies them in parallel; SQLite
	// has one writer, so more gain nothing there.
	Writers int
	// MaxCached is how many customer records the member keeps in memory
	// between batches, so that a customer folded again soon is not loaded
	// and decoded from the store again; default 20000. Records of batches
	// not yet applied are kept beyond it.
	MaxCached int
	Logger    *zap.Logger
	Metrics   *Metrics // optional
}

// Materializer is one member of a consumer group.
type Materializer struct {
	cfg   Config
	opts  []kgo.Opt   // of the group member's client
	cl    *kgo.Client // created by Run
	cache *recordCache
	w     *writer

	mu       sync.Mutex
	storeErr error // the last store operation's error; nil once one succeeds
}

// New returns a member of cfg.Group; Run starts it.
func New(cfg Config) (*Materializer, error) {
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
	if cfg.MaxCached <= 0 {
		cfg.MaxCached = 20000
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	m := &Materializer{cfg: cfg, cache: newRecordCache(cfg.MaxCached), w: newWriter(cfg.Writers)}
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
	var held map[string]map[int32]int64
	err := m.storeOp(ctx, "reading the store's offsets", func() error {
		var err error
		held, err = m.cfg.Store.Offsets(ctx, m.cfg.Group)
		return err
	})
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

// revoked waits until every polled batch is in the store (or the writer
// stopped), so partitions move only between applied batches, forgets the
// records held in memory (another member may write them now) and the lag
// of partitions this member no longer owns.
func (m *Materializer) revoked(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
	m.w.drain()
	m.cache.reset()
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
	hash, err := m.cfg.Store.PolicyHash(ctx)
	if err != nil {
		return fmt.Errorf("reading the store's policy hash: %w", err)
	}
	m.setStoreErr(nil)
	if hash != "" && hash != m.cfg.Policy.Hash() {
		return fmt.Errorf("%w (store %s, configured %s)", ErrPolicyChanged, hash, m.cfg.Policy.Hash())
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
	// writer has applied every polled batch.
	go m.w.run(ctx, m, publisher)
	defer m.w.close()
	for {
		fs := m.cl.PollRecords(ctx, m.cfg.MaxBatch)
		if ctx.Err() != nil {
			return nil
		}
		if err := m.w.failed(); err != nil {
			return err
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
	decoded, deadLetters, err := m.decode(ctx, recs)
	if err != nil {
		return nil, err
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
	// apply, so the store's row is current.
	current := map[string]merge.Record{}
	var missing []string
	for _, d := range decoded {
		id := d.customerID()
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
				batch: &store.Batch{Group: m.cfg.Group, PolicyHash: m.cfg.Policy.Hash(), Offsets: map[string]map[int32]int64{}}}
			jobs[p] = j
		}
		return j
	}
	before := maps.Clone(current)
	changed := map[string]int32{} // customer → partition
	outcomes := map[int32]*stats{}
	for _, d := range decoded {
		id := d.customerID()
		j := jobOf(d.partition)
		r := current[id]
		var o merge.Outcome
		switch {
		case d.event != nil:
			r, o = merge.Apply(r, d.event, m.cfg.Policy)
		case d.message != nil:
			r, o = merge.ApplyMessage(r, d.message, m.cfg.Policy)
			if o.Ignored == "" {
				j.batch.Messages = append(j.batch.Messages, *d.message)
			}
		}
		if outcomes[d.partition] == nil {
			outcomes[d.partition] = &stats{}
		}
		outcomes[d.partition].add(o)
		if o.Changed {
			current[id] = r
			changed[id] = d.partition
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
	for _, id := range keys(changed) {
		j := jobs[changed[id]]
		j.batch.Records = append(j.batch.Records, current[id])
		// What the customer was before this batch, as the store holds it
		// once the batches before are applied: the store then writes only
		// the child rows that changed.
		if b, ok := before[id]; ok && b.Version > 0 {
			if j.batch.Base == nil {
				j.batch.Base = map[string]merge.Record{}
			}
			j.batch.Base[id] = b
		}
	}
	perPartition := map[int32][]decodedRecord{}
	for _, d := range decoded {
		perPartition[d.partition] = append(perPartition[d.partition], d)
	}
	out := make([]*job, 0, len(jobs))
	for _, p := range slices.Sorted(maps.Keys(jobs)) {
		j := jobs[p]
		var o stats
		if outcomes[p] != nil {
			o = *outcomes[p]
		}
		j.stats = newBatchStats(o, perPartition[p])
		m.cache.pin(j.batch.Records)
		out = append(out, j)
	}
	return out, nil
}

// apply writes a folded batch to the store, then commits its offsets to
// Kafka and publishes its records.
func (m *Materializer) apply(ctx context.Context, j *job, publisher *kgo.Client) error {
	batch := j.batch
	if err := m.storeOp(ctx, "applying a batch to the store", func() error { return m.cfg.Store.Apply(ctx, batch) }); err != nil {
		return err
	}
	m.cache.unpin(batch.Records)
	m.cfg.Metrics.observeBatch(j.stats, time.Now())
	m.cfg.Metrics.setNext(batch.Offsets)

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

type decodedRecord struct {
	event     *events.CustomerEvent
	message   *events.MessageEvent
	partition int32
}

func (d decodedRecord) customerID() string {
	if d.event != nil {
		return d.event.CustomerID
	}
	return d.message.CustomerID
}

func (d decodedRecord) ingestedAt() time.Time {
	if d.event != nil {
		return d.event.IngestedAt
	}
	return d.message.IngestedAt
}

// check refuses what no store can hold: numbers that are not finite
// (Avro's double carries NaN and infinities; JSON and SQL do not).
func (d decodedRecord) check() error {
	m := d.message
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

// decode decodes every record, retrying transient failures; records that
// will never decode or cannot be stored become dead letters. The records
// are decoded on GOMAXPROCS goroutines and returned in their order.
func (m *Materializer) decode(ctx context.Context, recs []*kgo.Record) ([]decodedRecord, []*kgo.Record, error) {
	type result struct {
		d   decodedRecord
		why error // not storable: a dead letter
		ok  bool  // false: skipped (another topic)
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
				d, why, ok, err := m.decodeOne(gctx, rec)
				if err != nil {
					return err
				}
				out[i] = result{d, why, ok}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	out := make([]decodedRecord, 0, len(recs))
	var dead []*kgo.Record
	for i, r := range results {
		switch {
		case r.why != nil:
			dl, err := m.deadLetter(recs[i], r.why)
			if err != nil {
				return nil, nil, err
			}
			dead = append(dead, dl)
		case r.ok:
			out = append(out, r.d)
		}
	}
	return out, dead, nil
}

// decodeOne decodes one record: ok is false for a record of another
// topic, why is set for one that will never decode or cannot be stored.
func (m *Materializer) decodeOne(ctx context.Context, rec *kgo.Record) (d decodedRecord, why error, ok bool, err error) {
	d.partition = rec.Partition
	var target any
	switch rec.Topic {
	case m.cfg.EventsTopic:
		d.event = new(events.CustomerEvent)
		target = d.event
	case m.cfg.MessagesTopic:
		d.message = new(events.MessageEvent)
		target = d.message
	default:
		return d, nil, false, nil
	}
	err = m.retry(ctx, "decoding a record", func() error {
		err := m.cfg.Serde.Decode(ctx, rec.Value, target)
		var de *codec.DecodeError
		if errors.As(err, &de) {
			return retry.Permanent(err)
		}
		return err
	})
	switch {
	case retry.IsPermanent(err):
		return d, errors.Unwrap(err), true, nil
	case err != nil:
		return d, nil, false, err
	}
	why = d.check()
	if d.customerID() == "" || d.customerID() != string(rec.Key) {
		why = fmt.Errorf("record key %q does not match its customer ID %q", rec.Key, d.customerID())
	}
	return d, why, true, nil
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
		out = append(out, &kgo.Record{Topic: schemas.CustomerStateTopic, Key: []byte(r.CustomerID), Value: value})
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
