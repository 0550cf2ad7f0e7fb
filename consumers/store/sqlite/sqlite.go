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
	"sync"
	"time"

	"github.com/segmentio/ksuid"
	_ "modernc.org/sqlite" // the database/sql driver "sqlite"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/pkg/events"
)

// migrations are the schema's versions, each applied once, in order.
var migrations = []string{schemaV1, schemaV2, schemaV3}

var (
	//go:embed schema.sql
	schemaV1 string
	//go:embed schema_v2.sql
	schemaV2 string
	//go:embed schema_v3.sql
	schemaV3 string
)

// Store is a SQLite store. It is safe for concurrent use.
type Store struct {
	db    *sql.DB
	path  string
	stmts *stmts
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
	s := &Store{db: db, path: path, stmts: &stmts{db: db, m: map[string]*sql.Stmt{}}}
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
// standing for the chunk, and calls scan for every row.
func (s *Store) queryByIDs(ctx context.Context, query string, ids []string, scan func(*sql.Rows) error) error {
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(start+500, len(ids))]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		rows, err := s.db.QueryContext(ctx, strings.Replace(query, "IN (?)", "IN ("+placeholders(len(chunk))+")", 1), args...)
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

// Apply writes a batch and the group's offsets in one transaction. Rows go
// in multi-row statements (one per table and chunk of rows, see execRows):
// a statement per row costs more in database/sql and the driver than the
// row costs SQLite. A customer given more than once is written at its
// newest version, as writing each in turn under the version guard would.
func (s *Store) Apply(ctx context.Context, b *store.Batch) error {
	defer s.stmts.prepareNew(ctx)
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
	w := &txWriter{tx: tx, stmts: s.stmts}
	if err := w.writeRecords(ctx, newestPerCustomer(b.Records), b.Base); err != nil {
		return err
	}
	if err := w.insertMessages(ctx, b.Messages); err != nil {
		return err
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
			return fmt.Errorf("writing the policy hash: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	return nil
}

// newestPerCustomer returns the records with, for a customer given more
// than once, only the newest version (the later one on a tie).
func newestPerCustomer(recs []merge.Record) []*merge.Record {
	at := make(map[string]int, len(recs))
	out := make([]*merge.Record, 0, len(recs))
	for i := range recs {
		r := &recs[i]
		if j, ok := at[r.CustomerID]; ok {
			if r.Version >= out[j].Version {
				out[j] = r
			}
			continue
		}
		at[r.CustomerID] = len(out)
		out = append(out, r)
	}
	return out
}

// maxChunk is the most rows of one multi-row statement; a statement
// has 2^k rows (k ≤ 6), so that few distinct statements are parsed and
// they are prepared once per store (stmts) instead of once per batch.
const maxChunk = 64

// stmts holds the store's prepared multi-row statements by text. The
// store has one connection, which a transaction holds: a statement first
// used in one is prepared on it for that transaction (tx.PrepareContext)
// and on the store once the transaction ended (prepareNew).
type stmts struct {
	db  *sql.DB
	mu  sync.Mutex
	m   map[string]*sql.Stmt
	new []string
}

func (c *stmts) get(ctx context.Context, tx *sql.Tx, query string) (*sql.Stmt, error) {
	c.mu.Lock()
	st, ok := c.m[query]
	if !ok {
		c.new = append(c.new, query)
	}
	c.mu.Unlock()
	if ok {
		return tx.StmtContext(ctx, st), nil
	}
	return tx.PrepareContext(ctx, query)
}

// prepareNew prepares the statements first used since it last ran. A
// failure leaves them to be prepared per transaction.
func (c *stmts) prepareNew(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, q := range c.new {
		if _, ok := c.m[q]; ok {
			continue
		}
		if st, err := c.db.PrepareContext(ctx, q); err == nil {
			c.m[q] = st
		}
	}
	c.new = nil
}

// txWriter is a transaction writing rows with the store's statements.
type txWriter struct {
	tx    *sql.Tx
	stmts *stmts
}

// execRows runs head, then " VALUES (?, …), (?, …)" for a chunk of rows,
// then tail, once per chunk; args holds the rows' values one row after
// the other, cols to a row. Rows keep their order. With scan, the
// statement returns rows (RETURNING) and scan is called for each.
func (w *txWriter) execRows(ctx context.Context, head, tail string, cols int, args []any, scan func(*sql.Rows) error) error {
	row := "(" + placeholders(cols) + ")"
	for start := 0; start < len(args); {
		n := maxChunk
		for n*cols > len(args)-start {
			n /= 2
		}
		chunk := args[start : start+n*cols]
		start += n * cols
		var q strings.Builder
		q.Grow(len(head) + len(tail) + n*(len(row)+1) + 8)
		q.WriteString(head)
		q.WriteString(" VALUES ")
		for i := range n {
			if i > 0 {
				q.WriteByte(',')
			}
			q.WriteString(row)
		}
		q.WriteString(" ")
		q.WriteString(tail)
		st, err := w.stmts.get(ctx, w.tx, q.String())
		if err != nil {
			return err
		}
		if scan == nil {
			if _, err := st.ExecContext(ctx, chunk...); err != nil {
				return err
			}
			continue
		}
		rows, err := st.QueryContext(ctx, chunk...)
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

// customerRow appends r's customers row (11 values) to args.
func customerRow(args []any, r *merge.Record) ([]any, error) {
	// MarshalJSON's output is already compact and escaped: the bytes
	// json.Marshal would give, without its second pass over them.
	record, err := r.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("encoding customer %s: %w", r.CustomerID, err)
	}
	var tombAt, tombID, lastAt any
	if r.Tombstone != nil {
		tombAt, tombID = millis(r.Tombstone.At), r.Tombstone.EventID
	}
	if r.LastContact != nil {
		lastAt = millis(r.LastContact.At)
	}
	return append(args, r.CustomerID, r.Version, r.NeedsReview, r.Deleted(), tombAt, tombID, lastAt,
		string(r.LastContactChannel), millis(r.UpdatedAt), r.PolicyHash, string(record)), nil
}

func scanID(into map[string]bool) func(*sql.Rows) error {
	return func(rows *sql.Rows) error {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		into[id] = true
		return nil
	}
}

// writeRecords writes the records (one per customer). A customer whose
// stored version is its Base's is updated in place and gets only the
// child rows that differ from the Base; the others are upserted whole
// where newer than the stored row (the version guard: a re-delivered
// record changes nothing), their child rows replaced.
func (w *txWriter) writeRecords(ctx context.Context, recs []*merge.Record, bases map[string]merge.Record) error {
	diffed := map[string]bool{}
	var args []any
	var err error
	for _, r := range recs {
		if base, ok := bases[r.CustomerID]; ok && base.Version > 0 && base.Version < r.Version {
			if args, err = customerRow(args, r); err != nil {
				return err
			}
			args = append(args, base.Version)
		}
	}
	if err := w.execRows(ctx, `UPDATE customers AS c SET version = v.column2, needs_review = v.column3, deleted = v.column4,
			tombstone_at = v.column5, tombstone_event_id = v.column6, last_contact_at = v.column7, last_contact_channel = v.column8,
			updated_at = v.column9, policy_hash = v.column10, record = v.column11 FROM (`,
		`) AS v WHERE c.customer_id = v.column1 AND c.version = v.column12 RETURNING customer_id`, 12, args, scanID(diffed)); err != nil {
		return fmt.Errorf("writing customers: %w", err)
	}
	args = args[:0]
	for _, r := range recs {
		if !diffed[r.CustomerID] {
			if args, err = customerRow(args, r); err != nil {
				return err
			}
		}
	}
	written := map[string]bool{}
	if err := w.execRows(ctx, `INSERT INTO customers (customer_id, version, needs_review, deleted, tombstone_at, tombstone_event_id,
			last_contact_at, last_contact_channel, updated_at, policy_hash, record)`,
		`ON CONFLICT (customer_id) DO UPDATE SET version = excluded.version, needs_review = excluded.needs_review, deleted = excluded.deleted,
			tombstone_at = excluded.tombstone_at, tombstone_event_id = excluded.tombstone_event_id, last_contact_at = excluded.last_contact_at,
			last_contact_channel = excluded.last_contact_channel, updated_at = excluded.updated_at, policy_hash = excluded.policy_hash,
			record = excluded.record
		WHERE customers.version < excluded.version
		RETURNING customer_id`, 11, args, scanID(written)); err != nil {
		return fmt.Errorf("writing customers: %w", err)
	}
	return w.writeChildren(ctx, recs, written, diffed, bases)
}

// writeChildren writes the fields, conflicts and identities of the
// records written (replacing those stored) and diffed (changing only
// what differs from their Base), and erases the messages their new
// tombstones cover. Deletions come first. Identities go in the records'
// order: one two customers share (a merge not yet made) stays with the
// first; the records keep every identity either way.
func (w *txWriter) writeChildren(ctx context.Context, recs []*merge.Record, written, diffed map[string]bool, bases map[string]merge.Record) error {
	var (
		replaced                           []any // customer IDs
		delFields, delConflicts, delIdents []any
		fields, newConflicts, conflicts    []any
		idents, erase                      []any
	)
	conflictRow := func(args []any, id string, c *merge.Conflict) []any {
		return append(args, c.ID, id, c.Field, c.Current, c.Candidate, c.CandidateEventID, string(c.CandidateChannel),
			c.CandidateSource, millis(c.DetectedAt), string(c.Status), c.ResolvedBy, nullMillis(&c.ResolvedAt))
	}
	for _, r := range recs {
		id := r.CustomerID
		switch {
		case written[id]:
			replaced = append(replaced, id)
			for field, g := range r.Fields {
				fields = append(fields, id, field, g.Value, millis(g.Stamp.At), g.Stamp.EventID, string(g.Channel), g.Source)
			}
			for i := range r.Conflicts {
				newConflicts = conflictRow(newConflicts, id, &r.Conflicts[i])
			}
			if r.Tombstone != nil {
				// Also when the customer was re-created since (a delete
				// and an upsert in one batch).
				erase = append(erase, id, millis(r.Tombstone.At), r.Tombstone.EventID)
			}
		case diffed[id]:
			base := bases[id]
			ch := store.Diff(&base, r)
			for _, field := range ch.RemovedFields {
				delFields = append(delFields, id, field)
			}
			for _, field := range ch.Fields {
				g := r.Fields[field]
				fields = append(fields, id, field, g.Value, millis(g.Stamp.At), g.Stamp.EventID, string(g.Channel), g.Source)
			}
			for _, c := range ch.RemovedConflicts {
				delConflicts = append(delConflicts, c, id)
			}
			for _, i := range ch.Conflicts {
				conflicts = conflictRow(conflicts, id, &r.Conflicts[i])
			}
			for _, i := range ch.RemovedIdentities {
				delIdents = append(delIdents, i.Kind, i.Scope, i.Value, id)
			}
			if ch.TombstoneChanged {
				erase = append(erase, id, millis(r.Tombstone.At), r.Tombstone.EventID)
			}
		default:
			continue
		}
		// Every identity, also of a diffed record: one another customer
		// held may have been released since.
		for _, i := range r.Identities {
			idents = append(idents, i.Kind, i.Scope, i.Value, id)
		}
	}
	for i := 0; i < len(erase); i += 3 {
		if _, err := w.tx.ExecContext(ctx, `DELETE FROM messages WHERE customer_id = ?1 AND (occurred_at < ?2 OR (occurred_at = ?2 AND message_id <= ?3))`,
			erase[i:i+3]...); err != nil {
			return fmt.Errorf("erasing deleted messages: %w", err)
		}
	}
	for _, st := range []struct {
		head, tail string
		cols       int
		args       []any
	}{
		{`DELETE FROM customer_fields WHERE customer_id IN (`, `)`, 1, replaced},
		{`DELETE FROM conflicts WHERE customer_id IN (`, `)`, 1, replaced},
		{`DELETE FROM identities WHERE customer_id IN (`, `)`, 1, replaced},
		{`DELETE FROM customer_fields WHERE (customer_id, field) IN (`, `)`, 2, delFields},
		{`DELETE FROM conflicts WHERE (id, customer_id) IN (`, `)`, 2, delConflicts},
		{`DELETE FROM identities WHERE (kind, scope, value, customer_id) IN (`, `)`, 4, delIdents},
		{`INSERT INTO customer_fields (customer_id, field, value_json, occurred_at, event_id, channel, source)`,
			`ON CONFLICT (customer_id, field) DO UPDATE SET value_json = excluded.value_json, occurred_at = excluded.occurred_at,
				event_id = excluded.event_id, channel = excluded.channel, source = excluded.source`, 7, fields},
		{`INSERT INTO conflicts (id, customer_id, field, current_json, candidate_json, candidate_event_id,
				candidate_channel, candidate_source, detected_at, status, resolved_by, resolved_at)`, ``, 12, newConflicts},
		{`INSERT INTO conflicts (id, customer_id, field, current_json, candidate_json, candidate_event_id,
				candidate_channel, candidate_source, detected_at, status, resolved_by, resolved_at)`,
			`ON CONFLICT (id) DO UPDATE SET customer_id = excluded.customer_id, field = excluded.field, current_json = excluded.current_json,
				candidate_json = excluded.candidate_json, candidate_event_id = excluded.candidate_event_id,
				candidate_channel = excluded.candidate_channel, candidate_source = excluded.candidate_source,
				detected_at = excluded.detected_at, status = excluded.status, resolved_by = excluded.resolved_by,
				resolved_at = excluded.resolved_at`, 12, conflicts},
		{`INSERT INTO identities (kind, scope, value, customer_id)`, `ON CONFLICT (kind, scope, value) DO NOTHING`, 4, idents},
	} {
		if err := w.execRows(ctx, st.head, st.tail, st.cols, st.args, nil); err != nil {
			return fmt.Errorf("writing child rows: %w", err)
		}
	}
	return nil
}

// insertMessages inserts the messages, in order; a message is checked
// against the tombstone stored now, which is the batch's own where its
// record was written and a newer one where not: one whose (occurred_at,
// message_id) is not after the tombstone's was erased by a newer delete
// and is not stored. Of several copies of one message the first is
// stored.
func (w *txWriter) insertMessages(ctx context.Context, msgs []events.MessageEvent) error {
	args := make([]any, 0, len(msgs)*13)
	for i := range msgs {
		m := &msgs[i]
		event, err := json.Marshal(m)
		if err != nil {
			return fmt.Errorf("encoding message %s: %w", m.MessageID, err)
		}
		args = append(args, m.MessageID, m.CustomerID, m.ConversationID, string(m.Channel), string(m.Direction),
			string(m.SenderType), m.SenderID, string(m.ContentType), m.Text, millis(m.OccurredAt), millis(m.IngestedAt), m.Source,
			string(event))
	}
	// "WHERE" makes the ON CONFLICT the INSERT's, not a join's (SQLite's
	// parsing rule for INSERT … SELECT with an upsert).
	if err := w.execRows(ctx, `INSERT INTO messages (message_id, customer_id, conversation_id, channel, direction, sender_type, sender_id,
			content_type, text, occurred_at, ingested_at, source, event)
		SELECT * FROM (`,
		`) AS m WHERE NOT EXISTS (SELECT 1 FROM customers c WHERE c.customer_id = m.column2 AND c.tombstone_at IS NOT NULL
			AND (m.column10 < c.tombstone_at OR (m.column10 = c.tombstone_at AND m.column1 <= COALESCE(c.tombstone_event_id, ''))))
		ON CONFLICT (message_id) DO NOTHING`, 13, args, nil); err != nil {
		return fmt.Errorf("writing messages: %w", err)
	}
	return nil
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
