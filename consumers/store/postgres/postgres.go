// Package postgres is omnisync's production store: the merged customer
// records, their fields with provenance, the review queue, the
// cross-channel timeline, identities and the consumer groups' offsets, in
// PostgreSQL (pgx v5). It has the tables and meaning of the SQLite store
// (see schema_v1.sql for the types) and creates and migrates its schema
// itself. Any number of processes may open the same database; each
// consumer group should have one writer per partition, as Kafka arranges.
//
// Text columns cannot hold NUL bytes or invalid UTF-8 in PostgreSQL: the
// store drops NULs and replaces invalid bytes in plain text columns, while
// the json documents (records and messages) keep every value exactly.
package postgres

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/ksuid"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/pkg/events"
)

var (
	//go:embed schema_v1.sql
	schemaV1 string
	//go:embed schema_v2.sql
	schemaV2 string
	//go:embed schema_v3.sql
	schemaV3 string
	//go:embed schema_v4.sql
	schemaV4 string
	//go:embed schema_v5.sql
	schemaV5 string
)

// migrations[i] takes the schema from version i to version i+1.
var migrations = []string{schemaV1, schemaV2, schemaV3, schemaV4, schemaV5}

// migrationLock is the advisory lock (per database) that serialises
// processes migrating the same database.
const migrationLock int64 = 0x6f6d6e6973796e63 // "omnisync"

// Store is a PostgreSQL store. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
}

var _ store.Store = (*Store)(nil)

// Open connects to the database dsn names — a postgres:// or postgresql://
// URL or a keyword/value string such as "host=db dbname=omnisync", with
// pgx's parameters (pool_max_conns, sslmode, …) — and creates or migrates
// its schema. A database migrated by a newer omnisync is an error.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parsing the PostgreSQL DSN: %w", err)
	}
	return open(ctx, cfg)
}

func open(ctx context.Context, cfg *pgxpool.Config) (*Store, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("migrating the PostgreSQL store (database %s on %s): %w", cfg.ConnConfig.Database, cfg.ConnConfig.Host, err)
	}
	return &Store{pool: pool}, nil
}

// Close closes the connections.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// migrate brings the schema up to date in one transaction, holding an
// advisory lock so that processes opening the database at once take turns.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		var version int
		if err := tx.QueryRow(ctx, `SELECT COALESCE(max(version), 0) FROM schema_migrations`).Scan(&version); err != nil {
			return err
		}
		if version > len(migrations) {
			return fmt.Errorf("schema version %d is newer than this omnisync knows (%d)", version, len(migrations))
		}
		for v := version; v < len(migrations); v++ {
			if _, err := tx.Exec(ctx, migrations[v]); err != nil {
				return fmt.Errorf("schema version %d: %w", v+1, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, v+1); err != nil {
				return err
			}
		}
		// Every store has a generation from its first opening on.
		if _, err := tx.Exec(ctx, `INSERT INTO store_meta (key, value) VALUES ('generation', $1) ON CONFLICT (key) DO NOTHING`,
			ksuid.New().String()); err != nil {
			return fmt.Errorf("setting the store's generation: %w", err)
		}
		return nil
	})
}

// Load returns the stored records of the given customers.
func (s *Store) Load(ctx context.Context, customerIDs []string) (map[string]merge.Record, error) {
	out := make(map[string]merge.Record, len(customerIDs))
	if len(customerIDs) == 0 {
		return out, nil
	}
	ids := make([]string, len(customerIDs))
	for i, id := range customerIDs {
		ids[i] = text(id)
	}
	rows, err := s.pool.Query(ctx, `SELECT record FROM customers WHERE customer_id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("loading records: %w", err)
	}
	recs, err := scanJSON[merge.Record](rows)
	if err != nil {
		return nil, fmt.Errorf("loading records: %w", err)
	}
	for _, r := range recs {
		out[r.CustomerID] = r
	}
	return out, nil
}

// Apply writes a batch and the group's offsets in one transaction. A
// record is written only when its version is newer than the stored one;
// only then are its fields, conflicts and identities replaced, and when it
// has a tombstone its messages not newer than the tombstone are erased. A
// message is inserted unless its ID is stored or it is not newer than its
// customer's tombstone (as stored after this batch's records).
func (s *Store) Apply(ctx context.Context, b *store.Batch) error {
	recs := newestPerCustomer(b.Records)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The compare-and-set comes first, so that nothing is written (and
		// no Base is trusted) unless the store holds the batch's From.
		if b.From != nil {
			if err := checkFrom(ctx, tx, b); err != nil {
				return err
			}
		}
		// Customers stored at their Base version are updated in place and
		// get only their changed child rows; the others are upserted whole.
		diffed, err := updateCustomers(ctx, tx, recs, b.Base)
		if err != nil {
			return fmt.Errorf("writing customers: %w", err)
		}
		full := recs
		if len(diffed) > 0 {
			full = make([]*merge.Record, 0, len(recs)-len(diffed))
			for _, r := range recs {
				if diffed[text(r.CustomerID)] == nil {
					full = append(full, r)
				}
			}
		}
		written, err := upsertCustomers(ctx, tx, full)
		if err != nil {
			return fmt.Errorf("writing customers: %w", err)
		}
		batch := &pgx.Batch{}
		queueChildren(batch, recs, written, diffed)
		if err := queueMessages(batch, b.Messages); err != nil {
			return err
		}
		queueOffsets(batch, b)
		return tx.SendBatch(ctx, batch).Close()
	})
	if err != nil {
		return fmt.Errorf("applying a batch: %w", err)
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
		id := text(r.CustomerID)
		if j, ok := at[id]; ok {
			if r.Version >= out[j].Version {
				out[j] = r
			}
			continue
		}
		at[id] = len(out)
		out = append(out, r)
	}
	return out
}

// upsertCustomers writes the customer rows newer than the stored ones and
// returns the IDs it wrote.
func upsertCustomers(ctx context.Context, tx pgx.Tx, recs []*merge.Record) (map[string]bool, error) {
	written := map[string]bool{}
	if len(recs) == 0 {
		return written, nil
	}
	args, err := customerColumns(recs)
	if err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, `INSERT INTO customers (customer_id, version, needs_review, deleted, tombstone_at, tombstone_event_id,
			last_contact_at, last_contact_channel, updated_at, policy_hash, name, phone, email, record, merged_into)
		SELECT u.id, u.version, u.review, u.deleted, u.tomb_at, u.tomb_id, u.last_at, u.channel, u.updated, u.hash,
			u.name, u.phone, u.email, u.doc::json, u.merged_into
		FROM unnest($1::text[], $2::bigint[], $3::boolean[], $4::boolean[], $5::timestamptz[], $6::text[], $7::timestamptz[],
			$8::text[], $9::timestamptz[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[])
			AS u(id, version, review, deleted, tomb_at, tomb_id, last_at, channel, updated, hash, name, phone, email, doc, merged_into)
		ON CONFLICT (customer_id) DO UPDATE SET version = excluded.version, needs_review = excluded.needs_review,
			deleted = excluded.deleted, tombstone_at = excluded.tombstone_at, tombstone_event_id = excluded.tombstone_event_id,
			last_contact_at = excluded.last_contact_at, last_contact_channel = excluded.last_contact_channel,
			updated_at = excluded.updated_at, policy_hash = excluded.policy_hash, name = excluded.name,
			phone = excluded.phone, email = excluded.email, record = excluded.record, merged_into = excluded.merged_into
		WHERE customers.version < excluded.version
		RETURNING customer_id`,
		args...)
	if err != nil {
		return nil, err
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	for _, id := range got {
		written[id] = true
	}
	return written, nil
}

// customerColumns returns the customers rows of recs as the 15 column
// arrays of upsertCustomers and updateCustomers.
func customerColumns(recs []*merge.Record) ([]any, error) {
	n := len(recs)
	var (
		ids, channels, hashes, docs  = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		versions                     = make([]int64, n)
		review, deleted              = make([]bool, n), make([]bool, n)
		tombAt, lastAt               = make([]*time.Time, n), make([]*time.Time, n)
		updated                      = make([]time.Time, n)
		tombID, names, phones, mails = make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
		mergedInto                   = make([]*string, n)
	)
	for i, r := range recs {
		doc, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("encoding customer %s: %w", r.CustomerID, err)
		}
		ids[i], versions[i], review[i], deleted[i] = text(r.CustomerID), r.Version, r.NeedsReview, r.Deleted()
		if r.Tombstone != nil {
			tombAt[i], tombID[i] = ptr(r.Tombstone.At), ptr(text(r.Tombstone.EventID))
		}
		if r.LastContact != nil {
			lastAt[i] = ptr(r.LastContact.At)
		}
		channels[i], updated[i], hashes[i], docs[i] = text(string(r.LastContactChannel)), r.UpdatedAt, text(r.PolicyHash), string(doc)
		names[i], phones[i], mails[i] = stringField(r, "name"), stringField(r, "phone"), stringField(r, "email")
		if r.MergedInto != nil {
			mergedInto[i] = ptr(text(r.MergedInto.CustomerID))
		}
	}
	return []any{ids, versions, review, deleted, tombAt, tombID, lastAt, channels, updated, hashes, names, phones, mails, docs, mergedInto}, nil
}

// updateCustomers writes, in place, the customers whose stored version is
// their Base's (and older than theirs), and returns those customers' Base
// records by (text) customer ID.
func updateCustomers(ctx context.Context, tx pgx.Tx, recs []*merge.Record, bases map[string]merge.Record) (map[string]*merge.Record, error) {
	diffed := map[string]*merge.Record{}
	var cand []*merge.Record
	var baseVersions []int64
	for _, r := range recs {
		if base, ok := bases[r.CustomerID]; ok && base.Version > 0 && base.Version < r.Version {
			cand, baseVersions = append(cand, r), append(baseVersions, base.Version)
		}
	}
	if len(cand) == 0 {
		return diffed, nil
	}
	args, err := customerColumns(cand)
	if err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, `UPDATE customers c SET version = u.version, needs_review = u.review, deleted = u.deleted,
			tombstone_at = u.tomb_at, tombstone_event_id = u.tomb_id, last_contact_at = u.last_at,
			last_contact_channel = u.channel, updated_at = u.updated, policy_hash = u.hash, name = u.name, phone = u.phone,
			email = u.email, record = u.doc::json, merged_into = u.merged_into
		FROM unnest($1::text[], $2::bigint[], $3::boolean[], $4::boolean[], $5::timestamptz[], $6::text[], $7::timestamptz[],
			$8::text[], $9::timestamptz[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::bigint[])
			AS u(id, version, review, deleted, tomb_at, tomb_id, last_at, channel, updated, hash, name, phone, email, doc, merged_into, base)
		WHERE c.customer_id = u.id AND c.version = u.base
		RETURNING c.customer_id`, append(args, baseVersions)...)
	if err != nil {
		return nil, err
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	byID := make(map[string]*merge.Record, len(cand))
	for _, r := range cand {
		base := bases[r.CustomerID]
		byID[text(r.CustomerID)] = &base
	}
	for _, id := range got {
		diffed[id] = byID[id]
	}
	return diffed, nil
}

// queueChildren queues the replacement of the fields, conflicts and
// identities of the written records, and the erasure of the messages their
// tombstones cover.
//
// Of the customers in diffed (updated in place over their Base) only the
// rows that differ from the Base are written, and rows the Base had and
// the record has not are deleted.
func queueChildren(batch *pgx.Batch, recs []*merge.Record, written map[string]bool, diffed map[string]*merge.Record) {
	if len(written) == 0 && len(diffed) == 0 {
		return
	}
	var dfCust, dfField, dcID, dcCust, diKind, diScope, diValue, diCust []string
	var (
		ids                                                  []string
		tombIDs, tombEvents                                  []string
		tombAt                                               []time.Time
		fCust, fField, fValue, fEvent, fChannel, fSource     []string
		fAt                                                  []time.Time
		cID, cCust, cField, cCur, cCand, cEvent, cChan, cSrc []string
		cStatus, cBy                                         []string
		cAt                                                  []time.Time
		cResolved                                            []*time.Time
		iKind, iScope, iValue, iCust                         []string
		absIDs, aCust, aAbsorbed, aMerge                     []string
	)
	for _, r := range recs {
		id := text(r.CustomerID)
		base := diffed[id]
		if !written[id] && base == nil {
			continue
		}
		fields, conflicts := slices.Collect(maps.Keys(r.Fields)), r.Conflicts
		tombstone := r.Tombstone != nil
		if base == nil {
			ids = append(ids, id)
		} else {
			ch := store.Diff(base, r)
			fields, tombstone = ch.Fields, ch.TombstoneChanged
			conflicts = make([]merge.Conflict, len(ch.Conflicts))
			for i, j := range ch.Conflicts {
				conflicts[i] = r.Conflicts[j]
			}
			for _, f := range ch.RemovedFields {
				dfCust, dfField = append(dfCust, id), append(dfField, text(f))
			}
			for _, c := range ch.RemovedConflicts {
				dcID, dcCust = append(dcID, text(c)), append(dcCust, id)
			}
			for _, i := range ch.RemovedIdentities {
				diKind, diScope, diValue, diCust = append(diKind, text(i.Kind)), append(diScope, text(i.Scope)), append(diValue, text(i.Value)), append(diCust, id)
			}
		}
		// Only an unmerge empties Absorbed, and it records the merge in
		// EndedMerges: other customers have no absorptions rows to touch.
		if len(r.Absorbed) > 0 || len(r.EndedMerges) > 0 {
			absIDs = append(absIDs, id)
			for _, a := range r.Absorbed {
				aCust, aAbsorbed, aMerge = append(aCust, id), append(aAbsorbed, text(a.CustomerID)), append(aMerge, text(a.MergeID))
			}
		}
		if tombstone {
			tombIDs, tombAt, tombEvents = append(tombIDs, id), append(tombAt, r.Tombstone.At), append(tombEvents, text(r.Tombstone.EventID))
		}
		for _, field := range fields {
			g := r.Fields[field]
			fCust, fField, fValue = append(fCust, id), append(fField, text(field)), append(fValue, g.Value)
			fAt, fEvent = append(fAt, g.Stamp.At), append(fEvent, text(g.Stamp.EventID))
			fChannel, fSource = append(fChannel, text(string(g.Channel))), append(fSource, text(g.Source))
		}
		for _, c := range conflicts {
			cID, cCust, cField = append(cID, text(c.ID)), append(cCust, id), append(cField, text(c.Field))
			cCur, cCand, cEvent = append(cCur, text(c.Current)), append(cCand, text(c.Candidate)), append(cEvent, text(c.CandidateEventID))
			cChan, cSrc, cAt = append(cChan, text(string(c.CandidateChannel))), append(cSrc, text(c.CandidateSource)), append(cAt, c.DetectedAt)
			cStatus, cBy = append(cStatus, text(string(c.Status))), append(cBy, text(c.ResolvedBy))
			var resolved *time.Time
			if !c.ResolvedAt.IsZero() {
				resolved = ptr(c.ResolvedAt)
			}
			cResolved = append(cResolved, resolved)
		}
		for _, i := range r.AllIdentities() {
			iKind, iScope, iValue, iCust = append(iKind, text(i.Kind)), append(iScope, text(i.Scope)), append(iValue, text(i.Value)), append(iCust, id)
		}
	}
	// Child rows the new records no longer have are deleted; the others
	// are upserted, and rows that did not change are left alone (most
	// events change one field of many).
	if len(ids) > 0 {
		batch.Queue(`DELETE FROM customer_fields WHERE customer_id = ANY($1)
			AND (customer_id, field) NOT IN (SELECT * FROM unnest($2::text[], $3::text[]))`, ids, fCust, fField)
		batch.Queue(`DELETE FROM conflicts WHERE customer_id = ANY($1)
			AND (customer_id, id) NOT IN (SELECT * FROM unnest($2::text[], $3::text[]))`, ids, cCust, cID)
		batch.Queue(`DELETE FROM identities WHERE customer_id = ANY($1)
			AND (kind, scope, value, customer_id) NOT IN (SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]))`,
			ids, iKind, iScope, iValue, iCust)
	}
	if len(absIDs) > 0 {
		// The customers absorbed into each survivor, rewritten whole.
		batch.Queue(`DELETE FROM absorptions WHERE customer_id = ANY($1)`, absIDs)
		if len(aCust) > 0 {
			batch.Queue(`INSERT INTO absorptions (customer_id, absorbed_id, merge_id)
				SELECT * FROM unnest($1::text[], $2::text[], $3::text[])`, aCust, aAbsorbed, aMerge)
		}
	}
	if len(dfCust) > 0 {
		batch.Queue(`DELETE FROM customer_fields f USING unnest($1::text[], $2::text[]) AS d(customer_id, field)
			WHERE f.customer_id = d.customer_id AND f.field = d.field`, dfCust, dfField)
	}
	if len(dcID) > 0 {
		batch.Queue(`DELETE FROM conflicts c USING unnest($1::text[], $2::text[]) AS d(id, customer_id)
			WHERE c.id = d.id AND c.customer_id = d.customer_id`, dcID, dcCust)
	}
	if len(diKind) > 0 {
		batch.Queue(`DELETE FROM identities i USING unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS d(kind, scope, value, customer_id)
			WHERE (i.kind, i.scope, i.value, i.customer_id) = (d.kind, d.scope, d.value, d.customer_id)`, diKind, diScope, diValue, diCust)
	}
	if len(tombIDs) > 0 {
		batch.Queue(`DELETE FROM messages m USING unnest($1::text[], $2::timestamptz[], $3::text[]) AS t(customer_id, at, event_id)
			WHERE m.customer_id = t.customer_id AND (m.occurred_at, m.message_id) <= (t.at, t.event_id COLLATE "C")`,
			tombIDs, tombAt, tombEvents)
	}
	if len(fCust) > 0 {
		batch.Queue(`INSERT INTO customer_fields AS f (customer_id, field, value, occurred_at, event_id, channel, source)
			SELECT u.customer_id, u.field, u.value::json, u.at, u.event_id, u.channel, u.source
			FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::text[])
				AS u(customer_id, field, value, at, event_id, channel, source)
			ON CONFLICT (customer_id, field) DO UPDATE SET value = excluded.value, occurred_at = excluded.occurred_at,
				event_id = excluded.event_id, channel = excluded.channel, source = excluded.source
			WHERE (f.value::text, f.occurred_at, f.event_id, f.channel, f.source)
				IS DISTINCT FROM (excluded.value::text, excluded.occurred_at, excluded.event_id, excluded.channel, excluded.source)`,
			fCust, fField, fValue, fAt, fEvent, fChannel, fSource)
	}
	if len(cID) > 0 {
		batch.Queue(`INSERT INTO conflicts AS c (id, customer_id, field, current_json, candidate_json, candidate_event_id,
				candidate_channel, candidate_source, detected_at, status, resolved_by, resolved_at)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
				$9::timestamptz[], $10::text[], $11::text[], $12::timestamptz[])
			ON CONFLICT (customer_id, id) DO UPDATE SET field = excluded.field,
				current_json = excluded.current_json, candidate_json = excluded.candidate_json,
				candidate_event_id = excluded.candidate_event_id, candidate_channel = excluded.candidate_channel,
				candidate_source = excluded.candidate_source, detected_at = excluded.detected_at, status = excluded.status,
				resolved_by = excluded.resolved_by, resolved_at = excluded.resolved_at
			WHERE (c.customer_id, c.field, c.current_json, c.candidate_json, c.candidate_event_id, c.candidate_channel,
					c.candidate_source, c.detected_at, c.status, c.resolved_by, c.resolved_at)
				IS DISTINCT FROM (excluded.customer_id, excluded.field, excluded.current_json, excluded.candidate_json,
					excluded.candidate_event_id, excluded.candidate_channel, excluded.candidate_source, excluded.detected_at,
					excluded.status, excluded.resolved_by, excluded.resolved_at)`,
			cID, cCust, cField, cCur, cCand, cEvent, cChan, cSrc, cAt, cStatus, cBy, cResolved)
	}
	if len(iKind) > 0 {
		// An identity two customers share (a merge not yet made) stays with
		// the one that had it first; the records keep every identity. Rows
		// go in key order, so that writers of other partitions sharing an
		// identity wait for each other instead of deadlocking.
		batch.Queue(`INSERT INTO identities (kind, scope, value, customer_id)
			SELECT u.kind, u.scope, u.value, u.customer_id
			FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS u(kind, scope, value, customer_id, n)
			ORDER BY kind COLLATE "C", scope COLLATE "C", value COLLATE "C", n
			ON CONFLICT (kind, scope, value) DO NOTHING`, iKind, iScope, iValue, iCust)
	}
}

// queueMessages queues the insertion of the messages that are new and
// newer than their customer's tombstone. Of several copies of one message
// in the batch (a producer re-sent it after a 503, with another
// ingested_at) only the first is queued: the first copy in the log is the
// one stored, whatever batches the log was cut into. (One INSERT holding
// both would keep whichever the planner's join emits first.)
func queueMessages(batch *pgx.Batch, msgs []events.MessageEvent) error {
	if len(msgs) == 0 {
		return nil
	}
	seen := make(map[string]bool, len(msgs))
	firsts := msgs[:0:0]
	for _, m := range msgs {
		if id := text(m.MessageID); !seen[id] {
			seen[id] = true
			firsts = append(firsts, m)
		}
	}
	msgs = firsts
	n := len(msgs)
	var (
		ids, custs, convs, chans, dirs = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		senderTypes, senders, kinds    = make([]string, n), make([]string, n), make([]string, n)
		texts                          = make([]*string, n)
		occurred, ingested             = make([]time.Time, n), make([]time.Time, n)
		sources, docs                  = make([]string, n), make([]string, n)
	)
	for i := range msgs {
		m := &msgs[i]
		doc, err := json.Marshal(m)
		if err != nil {
			return fmt.Errorf("encoding message %s: %w", m.MessageID, err)
		}
		ids[i], custs[i], convs[i], chans[i] = text(m.MessageID), text(m.CustomerID), text(m.ConversationID), text(string(m.Channel))
		dirs[i], senderTypes[i], senders[i], kinds[i] = text(string(m.Direction)), text(string(m.SenderType)), text(m.SenderID), text(string(m.ContentType))
		if m.Text != nil {
			texts[i] = ptr(text(*m.Text))
		}
		occurred[i], ingested[i], sources[i], docs[i] = millis(m.OccurredAt), millis(m.IngestedAt), text(m.Source), string(doc)
	}
	batch.Queue(`INSERT INTO messages (message_id, customer_id, conversation_id, channel, direction, sender_type, sender_id,
			content_type, text, occurred_at, ingested_at, source, event)
		SELECT m.id, m.customer_id, m.conversation_id, m.channel, m.direction, m.sender_type, m.sender_id,
			m.content_type, m.text, m.occurred_at, m.ingested_at, m.source, m.doc::json
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
			$10::timestamptz[], $11::timestamptz[], $12::text[], $13::text[])
			AS m(id, customer_id, conversation_id, channel, direction, sender_type, sender_id, content_type, text,
				occurred_at, ingested_at, source, doc)
		LEFT JOIN customers c ON c.customer_id = m.customer_id
		WHERE c.tombstone_at IS NULL OR (m.occurred_at, m.id COLLATE "C") > (c.tombstone_at, c.tombstone_event_id)
		ON CONFLICT (message_id) DO NOTHING`,
		ids, custs, convs, chans, dirs, senderTypes, senders, kinds, texts, occurred, ingested, sources, docs)
	return nil
}

// queueOffsets queues the group's offsets and the policy hash.
func queueOffsets(batch *pgx.Batch, b *store.Batch) {
	var topics []string
	var parts []int32
	var next []int64
	for topic, ps := range b.Offsets {
		for p, n := range ps {
			topics, parts, next = append(topics, text(topic)), append(parts, p), append(next, n)
		}
	}
	if len(topics) > 0 {
		batch.Queue(`INSERT INTO consumer_offsets (group_id, topic, partition, next_offset)
			SELECT $1, u.topic, u.partition, u.next FROM unnest($2::text[], $3::integer[], $4::bigint[]) AS u(topic, partition, next)
			ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = excluded.next_offset`,
			text(b.Group), topics, parts, next)
	}
	if b.PolicyHash != "" {
		// Written only when it changes, so that concurrent writers do not
		// queue on the row's lock.
		batch.Queue(`INSERT INTO store_meta (key, value)
			SELECT 'policy_hash', $1::text WHERE NOT EXISTS (SELECT 1 FROM store_meta WHERE key = 'policy_hash' AND value = $1::text)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, text(b.PolicyHash))
	}
}

// checkFrom is Apply's compare-and-set (see store.Batch.From), the
// transaction's first statements: it locks the group's offset rows of
// From's partitions, so a replay's swap (which locks the table) holds the
// batch back before it writes anything, and the batch's statements then
// name the swapped-in tables.
func checkFrom(ctx context.Context, tx pgx.Tx, b *store.Batch) error {
	// Only the rows of From's partitions: transactions of other
	// partitions (Writers) run at once.
	var topics []string
	var parts []int32
	for topic, ps := range b.From {
		for p := range ps {
			topics, parts = append(topics, text(topic)), append(parts, p)
		}
	}
	// One round trip: the lock, then (after it, so as of the lock) the
	// policy hash and the generation.
	batch := &pgx.Batch{}
	batch.Queue(`SELECT o.topic, o.partition, o.next_offset FROM consumer_offsets o
		JOIN unnest($2::text[], $3::integer[]) AS u(topic, partition) ON o.topic = u.topic AND o.partition = u.partition
		WHERE o.group_id = $1 FOR UPDATE OF o`, text(b.Group), topics, parts)
	batch.Queue(`SELECT key, value FROM store_meta WHERE key IN ('policy_hash', 'generation')`)
	br := tx.SendBatch(ctx, batch)
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		return fmt.Errorf("reading offsets: %w", err)
	}
	held, err := scanOffsets(rows)
	if err != nil {
		return err
	}
	meta := map[string]string{}
	rows, err = br.Query()
	if err != nil {
		return fmt.Errorf("reading the policy hash and generation: %w", err)
	}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return fmt.Errorf("reading the policy hash and generation: %w", err)
		}
		meta[k] = v
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading the policy hash and generation: %w", err)
	}
	if err := br.Close(); err != nil {
		return err
	}
	if h := meta["policy_hash"]; h != "" && b.PolicyHash != "" && h != text(b.PolicyHash) {
		return fmt.Errorf("%w (store %s, batch %s)", store.ErrPolicyMismatch, h, b.PolicyHash)
	}
	gen := meta["generation"]
	return store.CheckFrom(b, held, gen)
}

// Generation returns the store's generation (see store.Writer).
func (s *Store) Generation(ctx context.Context) (string, error) {
	return generation(ctx, s.pool)
}

func generation(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (string, error) {
	var g string
	if err := q.QueryRow(ctx, `SELECT value FROM store_meta WHERE key = 'generation'`).Scan(&g); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("reading the store's generation: %w", err)
	}
	return g, nil
}

// newGeneration is the statement giving the store a new generation.
const newGeneration = `INSERT INTO store_meta (key, value) VALUES ('generation', $1)
	ON CONFLICT (key) DO UPDATE SET value = excluded.value`

// Offsets returns the group's next offsets.
func (s *Store) Offsets(ctx context.Context, group string) (map[string]map[int32]int64, error) {
	return offsetsOf(ctx, s.pool, `SELECT topic, partition, next_offset FROM consumer_offsets WHERE group_id = $1`, group)
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func offsetsOf(ctx context.Context, q querier, query, group string, args ...any) (map[string]map[int32]int64, error) {
	rows, err := q.Query(ctx, query, append([]any{text(group)}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("reading offsets: %w", err)
	}
	return scanOffsets(rows)
}

// scanOffsets reads rows of (topic, partition, next offset) and closes them.
func scanOffsets(rows pgx.Rows) (map[string]map[int32]int64, error) {
	defer rows.Close()
	out := map[string]map[int32]int64{}
	for rows.Next() {
		var topic string
		var p int32
		var next int64
		if err := rows.Scan(&topic, &p, &next); err != nil {
			return nil, fmt.Errorf("reading offsets: %w", err)
		}
		if out[topic] == nil {
			out[topic] = map[int32]int64{}
		}
		out[topic][p] = next
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading offsets: %w", err)
	}
	return out, nil
}

// PolicyHash returns the merge policy hash the data was built with.
func (s *Store) PolicyHash(ctx context.Context) (string, error) {
	var h string
	err := s.pool.QueryRow(ctx, `SELECT value FROM store_meta WHERE key = 'policy_hash'`).Scan(&h)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the policy hash: %w", err)
	}
	return h, nil
}

// stringField returns the string value of a record's field for the
// queryable columns, nil when the field is unset, cleared or not a string.
func stringField(r *merge.Record, field string) *string {
	g, ok := r.Fields[field]
	if !ok {
		return nil
	}
	var v string
	if json.Unmarshal([]byte(g.Value), &v) != nil {
		return nil
	}
	return ptr(text(v))
}

// text returns s as PostgreSQL's text type can hold it: without NUL bytes
// and with invalid UTF-8 replaced.
func text(s string) string {
	if strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
}

// millis returns t at millisecond precision, the precision of the store.
func millis(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()).UTC() }

func ptr[T any](v T) *T { return &v }

// scanJSON decodes rows of one json column into Ts and closes rows.
func scanJSON[T any](rows pgx.Rows) ([]T, error) {
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (T, error) {
		var doc []byte
		var v T
		if err := row.Scan(&doc); err != nil {
			return v, err
		}
		return v, json.Unmarshal(doc, &v)
	})
}
