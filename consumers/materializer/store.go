package materializer

import (
	"context"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/pkg/events"
)

// Store is a downstream store a consumer group materialises into.
// Implementations: consumers/store/sqlite (the embedded default).
type Store interface {
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
	Close() error
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
}
