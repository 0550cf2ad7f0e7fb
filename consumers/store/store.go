// Package store defines the read side of omnisync's stores: what the API
// and the agent console ask of a store the materializer writes (the write
// side is materializer.Store). Every store implements both, and
// consumers/store/storetest checks both.
package store

import (
	"context"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/pkg/events"
)

// Reader answers the agents' queries. Lists are pages in a fixed order;
// a page continues after the Cursor of the last item of the page before
// (nil for the first page).
type Reader interface {
	// SearchCustomers returns customers that are not deleted, most
	// recently updated first (UpdatedAt descending, then CustomerID
	// ascending). An empty q matches every customer; otherwise q matches a
	// customer whose ID or one of whose identity values equals q, or whose
	// name, phone or e-mail contains q, ignoring case.
	SearchCustomers(ctx context.Context, q string, after *Cursor, limit int) ([]merge.Record, error)
	// Customer returns a customer's record; ok is false when the store has
	// never seen the customer.
	Customer(ctx context.Context, customerID string) (r merge.Record, ok bool, err error)
	// Timeline returns a customer's messages across channels in
	// (OccurredAt, MessageID) order.
	Timeline(ctx context.Context, customerID string, after *Cursor, limit int) ([]events.MessageEvent, error)
	// MessageChannels returns, for each of the customers that has
	// messages, the channels its messages came on, sorted.
	MessageChannels(ctx context.Context, customerIDs []string) (map[string][]events.Channel, error)
	// Conflicts returns the conflicts with this status (every status when
	// empty) in (DetectedAt, ID) order: the review queue, oldest first.
	Conflicts(ctx context.Context, status events.ConflictStatus, after *Cursor, limit int) ([]Conflict, error)
	// Conflict returns one conflict by ID; ok is false when there is none.
	Conflict(ctx context.Context, id string) (c Conflict, ok bool, err error)
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
