// Package materializer runs a consumer group that folds omnisync's customer
// events and messages into versioned records (package merge) and writes
// them, exactly once in effect, into a store (a store.Writer): each batch
// of records and the group's per-partition offsets are applied in one
// store transaction, and on (re)assignment the group seeks to the offsets
// the store holds. Offsets are also committed to Kafka so lag tools see
// progress. Each batch is a compare-and-set from the offsets the store
// held (store.Batch.From): when a replay swapped another store in or reset
// this one, or another writer moved them, the member drops the batch and
// resumes from the store's offsets; when the store now has another policy
// it stops (ErrPolicyChanged). NewReplay runs the same fold as a replayer.
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
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

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
	Logger   *zap.Logger
	Metrics  *Metrics // optional
}

// Materializer is one member of a consumer group, or (NewReplay) a
// replayer folding every partition into a store without joining a group.
type Materializer struct {
	cfg    Config
	cl     *kgo.Client
	replay bool // no group: direct partitions, no commits, no dead letters sent

	mu       sync.Mutex
	storeErr error // the last store operation's error; nil once one succeeds
	// held is, per owned partition, the offset the store holds for the
	// group (store.NoOffset when none): each batch is a compare-and-set
	// from it (store.Batch.From).
	held map[string]map[int32]int64
	// next is, for a replayer, the next offset to consume per partition,
	// and start where it started where the store held none.
	next, start map[string]map[int32]int64
}

// New returns a member of cfg.Group; Run starts it.
func New(cfg Config) (*Materializer, error) {
	if cfg.Policy == nil {
		cfg.Policy = merge.DefaultPolicy()
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 5000
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	m := &Materializer{cfg: cfg, held: map[string]map[int32]int64{}}
	cl, err := kafka.NewClient(cfg.Kafka, append(kafka.GroupOpts(),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(schemas.CustomerEventsTopic, schemas.CustomerMessagesTopic),
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
	)...)
	if err != nil {
		return nil, err
	}
	m.cl = cl
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
	m.mu.Lock()
	for topic, parts := range assigned {
		if m.held[topic] == nil {
			m.held[topic] = map[int32]int64{}
		}
		for p := range parts {
			m.held[topic][p] = store.NoOffset
			if next, ok := held[topic][p]; ok {
				m.held[topic][p] = next
			}
		}
	}
	m.mu.Unlock()
	m.cfg.Metrics.setNext(resume)
	m.cfg.Logger.Info("partitions assigned; resuming at the store's offsets", zap.Any("offsets", resume))
	return out, nil
}

// revoked forgets the lag of partitions this member no longer owns.
func (m *Materializer) revoked(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
	m.mu.Lock()
	for topic, ps := range parts {
		for _, p := range ps {
			delete(m.held[topic], p)
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
		var err error
		if publisher, err = kafka.NewClient(m.cfg.Kafka); err != nil {
			return err
		}
		defer publisher.Close()
	}
	for {
		fs := m.cl.PollRecords(ctx, m.cfg.MaxBatch)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(topic string, p int32, err error) {
			m.cfg.Logger.Warn("fetch error", zap.String("topic", topic), zap.Int32("partition", p), zap.Error(err))
		})
		m.cfg.Metrics.fetched(fs)
		recs := fs.Records()
		if len(recs) > 0 {
			if err := m.process(ctx, recs, publisher); err != nil {
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

// fresh drops the records below the offsets the store holds (left in the
// client's buffers from before a re-seek) and returns the batch's From.
func (m *Materializer) fresh(recs []*kgo.Record) ([]*kgo.Record, map[string]map[int32]int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	from := map[string]map[int32]int64{}
	out := recs[:0:0]
	for _, rec := range recs {
		held, ok := m.held[rec.Topic][rec.Partition]
		if !ok {
			continue // no longer owned
		}
		if held != store.NoOffset && rec.Offset < held {
			continue
		}
		if from[rec.Topic] == nil {
			from[rec.Topic] = map[int32]int64{}
		}
		from[rec.Topic][rec.Partition] = held
		out = append(out, rec)
	}
	return out, from
}

// applied records the offsets a batch moved the store to.
func (m *Materializer) applied(offsets map[string]map[int32]int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for topic, parts := range offsets {
		for p, next := range parts {
			if _, owned := m.held[topic][p]; !owned {
				continue
			}
			m.held[topic][p] = next
			if m.next != nil {
				m.next[topic][p] = next
			}
		}
	}
}

// reseek moves every owned partition to the offsets the store holds after
// another writer moved them (a replay's swap or reset, a zombie member):
// consuming resumes there and the batch that found them moved is dropped.
func (m *Materializer) reseek(moved *store.OffsetsMovedError) {
	m.mu.Lock()
	set := map[string]map[int32]kgo.EpochOffset{}
	for topic, parts := range m.held {
		set[topic] = map[int32]kgo.EpochOffset{}
		for p := range parts {
			next, ok := moved.Held[topic][p]
			if !ok {
				// Offset 0 is the log's start, or out of range and
				// reset to the start (ConsumeResetOffset).
				next, parts[p] = 0, store.NoOffset
			} else {
				parts[p] = next
			}
			if m.next != nil {
				m.next[topic][p] = next
				if !ok {
					m.next[topic][p] = m.start[topic][p]
				}
			}
			set[topic][p] = kgo.EpochOffset{Epoch: -1, Offset: next}
		}
	}
	m.mu.Unlock()
	m.cfg.Logger.Warn("the store's offsets moved under this member (a replay's swap or reset, or another member); resuming from them",
		zap.Any("offsets", moved.Held))
	m.cl.SetOffsets(set)
	m.cfg.Metrics.setNext(moved.Held)
}

// process folds one polled batch into the store. Records of a partition
// arrive in order; a customer's events are all on one partition.
func (m *Materializer) process(ctx context.Context, recs []*kgo.Record, publisher *kgo.Client) error {
	recs, from := m.fresh(recs)
	if len(recs) == 0 {
		return nil
	}
	decoded, deadLetters, err := m.decode(ctx, recs)
	if err != nil {
		return err
	}
	if len(deadLetters) > 0 && m.replay {
		// The live group sent them when it read these records first.
		deadLetters = nil
	}
	if len(deadLetters) > 0 {
		if err := m.retry(ctx, "writing dead letters", func() error {
			return kafka.ProduceAndWait(ctx, m.cl, deadLetters...)
		}); err != nil {
			return err
		}
		m.cfg.Metrics.deadLetters(len(deadLetters))
	}

	ids := map[string]bool{}
	for _, d := range decoded {
		ids[d.CustomerID()] = true
	}
	var stored map[string]merge.Record
	if err := m.storeOp(ctx, "loading records", func() error {
		var err error
		stored, err = m.cfg.Store.Load(ctx, keys(ids))
		return err
	}); err != nil {
		return err
	}

	var outcome stats
	batch := &store.Batch{Group: m.cfg.Group, PolicyHash: m.cfg.Policy.Hash(), Offsets: map[string]map[int32]int64{}, From: from}
	batch.Records, batch.Messages = Fold(stored, decoded, m.cfg.Policy, outcome.add)
	for _, rec := range recs {
		if batch.Offsets[rec.Topic] == nil {
			batch.Offsets[rec.Topic] = map[int32]int64{}
		}
		batch.Offsets[rec.Topic][rec.Partition] = rec.Offset + 1
	}
	var refused error // by the compare-and-set: the store answered
	err = m.storeOp(ctx, "applying a batch to the store", func() error {
		err := m.cfg.Store.Apply(ctx, batch)
		var moved *store.OffsetsMovedError
		if errors.As(err, &moved) || errors.Is(err, store.ErrPolicyMismatch) {
			refused = err
			return nil
		}
		return err
	})
	var moved *store.OffsetsMovedError
	switch {
	case err != nil:
		return err
	case errors.As(refused, &moved):
		m.reseek(moved)
		return nil
	case refused != nil:
		return fmt.Errorf("%w: %w", ErrPolicyChanged, refused)
	}
	m.applied(batch.Offsets)
	now := time.Now()
	m.cfg.Metrics.observeBatch(outcome, decoded, now)
	m.cfg.Metrics.setNext(batch.Offsets)

	if m.replay {
		return nil
	}
	// For lag tools; the store's offsets are the truth, so a failed commit
	// is only logged.
	if err := m.cl.CommitRecords(ctx, recs...); err != nil && ctx.Err() == nil {
		m.cfg.Logger.Warn("committing offsets to Kafka", zap.Error(err))
	}
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
// (Avro's double carries NaN and infinities; JSON and SQL do not).
func (d Decoded) check() error {
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

// RejectedError is a record that can never be folded: it does not decode,
// holds a number no store can hold, or its key is not its customer ID. The
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
	var d Decoded
	var target any
	switch rec.Topic {
	case schemas.CustomerEventsTopic:
		d.Event = new(events.CustomerEvent)
		target = d.Event
	case schemas.CustomerMessagesTopic:
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

// decode decodes every record, retrying transient failures; records that
// will never decode or cannot be stored become dead letters.
func (m *Materializer) decode(ctx context.Context, recs []*kgo.Record) ([]Decoded, []*kgo.Record, error) {
	var out []Decoded
	var dead []*kgo.Record
	for _, rec := range recs {
		var d Decoded
		err := m.retry(ctx, "decoding a record", func() error {
			var err error
			d, err = Decode(ctx, m.cfg.Serde, rec)
			var rejected *RejectedError
			if errors.As(err, &rejected) {
				return retry.Permanent(err)
			}
			return err
		})
		var rejected *RejectedError
		switch {
		case errors.As(err, &rejected):
			dl, err := m.deadLetter(rec, rejected.Reason)
			if err != nil {
				return nil, nil, err
			}
			dead = append(dead, dl)
			continue
		case err != nil:
			return nil, nil, err
		case d.Event == nil && d.Message == nil:
			continue // another topic
		}
		out = append(out, d)
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
