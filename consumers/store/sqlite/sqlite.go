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

	"github.com/segmentio/ksuid"
	_ "modernc.org/sqlite" // the database/sql driver "sqlite"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/pkg/events"
)

// migrations are the schema's versions, each applied once, in order.
var migrations = []string{schemaV1, schemaV2, schemaV3, schemaV4, schemaV5, schemaV6}

var (
	//go:embed schema.sql
	schemaV1 string
	//go:embed schema_v2.sql
	schemaV2 string
	//go:embed schema_v3.sql
	schemaV3 string
	//go:embed schema_v4.sql
	schemaV4 string
	//go:embed schema_v5.sql
	schemaV5 string
	//go:embed schema_v6.sql
	schemaV6 string
)

// Store is a SQLite store. It is safe for concurrent use.
type Store struct {
	db   *sql.DB
	path string
}

var (
	_ store.Store        = (*Store)(nil)
	_ store.SingleWriter = (*Store)(nil)
)

// Open opens (creating and migrating if needed) the store at path.
func Open(ctx context.Context, path string) (*Store, error) {
	return open(ctx, path, "NORMAL")
}

// OpenShadow opens (creating if needed) a replay's shadow store at path
// (see ShadowPath) without syncing to disk: a shadow is verified before it
// is swapped in (SwapIn), and built anew after a crash.
func OpenShadow(ctx context.Context, path string) (*Store, error) {
	return open(ctx, path, "OFF")
}

// open opens the store at path with the given synchronous setting. WAL
// with synchronous=NORMAL syncs at checkpoints, not at every commit: a
// committed transaction survives a crash of the process, not of the host
// (SQLite's documented trade-off for WAL). The page cache (64 MiB) holds
// the indexes a batch touches, and statement journals stay in memory.
func open(ctx context.Context, path, synchronous string) (*Store, error) {
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(" + synchronous + ")" +
		"&_pragma=cache_size(-65536)&_pragma=temp_store(MEMORY)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	db.SetMaxOpenConns(1) // one writer; WAL lets other processes read meanwhile
	s := &Store{db: db, path: path}
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
	for v := version + 1; v <= len(migrations); v++ {
		if _, err := tx.ExecContext(ctx, migrations[v-1]); err != nil {
			return fmt.Errorf("schema version %d: %w", v, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version) VALUES (?)`, v); err != nil {
			return err
		}
	}
	// Every store has a generation from its first opening on.
	if _, err := tx.ExecContext(ctx, `INSERT INTO store_meta (key, value) VALUES ('generation', ?) ON CONFLICT (key) DO NOTHING`,
		ksuid.New().String()); err != nil {
		return fmt.Errorf("setting the store's generation: %w", err)
	}
	return tx.Commit()
}

// Load returns the stored records of the given customers.
func (s *Store) Load(ctx context.Context, customerIDs []string) (map[string]merge.Record, error) {
	out := make(map[string]merge.Record, len(customerIDs))
	err := s.queryByIDs(ctx, `SELECT customer_id, record FROM customers WHERE customer_id IN (?)`, customerIDs, func(rows *sql.Rows) error {
		var id, text string
		if err := rows.Scan(&id, &text); err != nil {
			return err
		}
		var r merge.Record
		if err := json.Unmarshal([]byte(text), &r); err != nil {
			return fmt.Errorf("record of %s: %w", id, err)
		}
		out[id] = r
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading records: %w", err)
	}
	return out, nil
}

// queryByIDs runs query once per chunk of at most 500 ids, its "IN (?)"
// (or "VALUES (?)", a table of them) standing for the chunk, and calls
// scan for every row.
func (s *Store) queryByIDs(ctx context.Context, query string, ids []string, scan func(*sql.Rows) error) error {
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(start+500, len(ids))]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		q := strings.Replace(query, "IN (?)", "IN ("+placeholders(len(chunk))+")", 1)
		q = strings.Replace(q, "VALUES (?)", "VALUES "+strings.TrimSuffix(strings.Repeat("(?),", len(chunk)), ","), 1)
		rows, err := s.db.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			if err := scan(rows); err != nil {
				rows.Close()
				return err
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
	}
	return nil
}

func placeholders(n int) string { return strings.TrimSuffix(strings.Repeat("?,", n), ",") }

func millis(t time.Time) int64 { return t.UnixMilli() }

func nullMillis(t *time.Time) any {
	if t == nil || t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// Apply writes a batch and the group's offsets in one transaction. Its
// statements are prepared once per transaction and reused for every row.
func (s *Store) Apply(ctx context.Context, b *store.Batch) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning a transaction: %w", err)
	}
	defer tx.Rollback()
	if b.From != nil {
		if err := checkFrom(ctx, tx, b); err != nil {
			return err
		}
	}
	w, err := prepareWriter(ctx, tx)
	if err != nil {
		return err
	}
	for i := range b.Records {
		r := &b.Records[i]
		if base, ok := b.Base[r.CustomerID]; ok {
			done, err := w.updateRecord(ctx, r, &base)
			if err != nil {
				return fmt.Errorf("writing customer %s: %w", r.CustomerID, err)
			}
			if done {
				continue
			}
		}
		if err := w.upsertRecord(ctx, r); err != nil {
			return fmt.Errorf("writing customer %s: %w", r.CustomerID, err)
		}
	}
	for i := range b.Messages {
		m := &b.Messages[i]
		if err := w.upsertMessage(ctx, m); err != nil {
			return fmt.Errorf("writing message %s: %w", m.MessageID, err)
		}
	}
	for topic, parts := range b.Offsets {
		for p, next := range parts {
			if _, err := w.upsertOffset.ExecContext(ctx, b.Group, topic, p, next); err != nil {
				return fmt.Errorf("writing offsets: %w", err)
			}
		}
	}
	if b.PolicyHash != "" {
		if _, err := w.upsertPolicyHash.ExecContext(ctx, b.PolicyHash); err != nil {
			return fmt.Errorf("writing the policy hash: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	return nil
}

// writer holds Apply's statements, prepared on one transaction; they are
// closed when the transaction ends.
type writer struct {
	upsertCustomer   *sql.Stmt
	deleteFields     *sql.Stmt
	deleteConflicts  *sql.Stmt
	deleteIdentities *sql.Stmt
	eraseMessages    *sql.Stmt
	insertField      *sql.Stmt
	insertConflict   *sql.Stmt
	insertIdentity   *sql.Stmt
	insertMessage    *sql.Stmt
	upsertOffset     *sql.Stmt
	upsertPolicyHash *sql.Stmt
	// the customer merge
	deleteAbsorptions *sql.Stmt
	insertAbsorption  *sql.Stmt
	// for updateRecord
	updateCustomer *sql.Stmt
	upsertField    *sql.Stmt
	deleteField    *sql.Stmt
	upsertConflict *sql.Stmt
	deleteConflict *sql.Stmt
	deleteIdentity *sql.Stmt
}

func prepareWriter(ctx context.Context, tx *sql.Tx) (*writer, error) {
	w := &writer{}
	for _, st := range []struct {
		stmt  **sql.Stmt
		query string
	}{
		// The version guard is the upsert's WHERE: a re-delivered record
		// (what is stored is as new or newer) changes no row.
		{&w.upsertCustomer, `INSERT INTO customers (customer_id, version, needs_review, deleted, tombstone_at, tombstone_event_id,
				last_contact_at, last_contact_channel, updated_at, policy_hash, record, merged_into) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (customer_id) DO UPDATE SET version = excluded.version, needs_review = excluded.needs_review, deleted = excluded.deleted,
				tombstone_at = excluded.tombstone_at, tombstone_event_id = excluded.tombstone_event_id, last_contact_at = excluded.last_contact_at,
				last_contact_channel = excluded.last_contact_channel, updated_at = excluded.updated_at, policy_hash = excluded.policy_hash, record = excluded.record,
				merged_into = excluded.merged_into
			WHERE customers.version < excluded.version`},
		{&w.deleteAbsorptions, `DELETE FROM absorptions WHERE customer_id = ?`},
		{&w.insertAbsorption, `INSERT INTO absorptions (customer_id, absorbed_id, merge_id) VALUES (?, ?, ?)`},
		{&w.deleteFields, `DELETE FROM customer_fields WHERE customer_id = ?`},
		{&w.deleteConflicts, `DELETE FROM conflicts WHERE customer_id = ?`},
		{&w.deleteIdentities, `DELETE FROM identities WHERE customer_id = ?`},
		{&w.eraseMessages, `DELETE FROM messages WHERE customer_id = ?1 AND (occurred_at < ?2 OR (occurred_at = ?2 AND message_id <= ?3))`},
		{&w.insertField, `INSERT INTO customer_fields (customer_id, field, value_json, occurred_at, event_id, channel, source)
			VALUES (?, ?, ?, ?, ?, ?, ?)`},
		{&w.insertConflict, `INSERT INTO conflicts (id, customer_id, field, current_json, candidate_json, candidate_event_id,
				candidate_channel, candidate_source, detected_at, status, resolved_by, resolved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`},
		// An identity two customers share (a merge not yet made) stays with
		// the first; the record keeps every identity either way.
		{&w.insertIdentity, `INSERT INTO identities (kind, scope, value, customer_id) VALUES (?, ?, ?, ?)
			ON CONFLICT (kind, scope, value) DO NOTHING`},
		// A message is checked against the tombstone stored now, which is
		// the batch's own where its record was written and a newer one
		// where not: one whose (occurred_at, message_id) is not after the
		// tombstone's was erased by a newer delete and is not stored.
		{&w.insertMessage, `INSERT INTO messages (message_id, customer_id, conversation_id, channel, direction, sender_type, sender_id,
				content_type, text, occurred_at, ingested_at, source, event)
			SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13
			WHERE NOT EXISTS (SELECT 1 FROM customers WHERE customer_id = ?2 AND tombstone_at IS NOT NULL
				AND (?10 < tombstone_at OR (?10 = tombstone_at AND ?1 <= COALESCE(tombstone_event_id, ''))))
			ON CONFLICT (message_id) DO NOTHING`},
		{&w.upsertOffset, `INSERT INTO consumer_offsets (group_id, topic, partition, next_offset) VALUES (?, ?, ?, ?)
			ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = excluded.next_offset`},
		{&w.upsertPolicyHash, `INSERT INTO store_meta (key, value) VALUES ('policy_hash', ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`},
		{&w.updateCustomer, `UPDATE customers SET version = ?, needs_review = ?, deleted = ?, tombstone_at = ?, tombstone_event_id = ?,
				last_contact_at = ?, last_contact_channel = ?, updated_at = ?, policy_hash = ?, record = ?, merged_into = ?
			WHERE customer_id = ? AND version = ?`},
		{&w.upsertField, `INSERT INTO customer_fields (customer_id, field, value_json, occurred_at, event_id, channel, source)
				VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (customer_id, field) DO UPDATE SET value_json = excluded.value_json, occurred_at = excluded.occurred_at,
				event_id = excluded.event_id, channel = excluded.channel, source = excluded.source`},
		{&w.deleteField, `DELETE FROM customer_fields WHERE customer_id = ? AND field = ?`},
		{&w.upsertConflict, `INSERT INTO conflicts (id, customer_id, field, current_json, candidate_json, candidate_event_id,
				candidate_channel, candidate_source, detected_at, status, resolved_by, resolved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (customer_id, id) DO UPDATE SET field = excluded.field, current_json = excluded.current_json,
				candidate_json = excluded.candidate_json, candidate_event_id = excluded.candidate_event_id,
				candidate_channel = excluded.candidate_channel, candidate_source = excluded.candidate_source,
				detected_at = excluded.detected_at, status = excluded.status, resolved_by = excluded.resolved_by,
				resolved_at = excluded.resolved_at`},
		{&w.deleteConflict, `DELETE FROM conflicts WHERE id = ? AND customer_id = ?`},
		{&w.deleteIdentity, `DELETE FROM identities WHERE kind = ? AND scope = ? AND value = ? AND customer_id = ?`},
	} {
		stmt, err := tx.PrepareContext(ctx, st.query)
		if err != nil {
			return nil, fmt.Errorf("preparing statements: %w", err)
		}
		*st.stmt = stmt
	}
	return w, nil
}

func (w *writer) upsertRecord(ctx context.Context, r *merge.Record) error {
	// MarshalJSON's output is already compact and escaped: the bytes
	// json.Marshal would give, without its second pass over them.
	record, err := r.MarshalJSON()
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
	res, err := w.upsertCustomer.ExecContext(ctx, r.CustomerID, r.Version, r.NeedsReview, r.Deleted(), tombAt, tombID, lastAt,
		string(r.LastContactChannel), millis(r.UpdatedAt), r.PolicyHash, string(record), mergedInto(r))
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return nil // re-delivery: what is stored is as new or newer
	}
	if mayHaveAbsorbed(r) {
		if err := w.writeAbsorptions(ctx, r); err != nil {
			return err
		}
	}
	for _, del := range []*sql.Stmt{w.deleteFields, w.deleteConflicts, w.deleteIdentities} {
		if _, err := del.ExecContext(ctx, r.CustomerID); err != nil {
			return err
		}
	}
	if r.Tombstone != nil {
		// Erase the messages the delete covers, also when the customer was
		// re-created since (a delete and an upsert in one batch).
		if _, err := w.eraseMessages.ExecContext(ctx, r.CustomerID, millis(r.Tombstone.At), r.Tombstone.EventID); err != nil {
			return err
		}
	}
	for field, g := range r.Fields {
		if _, err := w.insertField.ExecContext(ctx, r.CustomerID, field, g.Value, millis(g.Stamp.At), g.Stamp.EventID,
			string(g.Channel), g.Source); err != nil {
			return err
		}
	}
	for _, c := range r.Conflicts {
		if _, err := w.insertConflict.ExecContext(ctx, c.ID, r.CustomerID, c.Field, c.Current, c.Candidate, c.CandidateEventID,
			string(c.CandidateChannel), c.CandidateSource, millis(c.DetectedAt), string(c.Status), c.ResolvedBy,
			nullMillis(&c.ResolvedAt)); err != nil {
			return err
		}
	}
	for _, id := range r.AllIdentities() {
		if _, err := w.insertIdentity.ExecContext(ctx, id.Kind, id.Scope, id.Value, r.CustomerID); err != nil {
			return err
		}
	}
	return nil
}

// updateRecord writes r over base where the store holds base's version,
// changing only the child rows that differ; done is false where it does
// not (nothing was written: upsertRecord writes the whole record).
func (w *writer) updateRecord(ctx context.Context, r, base *merge.Record) (done bool, err error) {
	if base.Version <= 0 || r.Version <= base.Version {
		return false, nil
	}
	record, err := r.MarshalJSON()
	if err != nil {
		return false, err
	}
	var tombAt, tombID, lastAt any
	if r.Tombstone != nil {
		tombAt, tombID = millis(r.Tombstone.At), r.Tombstone.EventID
	}
	if r.LastContact != nil {
		lastAt = millis(r.LastContact.At)
	}
	res, err := w.updateCustomer.ExecContext(ctx, r.Version, r.NeedsReview, r.Deleted(), tombAt, tombID, lastAt,
		string(r.LastContactChannel), millis(r.UpdatedAt), r.PolicyHash, string(record), mergedInto(r), r.CustomerID, base.Version)
	if err != nil {
		return false, err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return false, err
	}
	if mayHaveAbsorbed(r) {
		if err := w.writeAbsorptions(ctx, r); err != nil {
			return false, err
		}
	}
	ch := store.Diff(base, r)
	if ch.TombstoneChanged {
		if _, err := w.eraseMessages.ExecContext(ctx, r.CustomerID, millis(r.Tombstone.At), r.Tombstone.EventID); err != nil {
			return false, err
		}
	}
	for _, field := range ch.RemovedFields {
		if _, err := w.deleteField.ExecContext(ctx, r.CustomerID, field); err != nil {
			return false, err
		}
	}
	for _, field := range ch.Fields {
		g := r.Fields[field]
		if _, err := w.upsertField.ExecContext(ctx, r.CustomerID, field, g.Value, millis(g.Stamp.At), g.Stamp.EventID,
			string(g.Channel), g.Source); err != nil {
			return false, err
		}
	}
	for _, id := range ch.RemovedConflicts {
		if _, err := w.deleteConflict.ExecContext(ctx, id, r.CustomerID); err != nil {
			return false, err
		}
	}
	for _, i := range ch.Conflicts {
		c := &r.Conflicts[i]
		if _, err := w.upsertConflict.ExecContext(ctx, c.ID, r.CustomerID, c.Field, c.Current, c.Candidate, c.CandidateEventID,
			string(c.CandidateChannel), c.CandidateSource, millis(c.DetectedAt), string(c.Status), c.ResolvedBy,
			nullMillis(&c.ResolvedAt)); err != nil {
			return false, err
		}
	}
	for _, id := range ch.RemovedIdentities {
		if _, err := w.deleteIdentity.ExecContext(ctx, id.Kind, id.Scope, id.Value, r.CustomerID); err != nil {
			return false, err
		}
	}
	// Every identity, as upsertRecord does: one another customer held
	// may have been released since.
	for _, id := range r.AllIdentities() {
		if _, err := w.insertIdentity.ExecContext(ctx, id.Kind, id.Scope, id.Value, r.CustomerID); err != nil {
			return false, err
		}
	}
	return true, nil
}

// mayHaveAbsorbed reports whether r absorbs customers or once did: only
// an unmerge empties Absorbed, and it records the merge in EndedMerges. The
// absorptions rows of any other customer are none, and are not touched.
func mayHaveAbsorbed(r *merge.Record) bool { return len(r.Absorbed) > 0 || len(r.EndedMerges) > 0 }

// writeAbsorptions replaces the customers absorbed into r.
func (w *writer) writeAbsorptions(ctx context.Context, r *merge.Record) error {
	if _, err := w.deleteAbsorptions.ExecContext(ctx, r.CustomerID); err != nil {
		return err
	}
	for _, a := range r.Absorbed {
		if _, err := w.insertAbsorption.ExecContext(ctx, r.CustomerID, a.CustomerID, a.MergeID); err != nil {
			return err
		}
	}
	return nil
}

// mergedInto returns the survivor r is merged into, nil (NULL) when none.
func mergedInto(r *merge.Record) any {
	if r.MergedInto == nil {
		return nil
	}
	return r.MergedInto.CustomerID
}

func (w *writer) upsertMessage(ctx context.Context, m *events.MessageEvent) error {
	event, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = w.insertMessage.ExecContext(ctx, m.MessageID, m.CustomerID, m.ConversationID, string(m.Channel), string(m.Direction),
		string(m.SenderType), m.SenderID, string(m.ContentType), m.Text, millis(m.OccurredAt), millis(m.IngestedAt), m.Source,
		string(event))
	return err
}

// checkFrom is Apply's compare-and-set (see store.Batch.From), inside its
// transaction, which holds the write lock.
func checkFrom(ctx context.Context, tx *sql.Tx, b *store.Batch) error {
	var h string
	err := tx.QueryRowContext(ctx, `SELECT value FROM store_meta WHERE key = 'policy_hash'`).Scan(&h)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("reading the policy hash: %w", err)
	}
	if h != "" && b.PolicyHash != "" && h != b.PolicyHash {
		return fmt.Errorf("%w (store %s, batch %s)", store.ErrPolicyMismatch, h, b.PolicyHash)
	}
	held, err := offsets(ctx, tx, b.Group)
	if err != nil {
		return err
	}
	gen, err := generation(ctx, tx)
	if err != nil {
		return err
	}
	return store.CheckFrom(b, held, gen)
}

// Generation returns the store's generation (see store.Writer).
func (s *Store) Generation(ctx context.Context) (string, error) {
	return generation(ctx, s.db)
}

func generation(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (string, error) {
	var g string
	if err := q.QueryRowContext(ctx, `SELECT value FROM store_meta WHERE key = 'generation'`).Scan(&g); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("reading the store's generation: %w", err)
	}
	return g, nil
}

// setGeneration gives the store a new generation.
func setGeneration(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO store_meta (key, value) VALUES ('generation', ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, ksuid.New().String()); err != nil {
		return fmt.Errorf("setting the store's generation: %w", err)
	}
	return nil
}

// Offsets returns the group's next offsets.
func (s *Store) Offsets(ctx context.Context, group string) (map[string]map[int32]int64, error) {
	return offsets(ctx, s.db, group)
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func offsets(ctx context.Context, q querier, group string) (map[string]map[int32]int64, error) {
	rows, err := q.QueryContext(ctx, `SELECT topic, partition, next_offset FROM consumer_offsets WHERE group_id = ?`, group)
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
