// Package store defines what omnisync asks of a store: the write side
// (Writer, what the materializer folds batches into), the read side
// (Reader, what the API and the agent console query) and Store, both with
// Close. Every store (consumers/store/sqlite, consumers/store/postgres)
// implements Store, and consumers/store/storetest checks both sides.
package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/pkg/events"
)

// Store is a store opened for both sides.
type Store interface {
	Reader
	Writer
	Close() error
}

// Writer is what the materializer writes a consumer group's records
// through.
type Writer interface {
	// Load returns the stored records of these customers; customers the
	// store has never seen are absent from the map.
	Load(ctx context.Context, customerIDs []string) (map[string]merge.Record, error)
	// Apply writes one batch and the group's next offsets in ONE
	// transaction: all of it or none of it.
	Apply(ctx context.Context, b *Batch) error
	// Offsets returns the group's next offsets to consume per topic and
	// partition, as of the last applied batch.
	Offsets(ctx context.Context, group string) (map[string]map[int32]int64, error)
	// PolicyHash returns the hash of the merge policy the store's data was
	// built with, "" for an empty store.
	PolicyHash(ctx context.Context) (string, error)
	// Generation names the store's content as a whole: it is new after a
	// replay swapped another store in, reset this one, or a repair replaced
	// customers, and never changes otherwise. Records a writer read from
	// one generation must not be written into another (Batch.Generation).
	Generation(ctx context.Context) (string, error)
}

// SingleWriter is a Writer that one process may write at a time (SQLite).
// A materializer takes its write lock before joining its group, so a
// second member waits as a standby instead of contending for the store.
type SingleWriter interface {
	// TryLockWriter takes the write lock if it is free (ok), else returns
	// at once with ok false; unlock releases it.
	TryLockWriter() (unlock func(), ok bool, err error)
}

// Batch is what one store transaction applies.
type Batch struct {
	Group      string
	PolicyHash string
	// Records are upserted only when their Version is newer than the
	// stored one, so re-delivery is harmless. A Deleted record erases the
	// customer's fields, conflicts, identities and messages and keeps the
	// tombstone.
	Records []merge.Record
	// Messages are upserted by MessageID; one not newer than its
	// customer's tombstone is not stored.
	Messages []events.MessageEvent
	// Offsets are the group's next offsets per topic and partition.
	Offsets map[string]map[int32]int64
	// Base optionally holds, per customer of Records, the record it was
	// folded from as the writer last applied or loaded it. Where the
	// store still holds that version, it may write only the child rows
	// (fields, conflicts, identities) that differ from it; elsewhere, and
	// for customers absent from Base, it writes the whole record. The
	// result is the same either way.
	Base map[string]merge.Record
	// From, when not nil, makes Apply a compare-and-set: the group's
	// offsets the store holds for these partitions must be these (NoOffset
	// for a partition the store holds none of), and the store's policy
	// hash must be PolicyHash or none; else Apply writes nothing and
	// returns an *OffsetsMovedError or ErrPolicyMismatch. A replay that
	// swapped in another store, an in-place reset, or another member that
	// took the partitions over moved them.
	From map[string]map[int32]int64
	// Generation, when not empty, is the store generation (Writer.
	// Generation) the batch's records were folded from: with From, Apply
	// also refuses with an *OffsetsMovedError when the store's is another,
	// even where the offsets agree (a replay swapped in at the member's
	// offsets, a repair).
	Generation string
}

// NoOffset stands in Batch.From for a partition the store holds no offset
// of.
const NoOffset int64 = -1

// ErrPolicyMismatch is returned by Apply when a batch folded with one
// merge policy meets a store built with another (a replay with a new
// policy was swapped in).
var ErrPolicyMismatch = errors.New("the store was built with another merge policy than the batch")

// OffsetsMovedError is returned by Apply when the store's offsets are not
// the batch's From: the writer must resume from Held.
type OffsetsMovedError struct {
	Group string
	Held  map[string]map[int32]int64 // the group's offsets the store holds, at least From's partitions
}

func (e *OffsetsMovedError) Error() string {
	return fmt.Sprintf("the store's offsets of group %s or its generation moved under the writer (offsets now %v); resume from them", e.Group, e.Held)
}

// CheckFrom returns nil when held (a group's offsets in the store) agrees
// with b.From and generation (the store's) with b.Generation (when set),
// else an *OffsetsMovedError; held's own map is kept in it.
func CheckFrom(b *Batch, held map[string]map[int32]int64, generation string) error {
	if b.Generation != "" && b.Generation != generation {
		return &OffsetsMovedError{Group: b.Group, Held: held}
	}
	for topic, parts := range b.From {
		for p, from := range parts {
			got, ok := held[topic][p]
			if !ok {
				got = NoOffset
			}
			if got != from {
				return &OffsetsMovedError{Group: b.Group, Held: held}
			}
		}
	}
	return nil
}

// Reader answers the agents' queries. Lists are pages in a fixed order;
// a page continues after the Cursor of the last item of the page before
// (nil for the first page).
type Reader interface {
	// SearchCustomers returns customers that are neither deleted nor
	// merged into another, most
	// recently updated first (UpdatedAt descending, then CustomerID
	// ascending). An empty q matches every customer; otherwise q matches a
	// customer whose ID or one of whose identity values equals q, or whose
	// name, phone or e-mail contains q, ignoring case.
	SearchCustomers(ctx context.Context, q string, after *Cursor, limit int) ([]merge.Record, error)
	// Customer returns a customer's record; ok is false when the store has
	// never seen the customer.
	Customer(ctx context.Context, customerID string) (r merge.Record, ok bool, err error)
	// Redirect returns the survivor a customer is merged into (its
	// record's MergedInto), "" when it is not merged or unknown.
	Redirect(ctx context.Context, customerID string) (string, error)
	// Timeline returns a customer's messages across channels in
	// (OccurredAt, MessageID) order, with the messages of every customer
	// absorbed into it (its record's Absorbed, and theirs, through chains
	// of merges): one timeline.
	Timeline(ctx context.Context, customerID string, after *Cursor, limit int) ([]events.MessageEvent, error)
	// MessageChannels returns, for each of the customers that has
	// messages, the channels its messages came on, sorted; a survivor's
	// include those of the customers absorbed into it, as its Timeline.
	MessageChannels(ctx context.Context, customerIDs []string) (map[string][]events.Channel, error)
	// Conflicts returns the conflicts with this status (every status when
	// empty) in (DetectedAt, ID) order: the review queue, oldest first.
	Conflicts(ctx context.Context, status events.ConflictStatus, after *Cursor, limit int) ([]Conflict, error)
	// Conflict returns one conflict by ID; ok is false when there is none.
	Conflict(ctx context.Context, id string) (c Conflict, ok bool, err error)
}

// Scanner streams a whole store, for tools that compare it (omnisync
// verify). Both stores implement it.
type Scanner interface {
	// Scan calls fn with every customer the store holds, deleted ones
	// (tombstones) included, in customer-ID order (bytewise), each with
	// its record and its messages sorted by MessageID. It reads a page of
	// customers at a time and holds one customer's messages at a time,
	// never the whole store; fn must not call the store. An error from fn
	// stops the scan and is returned.
	Scan(ctx context.Context, fn func(r merge.Record, messages []events.MessageEvent) error) error
}

// Replacer overwrites customers, for tools that repair a store from the
// log (omnisync verify --repair). Both stores implement it.
type Replacer interface {
	// Replace removes everything the store holds of the customers
	// customerIDs — record, fields, conflicts, identities, messages — and
	// writes records and messages in their place as Apply writes them into
	// a store without those customers, in one transaction. A customer listed
	// without a record is left removed. records and messages must belong
	// to customerIDs. Offsets and the policy hash are not touched.
	Replace(ctx context.Context, customerIDs []string, records []merge.Record, messages []events.MessageEvent) error
}

// Cursor is where a page ends: the sort time (Unix milliseconds) and ID of
// its last item. For customers the time is UpdatedAt (and the order
// descending); for messages OccurredAt; for conflicts DetectedAt.
type Cursor struct {
	At int64
	ID string
}

// Conflict is a conflict with the customer it belongs to.
type Conflict struct {
	CustomerID string
	merge.Conflict
}

// SameOffsets reports whether a and b hold the same partitions at the same
// offsets.
func SameOffsets(a, b map[string]map[int32]int64) bool {
	count := func(m map[string]map[int32]int64) (n int) {
		for _, parts := range m {
			n += len(parts)
		}
		return n
	}
	if count(a) != count(b) {
		return false
	}
	for topic, parts := range a {
		for p, next := range parts {
			if got, ok := b[topic][p]; !ok || got != next {
				return false
			}
		}
	}
	return true
}

// Covers reports whether a holds every partition of b at b's offset or a
// later one.
func Covers(a, b map[string]map[int32]int64) bool {
	for topic, parts := range b {
		for p, next := range parts {
			if got, ok := a[topic][p]; !ok || got < next {
				return false
			}
		}
	}
	return true
}
