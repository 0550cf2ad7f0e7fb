// Package hashes is the change detection of the back-office sources that
// have no change feed of their own (omnisync import, omnisync source poll):
// the content hash of every record a source last produced, kept in a
// compacted Kafka topic (schemas.SourceHashesTopic) keyed by source and
// record key. A record whose hash did not change is not produced again, so
// a second import of the same file, or a poll after a restart, adds
// nothing; a key that is gone from a complete pass of the source is a
// deletion.
//
// The hashes are written only after Kafka acknowledged the events they
// describe: a crash in between sends those records again (with the same
// event IDs where the source gives them), never loses one.
package hashes

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/schemas"
)

// sep separates the source from the record key in a Kafka key; a source
// name (normalize.ID) holds no NUL.
const sep = "\x00"

// Store is one source's record hashes: those in Kafka when it was opened,
// plus what it saved since. It is safe for concurrent use.
type Store struct {
	cl     *kgo.Client
	topic  string
	source string
	mu     sync.RWMutex
	hashes map[string]string // record key → content hash
}

// Open reads the source's hashes from topic (default
// schemas.SourceHashesTopic) up to its end. The topic must exist
// (omnisync topics create).
func Open(ctx context.Context, cfg kafka.Config, topic, source string) (*Store, error) {
	if topic == "" {
		topic = schemas.SourceHashesTopic
	}
	if source == "" || strings.Contains(source, sep) {
		return nil, fmt.Errorf("hashes: source %q: want a name without NUL", source)
	}
	cl, err := kafka.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	s := &Store{cl: cl, topic: topic, source: source, hashes: map[string]string{}}
	if err := s.load(ctx); err != nil {
		cl.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the Kafka client.
func (s *Store) Close() { s.cl.Close() }

func (s *Store) load(ctx context.Context) error {
	adm := kadm.NewClient(s.cl)
	ends, err := adm.ListEndOffsets(ctx, s.topic)
	if err != nil {
		return fmt.Errorf("hashes: listing the end of %s: %w", s.topic, err)
	}
	if err := ends.Error(); err != nil {
		return fmt.Errorf("hashes: topic %s (create it with omnisync topics create): %w", s.topic, err)
	}
	want := map[int32]int64{}
	from := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
			from[o.Partition] = kgo.NewOffset().AtStart()
		}
	})
	if len(want) == 0 {
		return nil
	}
	rd, err := kgo.NewClient(append(s.cl.Opts(), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{s.topic: from}))...)
	if err != nil {
		return err
	}
	defer rd.Close()
	prefix := s.source + sep
	for len(want) > 0 {
		fs := rd.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = errors.Join(ferr, err) })
		if ferr != nil {
			return fmt.Errorf("hashes: reading %s: %w", s.topic, ferr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if key, ok := strings.CutPrefix(string(r.Key), prefix); ok {
				if r.Value == nil {
					delete(s.hashes, key)
				} else {
					s.hashes[key] = string(r.Value)
				}
			}
			if end, ok := want[r.Partition]; ok && r.Offset+1 >= end {
				delete(want, r.Partition)
			}
		})
	}
	return nil
}

// Changed reports whether hash is not the one last saved for key.
func (s *Store) Changed(key, hash string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	h, ok := s.hashes[key]
	return !ok || h != hash
}

// Hash is key's saved hash, "" if none.
func (s *Store) Hash(key string) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.hashes[key]
}

// Has reports whether key has a hash: it was produced and not deleted.
func (s *Store) Has(key string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.hashes[key]
	return ok
}

// Keys returns the keys that have a hash, sorted.
func (s *Store) Keys() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Sorted(maps.Keys(s.hashes))
}

// Len is how many keys have a hash.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.hashes)
}

// Save writes each key's new hash ("" for a deleted record: a tombstone)
// and returns once Kafka acknowledged them all. Call it only after Kafka
// acknowledged the events the hashes describe.
func (s *Store) Save(ctx context.Context, changes map[string]string) error {
	if len(changes) == 0 {
		return nil
	}
	recs := make([]*kgo.Record, 0, len(changes))
	for _, key := range slices.Sorted(maps.Keys(changes)) {
		r := &kgo.Record{Topic: s.topic, Key: []byte(s.source + sep + key)}
		if h := changes[key]; h != "" {
			r.Value = []byte(h)
		}
		recs = append(recs, r)
	}
	if err := kafka.ProduceAndWait(ctx, s.cl, recs...); err != nil {
		return fmt.Errorf("hashes: saving %d hashes: %w", len(recs), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, h := range changes {
		if h == "" {
			delete(s.hashes, key)
		} else {
			s.hashes[key] = h
		}
	}
	return nil
}
