package materializer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/schemas"
)

// NewReplay returns a replayer: the fold of a member, over every partition
// of the input topics, writing batches under cfg.Group's name into
// cfg.Store (a shadow, or a store reset in place) without joining the
// group, whose live members carry on. It starts at the offsets the store
// holds for the group (a re-run resumes), else at from's, else at the log's
// start. It commits nothing to Kafka and sends no dead letters (the live
// group sent them). CatchUp folds up to given offsets; Close ends it.
//
// A replayer folds as a member does (decoding on all cores, the records
// it folded kept in memory, one compare-and-set transaction per partition
// number) but applies each poll's transactions one after the other before
// it polls again: it has no writer pipeline (Config.Writers is not used).
func NewReplay(ctx context.Context, cfg Config, from map[string]map[int32]int64) (*Materializer, error) {
	cfg = withDefaults(cfg)
	m := &Materializer{cfg: cfg, replay: true, cache: newRecordCache(cfg.MaxCached, cfg.MaxCachedBytes), w: newWriter(1),
		held: map[string]map[int32]int64{}, planned: map[string]map[int32]int64{}, start: map[string]map[int32]int64{}}
	if err := m.checkPolicy(ctx); err != nil {
		return nil, err
	}
	held, gen, err := m.readOffsets(ctx)
	if err != nil {
		return nil, err
	}
	m.generation = gen
	starts, err := logOffsets(ctx, cfg.Kafka, false, cfg.EventsTopic, cfg.MessagesTopic)
	if err != nil {
		return nil, err
	}
	consume := map[string]map[int32]kgo.Offset{}
	// The store records where it starts on partitions it holds nothing
	// of, so that it holds an offset for every partition, as the live
	// store does for those it folded (a partition may have no record to
	// fold).
	first := &store.Batch{Group: cfg.Group, Generation: gen, Offsets: map[string]map[int32]int64{}, From: map[string]map[int32]int64{}}
	for topic, parts := range starts {
		consume[topic] = map[int32]kgo.Offset{}
		m.held[topic], m.planned[topic], m.start[topic] = map[int32]int64{}, map[int32]int64{}, map[int32]int64{}
		for p, start := range parts {
			if f, ok := from[topic][p]; ok && f > start {
				start = f
			}
			m.start[topic][p] = start
			m.held[topic][p], m.planned[topic][p] = start, start
			if h, ok := held[topic][p]; ok {
				m.held[topic][p], m.planned[topic][p] = h, h
			} else {
				if first.Offsets[topic] == nil {
					first.Offsets[topic], first.From[topic] = map[int32]int64{}, map[int32]int64{}
				}
				first.Offsets[topic][p], first.From[topic][p] = start, store.NoOffset
			}
			consume[topic][p] = kgo.NewOffset().At(m.held[topic][p])
		}
	}
	if len(first.Offsets) > 0 {
		if err := cfg.Store.Apply(ctx, first); err != nil {
			return nil, fmt.Errorf("recording where the replay starts: %w", err)
		}
	}
	m.cl, err = kafka.NewClient(cfg.Kafka, kgo.ConsumePartitions(consume), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// A replayer re-seeks and pauses partitions as it reaches its
		// targets (the last ones under the live store's lock): fetches
		// that wait long for new records would hold it up.
		kgo.FetchMaxWait(200*time.Millisecond),
		// What it fetched and has not folded is its memory: bounded as a
		// member's (see New), not by the log it reads.
		kgo.FetchMaxBytes(fetchMaxBytes), kgo.FetchMaxPartitionBytes(fetchMaxBytes/16), kgo.MaxConcurrentFetches(2))
	if err != nil {
		return nil, err
	}
	cfg.Logger.Info("replay starting", zap.Any("from", m.held))
	return m, nil
}

// LogOffsets returns the start (or, with end, the end) offsets of every
// partition of the input topics.
func LogOffsets(ctx context.Context, cfg kafka.Config, end bool) (map[string]map[int32]int64, error) {
	return logOffsets(ctx, cfg, end, schemas.CustomerEventsTopic, schemas.CustomerMessagesTopic)
}

func logOffsets(ctx context.Context, cfg kafka.Config, end bool, topics ...string) (map[string]map[int32]int64, error) {
	cl, err := kafka.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	list := adm.ListStartOffsets
	if end {
		list = adm.ListEndOffsets
	}
	listed, err := list(ctx, topics...)
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("listing the input topics' offsets: %w", err)
	}
	out := map[string]map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) {
		if out[o.Topic] == nil {
			out[o.Topic] = map[int32]int64{}
		}
		out[o.Topic][o.Partition] = o.Offset
	})
	return out, nil
}

// CatchUp folds until the store holds until's offsets on every partition,
// never past them (partitions until lacks stay where they are), and
// returns nil; or ctx's error. It may be called again with later offsets.
func (m *Materializer) CatchUp(ctx context.Context, until map[string]map[int32]int64) error {
	m.cl.ResumeFetchPartitions(m.partitions())
	for {
		reached, done := m.reached(until)
		m.cl.PauseFetchPartitions(reached)
		if done {
			return nil
		}
		fs := m.cl.PollRecords(ctx, m.cfg.MaxBatch)
		if err := ctx.Err(); err != nil {
			return err
		}
		fs.EachError(func(topic string, p int32, err error) {
			m.cfg.Logger.Warn("fetch error", zap.String("topic", topic), zap.Int32("partition", p), zap.Error(err))
		})
		var keep []*kgo.Record
		back := map[string]map[int32]kgo.EpochOffset{} // partitions fetched past until
		for _, rec := range fs.Records() {
			if target, ok := until[rec.Topic][rec.Partition]; ok && rec.Offset < target {
				keep = append(keep, rec)
			} else if back[rec.Topic] == nil {
				back[rec.Topic] = map[int32]kgo.EpochOffset{rec.Partition: {}}
			} else {
				back[rec.Topic][rec.Partition] = kgo.EpochOffset{}
			}
		}
		if len(keep) > 0 {
			moved, err := m.applyAll(ctx, keep)
			if err != nil {
				return err
			}
			if moved {
				continue // resync re-seeked every partition
			}
		}
		if len(back) > 0 {
			m.mu.Lock()
			for topic, parts := range back {
				for p := range parts {
					parts[p] = kgo.EpochOffset{Epoch: -1, Offset: m.next(topic, p)}
				}
			}
			m.mu.Unlock()
			m.cl.SetOffsets(back)
		}
	}
}

// applyAll folds records and applies their transactions one after the
// other. When the store refuses one because its offsets moved, it drops
// the rest, re-seeks to the store's offsets (resync) and returns true.
func (m *Materializer) applyAll(ctx context.Context, recs []*kgo.Record) (moved bool, err error) {
	jobs, err := m.fold(ctx, recs)
	if err != nil {
		return false, err
	}
	for _, j := range jobs {
		err := m.apply(ctx, j, nil)
		var movedErr *store.OffsetsMovedError
		switch {
		case errors.As(err, &movedErr):
			return true, m.resync(ctx)
		case err != nil:
			return false, err
		}
	}
	return false, nil
}

// next is where a replayer's store is for a partition (where it started
// when the store holds none); under m.mu.
func (m *Materializer) next(topic string, p int32) int64 {
	if h := m.held[topic][p]; h != store.NoOffset {
		return h
	}
	return m.start[topic][p]
}

// reached returns the partitions at or past until (or not in it) and
// whether that is all of them.
func (m *Materializer) reached(until map[string]map[int32]int64) (map[string][]int32, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string][]int32{}
	done := true
	for topic, parts := range m.held {
		for p := range parts {
			if target, ok := until[topic][p]; !ok || m.next(topic, p) >= target {
				out[topic] = append(out[topic], p)
			} else {
				done = false
			}
		}
	}
	return out, done
}

func (m *Materializer) partitions() map[string][]int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string][]int32{}
	for topic, parts := range m.held {
		for p := range parts {
			out[topic] = append(out[topic], p)
		}
	}
	return out
}

// Position returns a replayer's next offsets to consume, and where it
// started.
func (m *Materializer) Position() (next, start map[string]map[int32]int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	next, start = map[string]map[int32]int64{}, map[string]map[int32]int64{}
	for topic, parts := range m.held {
		next[topic], start[topic] = map[int32]int64{}, map[int32]int64{}
		for p := range parts {
			next[topic][p], start[topic][p] = m.next(topic, p), m.start[topic][p]
		}
	}
	return next, start
}

// Close closes a replayer's Kafka client.
func (m *Materializer) Close() { m.cl.Close() }
