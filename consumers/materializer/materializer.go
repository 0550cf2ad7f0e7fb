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
	Logger   *zap.Logger
	Metrics  *Metrics // optional
}

// Materializer is one member of a consumer group.
type Materializer struct {
	cfg Config
	cl  *kgo.Client

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
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	m := &Materializer{cfg: cfg}
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
	m.cfg.Metrics.setNext(resume)
	m.cfg.Logger.Info("partitions assigned; resuming at the store's offsets", zap.Any("offsets", resume))
	return out, nil
}

// revoked forgets the lag of partitions this member no longer owns.
func (m *Materializer) revoked(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
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

// process folds one polled batch into the store. Records of a partition
// arrive in order; a customer's events are all on one partition.
func (m *Materializer) process(ctx context.Context, recs []*kgo.Record, publisher *kgo.Client) error {
	decoded, deadLetters, err := m.decode(ctx, recs)
	if err != nil {
		return err
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
	batch := &store.Batch{Group: m.cfg.Group, PolicyHash: m.cfg.Policy.Hash(), Offsets: map[string]map[int32]int64{}}
	batch.Records, batch.Messages = Fold(stored, decoded, m.cfg.Policy, outcome.add)
	for _, rec := range recs {
		if batch.Offsets[rec.Topic] == nil {
			batch.Offsets[rec.Topic] = map[int32]int64{}
		}
		batch.Offsets[rec.Topic][rec.Partition] = rec.Offset + 1
	}
	if err := m.storeOp(ctx, "applying a batch to the store", func() error { return m.cfg.Store.Apply(ctx, batch) }); err != nil {
		return err
	}
	now := time.Now()
	m.cfg.Metrics.observeBatch(outcome, decoded, now)
	m.cfg.Metrics.setNext(batch.Offsets)

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
