package verify

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/omnisync/omnisync/consumers/materializer"
	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/consumers/store/sqlite"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/pkg/retry"
	"github.com/omnisync/omnisync/schemas"
)

// Config configures a verification against the log.
type Config struct {
	Kafka kafka.Config
	Serde *codec.Serde
	// Group is the store's consumer group: the fold reads each partition
	// up to the offsets the store holds for it.
	Group string
	// From is where the fold starts per topic and partition; absent
	// partitions start at the start of the log. Only for a store whose
	// group began mid-log (a test's group on shared topics).
	From map[string]map[int32]int64
	// Policy is the merge policy to fold with; default
	// merge.DefaultPolicy(). A store built with another policy is an error.
	Policy *merge.Policy
	// TempDir is where the fold's scratch SQLite file goes; default the
	// system's temporary directory. It is removed afterwards.
	TempDir string
	// MaxBatch is the most log records folded into the scratch store in
	// one transaction; default 5000, as the materializer.
	MaxBatch int
	// Repair re-materializes the customers found differing from the log
	// (Report.Repaired says how many), safely while the group's members
	// run; the store must be a store.LockedReplacer. See AgainstLog.
	Repair bool
	Logger *zap.Logger
}

// Store is what AgainstLog reads of a store: its customers, the group's
// offsets, the policy hash and the generation. Both stores implement it
// (and store.LockedReplacer, which Config.Repair needs).
type Store interface {
	store.Scanner
	Offsets(ctx context.Context, group string) (map[string]map[int32]int64, error)
	PolicyHash(ctx context.Context) (string, error)
	Generation(ctx context.Context) (string, error)
}

// AgainstLog compares st with a fresh fold of the log up to st's offsets
// for cfg.Group.
//
// The fold reads one partition at a time — partition i of the events and
// the messages topic, which hold the same customers — from the start up
// to the store's offsets, interleaving the two topics by record timestamp
// (events first on a tie; a topic read far ahead of the other pauses),
// and folds it as the materializer does
// (materializer.Decode and materializer.Fold; records the materializer
// dead-letters are skipped) into a scratch SQLite store on disk. Then the
// scratch store and st are compared customer by customer in ID order, a
// page at a time. Memory is bounded by one batch of the log and one page
// of each store, not by the log or the stores; the disk holds the folded
// customers.
//
// The comparison is not a snapshot: a customer the group's members change
// while it runs may be reported as differing. With cfg.Repair, the
// differing customers are then re-materialized while the members run: the
// fold catches up with the offsets the store holds now, and then, in one
// transaction holding the lock on the store's offsets
// (store.LockedReplacer; the members wait at their next batch), folds the
// last records up to the offsets held under the lock and replaces each
// differing customer by the fold's version of it at those offsets, with a
// new store generation (members holding old copies refold them). What the
// members applied meanwhile is in the fold, so nothing is lost.
func AgainstLog(ctx context.Context, cfg Config, st Store) (*Report, error) {
	if cfg.Policy == nil {
		cfg.Policy = merge.DefaultPolicy()
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 5000
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Serde == nil {
		return nil, errors.New("verify: no serde (schema registry client) configured")
	}
	var replacer store.LockedReplacer
	if cfg.Repair {
		var ok bool
		if replacer, ok = st.(store.LockedReplacer); !ok {
			return nil, fmt.Errorf("store %T cannot be repaired", st)
		}
	}
	hash, err := st.PolicyHash(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the store's policy hash: %w", err)
	}
	if hash != "" && hash != cfg.Policy.Hash() {
		return nil, fmt.Errorf("the store was built with merge policy %s, not the configured %s: verify with the store's policy", hash, cfg.Policy.Hash())
	}
	// The generation before the offsets: a repair checks that the store
	// is still the one folded (no replay or other repair in between).
	gen, err := st.Generation(ctx)
	if err != nil {
		return nil, err
	}
	offsets, err := st.Offsets(ctx, cfg.Group)
	if err != nil {
		return nil, fmt.Errorf("reading the store's offsets: %w", err)
	}
	if len(offsets) == 0 {
		return nil, fmt.Errorf("the store holds no offsets for consumer group %q: name the group that fills it", cfg.Group)
	}

	cl, err := kafka.NewClient(cfg.Kafka)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	partitions, err := checkOffsets(ctx, kadm.NewClient(cl), offsets)
	if err != nil {
		return nil, err
	}

	dir, err := os.MkdirTemp(cfg.TempDir, "omnisync-verify-")
	if err != nil {
		return nil, fmt.Errorf("creating the fold's scratch directory: %w", err)
	}
	defer os.RemoveAll(dir)
	scratch, err := sqlite.Open(ctx, filepath.Join(dir, "fold.db"))
	if err != nil {
		return nil, fmt.Errorf("opening the fold's scratch store: %w", err)
	}
	defer scratch.Close()

	f := &folder{cfg: cfg, scratch: scratch, partitions: partitions, at: map[string]map[int32]int64{}}
	began := time.Now()
	if err := f.foldTo(ctx, offsets); err != nil {
		return nil, err
	}
	cfg.Logger.Info("log folded", zap.Int32("partitions", partitions), zap.Int64("records", f.records),
		zap.Int64("rejected", f.rejected), zap.Duration("took", time.Since(began)))
	began = time.Now()

	rep := &Report{Sides: [2]string{"store", "log"}}
	partitioner := kgo.StickyKeyPartitioner(nil).ForTopic(schemas.CustomerEventsTopic)
	unfolded := func(id string) string {
		p := int32(partitioner.Partition(&kgo.Record{Key: []byte(id)}, int(partitions)))
		if offsets[schemas.CustomerEventsTopic][p] == 0 && offsets[schemas.CustomerMessagesTopic][p] == 0 {
			return fmt.Sprintf("its partition %d was never consumed by group %s", p, cfg.Group)
		}
		return ""
	}
	if err := compare(ctx, st, scratch, rep, unfolded); err != nil {
		return nil, fmt.Errorf("comparing the store with the log: %w", err)
	}
	cfg.Logger.Info("store compared with the log", zap.Int("agree", rep.Agree), zap.Int("differ", len(rep.Differ)),
		zap.Duration("took", time.Since(began)))
	if cfg.Repair && !rep.OK() {
		if err := f.repair(ctx, st, replacer, gen, rep); err != nil {
			return nil, fmt.Errorf("repairing %d customers: %w", len(rep.Differ), err)
		}
	}
	return rep, nil
}

// checkOffsets checks the store's offsets against the topics (equal
// partition counts, no offset past a partition's end) and returns the
// partition count.
func checkOffsets(ctx context.Context, adm *kadm.Client, offsets map[string]map[int32]int64) (int32, error) {
	topics := []string{schemas.CustomerEventsTopic, schemas.CustomerMessagesTopic}
	details, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return 0, fmt.Errorf("describing the topics: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return 0, fmt.Errorf("listing the topics' end offsets: %w", err)
	}
	var n int32 = -1
	for _, t := range topics {
		d, ok := details[t]
		if !ok || d.Err != nil {
			return 0, fmt.Errorf("topic %s: %v", t, d.Err)
		}
		if n >= 0 && int32(len(d.Partitions)) != n {
			return 0, fmt.Errorf("the events and messages topics have %d and %d partitions; they must be equal", n, len(d.Partitions))
		}
		n = int32(len(d.Partitions))
		for p, next := range offsets[t] {
			end, ok := ends.Lookup(t, p)
			switch {
			case !ok || p >= n:
				return 0, fmt.Errorf("the store holds an offset for %s partition %d, which the topic does not have", t, p)
			case end.Err != nil:
				return 0, fmt.Errorf("end offset of %s partition %d: %w", t, p, end.Err)
			case next > end.Offset:
				return 0, fmt.Errorf("the store's offset %d for %s partition %d is past the partition's end %d: is it another cluster's store?", next, t, p, end.Offset)
			}
		}
	}
	return n, nil
}

// folder folds the log into the scratch store.
type folder struct {
	cfg        Config
	scratch    *sqlite.Store
	partitions int32
	// at is, per topic and partition, the offset the fold has reached;
	// absent: none yet (it starts at cfg.From's, else the log's start).
	at       map[string]map[int32]int64
	records  int64 // log records read
	rejected int64 // of which rejected (dead letters)
}

// foldTo folds every partition up to offsets (exclusive), one partition
// at a time, from where the fold is.
func (f *folder) foldTo(ctx context.Context, offsets map[string]map[int32]int64) error {
	for p := range f.partitions {
		end := map[string]int64{
			schemas.CustomerEventsTopic:   offsets[schemas.CustomerEventsTopic][p],
			schemas.CustomerMessagesTopic: offsets[schemas.CustomerMessagesTopic][p],
		}
		if err := f.partition(ctx, p, end); err != nil {
			return fmt.Errorf("folding partition %d: %w", p, err)
		}
	}
	return nil
}

// partition folds partition p of both topics from where the fold is up
// to the end offsets (exclusive).
func (f *folder) partition(ctx context.Context, p int32, end map[string]int64) (err error) {
	assign := map[string]map[int32]kgo.Offset{}
	starts := map[string]int64{}
	for t, e := range end {
		start, ok := f.at[t][p]
		if !ok {
			start, ok = f.cfg.From[t][p]
		}
		switch {
		case ok && start < e:
			assign[t] = map[int32]kgo.Offset{p: kgo.NewOffset().At(start)}
		case !ok && e > 0:
			assign[t] = map[int32]kgo.Offset{p: kgo.NewOffset().AtStart()}
		}
		if ok {
			starts[t] = start
		}
	}
	defer func() { // on success: the fold is at end, or still at its start past it
		if err != nil {
			return
		}
		for t, e := range end {
			if f.at[t] == nil {
				f.at[t] = map[int32]int64{}
			}
			f.at[t][p] = max(starts[t], e)
		}
	}()
	if len(assign) == 0 {
		return nil
	}
	// Small fetches: the fold's memory is what it has read and not folded.
	cl, err := kafka.NewClient(f.cfg.Kafka, kgo.ConsumePartitions(assign), kgo.FetchMaxBytes(1<<20), kgo.FetchMaxPartitionBytes(256<<10))
	if err != nil {
		return err
	}
	defer cl.Close()

	events, messages := &queue{end: end[schemas.CustomerEventsTopic]}, &queue{end: end[schemas.CustomerMessagesTopic]}
	for _, q := range []struct {
		topic string
		q     *queue
	}{{schemas.CustomerEventsTopic, events}, {schemas.CustomerMessagesTopic, messages}} {
		if _, ok := assign[q.topic]; !ok {
			q.q.next = q.q.end // nothing to read
		} else if start, ok := starts[q.topic]; ok {
			q.q.next = start
		}
	}
	var batch []*kgo.Record
	for !(events.drained() && messages.drained()) {
		if !events.done() || !messages.done() {
			fs := cl.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				return err
			}
			var fetchErr error
			fs.EachError(func(t string, p int32, err error) {
				fetchErr = errors.Join(fetchErr, fmt.Errorf("fetching %s partition %d: %w", t, p, err))
			})
			if fetchErr != nil {
				return fetchErr
			}
			fs.EachRecord(func(r *kgo.Record) {
				switch r.Topic {
				case schemas.CustomerEventsTopic:
					events.push(r)
				case schemas.CustomerMessagesTopic:
					messages.push(r)
				}
			})
		}
		// Interleave by timestamp while both topics have a record or are
		// done (the next record of a topic could be older).
		for (len(events.recs) > 0 || events.done()) && (len(messages.recs) > 0 || messages.done()) &&
			len(events.recs)+len(messages.recs) > 0 {
			q := events
			if len(events.recs) == 0 || (len(messages.recs) > 0 && messages.recs[0].Timestamp.Before(events.recs[0].Timestamp)) {
				q = messages
			}
			batch = append(batch, q.pop())
			if len(batch) >= f.cfg.MaxBatch {
				if err := f.fold(ctx, batch); err != nil {
					return err
				}
				clear(batch)
				batch = batch[:0]
			}
		}
		// Stop fetching a partition read up to its end, and one whose
		// records pile up because they span less time than the other's
		// (fewer messages than events, say) until the other catches up.
		for t, q := range map[string]*queue{schemas.CustomerEventsTopic: events, schemas.CustomerMessagesTopic: messages} {
			switch {
			case !q.paused && (q.done() || len(q.recs) >= maxQueued):
				cl.PauseFetchPartitions(map[string][]int32{t: {p}})
				q.paused = true
			case q.paused && !q.done() && len(q.recs) < maxQueued/2:
				cl.ResumeFetchPartitions(map[string][]int32{t: {p}})
				q.paused = false
			}
		}
	}
	return f.fold(ctx, batch)
}

// maxQueued is the most records of one topic partition read ahead of the
// other's; then fetching it pauses.
const maxQueued = 5000

// queue holds a topic partition's records read and not yet folded.
type queue struct {
	recs   []*kgo.Record
	next   int64 // the offset after the last record read
	end    int64
	paused bool
}

func (q *queue) push(r *kgo.Record) {
	if r.Offset < q.end {
		q.recs = append(q.recs, r)
	}
	q.next = r.Offset + 1
}

func (q *queue) pop() *kgo.Record {
	r := q.recs[0]
	q.recs[0] = nil
	q.recs = q.recs[1:]
	return r
}

// done: every record before end has been read.
func (q *queue) done() bool { return q.next >= q.end }

// drained: done and folded.
func (q *queue) drained() bool { return q.done() && len(q.recs) == 0 }

// fold decodes a batch and folds it into the scratch store as the
// materializer folds a polled batch.
func (f *folder) fold(ctx context.Context, recs []*kgo.Record) error {
	if len(recs) == 0 {
		return nil
	}
	f.records += int64(len(recs))
	decoded := make([]materializer.Decoded, 0, len(recs))
	ids := map[string]bool{}
	for _, rec := range recs {
		var d materializer.Decoded
		err := retry.Do(ctx, f.cfg.Logger, "decoding a record", func() error {
			var err error
			d, err = materializer.Decode(ctx, f.cfg.Serde, rec)
			var rejected *materializer.RejectedError
			if errors.As(err, &rejected) {
				return retry.Permanent(err)
			}
			return err
		})
		var rejected *materializer.RejectedError
		switch {
		case errors.As(err, &rejected):
			f.rejected++
			continue
		case err != nil:
			return err
		case d.Event == nil && d.Message == nil:
			continue
		}
		decoded = append(decoded, d)
		ids[d.CustomerID()] = true
	}
	idList := make([]string, 0, len(ids))
	for id := range ids {
		idList = append(idList, id)
	}
	stored, err := f.scratch.Load(ctx, idList)
	if err != nil {
		return err
	}
	b := &store.Batch{Group: "omnisync-verify", PolicyHash: f.cfg.Policy.Hash()}
	b.Records, b.Messages = materializer.Fold(stored, decoded, f.cfg.Policy, nil)
	return f.scratch.Apply(ctx, b)
}
