// Package sqlite is omnisync's embedded store: the merged customer records,
// their fields with provenance, the review queue, the cross-channel
// timeline, identities and the consumer groups' offsets, in one SQLite file
// (pure Go, no cgo). One process writes; others may read.
package sqlite

import (
	"context"
	"database/sql"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the database/sql driver "sqlite"

	"github.com/omnisync/omnisync/consumers/materializer"
	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/pkg/events"
)

//go:embed schema.sql
var schemaV1 string

// Store is a SQLite store. It is safe for concurrent use.
type Store struct {
	db *sql.DB
}

var _ materializer.Store = (*Store)(nil)

// Open opens (creating and migrating if needed) the store at path.
func Open(ctx context.Context, path string) (*Store, error) {
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	db.SetMaxOpenConns(1) // one writer; WAL lets other processes read meanwhile
	s := &Store{db: db}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrating %s: %w", path, err)
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)`); err != nil {
		return err
	}
	var version int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&version); err != nil {
		return err
	}
	if version < 1 {
		if _, err := tx.ExecContext(ctx, schemaV1); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version) VALUES (1)`); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Load returns the stored records of the given customers.
func (s *Store) Load(ctx context.Context, customerIDs []string) (map[string]merge.Record, error) {
	out := make(map[string]merge.Record, len(customerIDs))
	for start := 0; start < len(customerIDs); start += 500 {
		chunk := customerIDs[start:min(start+500, len(customerIDs))]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		rows, err := s.db.QueryContext(ctx, `SELECT customer_id, record FROM customers WHERE customer_id IN (`+placeholders(len(chunk))+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("loading records: %w", err)
		}
		for rows.Next() {
			var id, text string
			if err := rows.Scan(&id, &text); err != nil {
				rows.Close()
				return nil, err
			}
			var r merge.Record
			if err := json.Unmarshal([]byte(text), &r); err != nil {
				rows.Close()
				return nil, fmt.Errorf("record of %s: %w", id, err)
			}
			out[id] = r
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func placeholders(n int) string { return strings.TrimSuffix(strings.Repeat("?,", n), ",") }

func millis(t time.Time) int64 { return t.UnixMilli() }

func nullMillis(t *time.Time) any {
	if t == nil || t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// Apply writes a batch and the group's offsets in one transaction.
func (s *Store) Apply(ctx context.Context, b *materializer.Batch) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning a transaction: %w", err)
	}
	defer tx.Rollback()
	for i := range b.Records {
		r := &b.Records[i]
		if err := upsertRecord(ctx, tx, r); err != nil {
			return fmt.Errorf("writing customer %s: %w", r.CustomerID, err)
		}
	}
	// Messages are checked against the tombstone stored now, which is the
	// batch's own where its record was written and a newer one where not.
	tombstones := map[string]*merge.Stamp{}
	for i := range b.Messages {
		m := &b.Messages[i]
		tomb, ok := tombstones[m.CustomerID]
		if !ok {
			if tomb, err = storedTombstone(ctx, tx, m.CustomerID); err != nil {
				return err
			}
			tombstones[m.CustomerID] = tomb
		}
		if tomb != nil && !(merge.Stamp{At: m.OccurredAt.UTC().Truncate(time.Millisecond), EventID: m.MessageID}).After(*tomb) {
			continue // erased by a newer delete
		}
		if err := upsertMessage(ctx, tx, m); err != nil {
			return fmt.Errorf("writing message %s: %w", m.MessageID, err)
		}
	}
	for topic, parts := range b.Offsets {
		for p, next := range parts {
			if _, err := tx.ExecContext(ctx, `INSERT INTO consumer_offsets (group_id, topic, partition, next_offset) VALUES (?, ?, ?, ?)
				ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = excluded.next_offset`, b.Group, topic, p, next); err != nil {
				return fmt.Errorf("writing offsets: %w", err)
			}
		}
	}
	if b.PolicyHash != "" {
		if _, err := tx.ExecContext(ctx, `INSERT INTO store_meta (key, value) VALUES ('policy_hash', ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, b.PolicyHash); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	return nil
}

func storedTombstone(ctx context.Context, tx *sql.Tx, customerID string) (*merge.Stamp, error) {
	var at sql.NullInt64
	var id sql.NullString
	err := tx.QueryRowContext(ctx, `SELECT tombstone_at, tombstone_event_id FROM customers WHERE customer_id = ?`, customerID).Scan(&at, &id)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !at.Valid) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &merge.Stamp{At: time.UnixMilli(at.Int64).UTC(), EventID: id.String}, nil
}

func upsertRecord(ctx context.Context, tx *sql.Tx, r *merge.Record) error {
	var stored int64
	err := tx.QueryRowContext(ctx, `SELECT version FROM customers WHERE customer_id = ?`, r.CustomerID).Scan(&stored)
	switch {
	case err == nil && stored >= r.Version:
		return nil // re-delivery: what is stored is as new or newer
	case err != nil && !errors.Is(err, sql.ErrNoRows):
		return err
	}
	record, err := json.Marshal(r)
	if err != nil {
		return err
	}
	var tombAt, tombID, lastAt any
	if r.Tombstone != nil {
		tombAt, tombID = millis(r.Tombstone.At), r.Tombstone.EventID
	}
	if r.LastContact != nil {
		lastAt = millis(r.LastContact.At)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO customers (customer_id, version, needs_review, deleted, tombstone_at, tombstone_event_id,
			last_contact_at, last_contact_channel, updated_at, policy_hash, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (customer_id) DO UPDATE SET version = excluded.version, needs_review = excluded.needs_review, deleted = excluded.deleted,
			tombstone_at = excluded.tombstone_at, tombstone_event_id = excluded.tombstone_event_id, last_contact_at = excluded.last_contact_at,
			last_contact_channel = excluded.last_contact_channel, updated_at = excluded.updated_at, policy_hash = excluded.policy_hash, record = excluded.record`,
		r.CustomerID, r.Version, r.NeedsReview, r.Deleted(), tombAt, tombID, lastAt, string(r.LastContactChannel),
		millis(r.UpdatedAt), r.PolicyHash, string(record)); err != nil {
		return err
	}
	for _, table := range []string{"customer_fields", "conflicts", "identities"} {
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE customer_id = ?`, r.CustomerID); err != nil {
			return err
		}
	}
	if r.Tombstone != nil {
		// Erase the messages the delete covers, also when the customer was
		// re-created since (a delete and an upsert in one batch).
		at := millis(r.Tombstone.At)
		if _, err := tx.ExecContext(ctx, `DELETE FROM messages WHERE customer_id = ? AND (occurred_at < ? OR (occurred_at = ? AND message_id <= ?))`,
			r.CustomerID, at, at, r.Tombstone.EventID); err != nil {
			return err
		}
	}
	for field, g := range r.Fields {
		if _, err := tx.ExecContext(ctx, `INSERT INTO customer_fields (customer_id, field, value_json, occurred_at, event_id, channel, source)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, r.CustomerID, field, g.Value, millis(g.Stamp.At), g.Stamp.EventID, string(g.Channel), g.Source); err != nil {
			return err
		}
	}
	for _, c := range r.Conflicts {
		if _, err := tx.ExecContext(ctx, `INSERT INTO conflicts (id, customer_id, field, current_json, candidate_json, candidate_event_id,
				candidate_channel, candidate_source, detected_at, status, resolved_by, resolved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			c.ID, r.CustomerID, c.Field, c.Current, c.Candidate, c.CandidateEventID, string(c.CandidateChannel), c.CandidateSource,
			millis(c.DetectedAt), string(c.Status), c.ResolvedBy, nullMillis(&c.ResolvedAt)); err != nil {
			return err
		}
	}
	for _, id := range r.Identities {
		// An identity two customers share (a merge not yet made) stays with
		// the first; the record keeps every identity either way.
		if _, err := tx.ExecContext(ctx, `INSERT INTO identities (kind, scope, value, customer_id) VALUES (?, ?, ?, ?)
			ON CONFLICT (kind, scope, value) DO NOTHING`, id.Kind, id.Scope, id.Value, r.CustomerID); err != nil {
			return err
		}
	}
	return nil
}

func upsertMessage(ctx context.Context, tx *sql.Tx, m *events.MessageEvent) error {
	event, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO messages (message_id, customer_id, conversation_id, channel, direction, sender_type, sender_id,
			content_type, text, occurred_at, ingested_at, source, event) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (message_id) DO NOTHING`,
		m.MessageID, m.CustomerID, m.ConversationID, string(m.Channel), string(m.Direction), string(m.SenderType), m.SenderID,
		string(m.ContentType), m.Text, millis(m.OccurredAt), millis(m.IngestedAt), m.Source, string(event))
	return err
}

// Offsets returns the group's next offsets.
func (s *Store) Offsets(ctx context.Context, group string) (map[string]map[int32]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT topic, partition, next_offset FROM consumer_offsets WHERE group_id = ?`, group)
	if err != nil {
		return nil, fmt.Errorf("reading offsets: %w", err)
	}
	defer rows.Close()
	out := map[string]map[int32]int64{}
	for rows.Next() {
		var topic string
		var p int32
		var next int64
		if err := rows.Scan(&topic, &p, &next); err != nil {
			return nil, err
		}
		if out[topic] == nil {
			out[topic] = map[int32]int64{}
		}
		out[topic][p] = next
	}
	return out, rows.Err()
}

// PolicyHash returns the merge policy hash the data was built with.
func (s *Store) PolicyHash(ctx context.Context) (string, error) {
	var h string
	err := s.db.QueryRowContext(ctx, `SELECT value FROM store_meta WHERE key = 'policy_hash'`).Scan(&h)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return h, err
}
