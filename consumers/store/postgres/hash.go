package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// TableHash is the canonical hash of one table's content.
type TableHash struct {
	Table string `json:"table"`
	Rows  int64  `json:"rows"`
	MD5   string `json:"md5"` // md5 of the rows' text, one per line, in key order
}

// canonicalTables are the tables a replay of the log rebuilds, each with
// every column as text and its key. Every column is derived from the events
// (times are event times, ingested_at is the producer's), so two stores that
// folded the same log hold the same rows whatever the batching, crashes or
// members were. Left out: consumer_offsets (per group), store_meta and
// schema_migrations (per database).
var canonicalTables = []struct{ name, row, key string }{
	{"customers", `customer_id, version, needs_review, deleted, tombstone_at, tombstone_event_id, last_contact_at,
		last_contact_channel, updated_at, policy_hash, name, phone, email, record::text, merged_into`, `customer_id`},
	{"customer_fields", `customer_id, field, value::text, occurred_at, event_id, channel, source`,
		`customer_id, field COLLATE "C"`},
	{"conflicts", `id, customer_id, field, current_json, candidate_json, candidate_event_id, candidate_channel,
		candidate_source, detected_at, status, resolved_by, resolved_at`, `customer_id, id`},
	{"messages", `message_id, customer_id, conversation_id, channel, direction, sender_type, sender_id, content_type,
		text, occurred_at, ingested_at, source, event::text`, `message_id`},
	{"identities", `kind, scope, value, customer_id`, `kind COLLATE "C", scope COLLATE "C", value COLLATE "C"`},
	{"absorptions", `customer_id, absorbed_id, merge_id`, `customer_id, absorbed_id`},
}

// CanonicalHash hashes the content a replay rebuilds — customers, their
// fields, conflicts, messages, identities and absorptions — independently of the order
// it was written in: each table's rows as text in key order (times in UTC,
// text sorted bytewise), read in one snapshot. sum is the SHA-256 of the
// tables' hashes; two stores hold the same data exactly when their sums
// are equal.
func (s *Store) CanonicalHash(ctx context.Context) (sum string, tables []TableHash, err error) {
	err = pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'`); err != nil {
			return err
		}
		for _, t := range canonicalTables {
			h := TableHash{Table: t.name}
			q := fmt.Sprintf(`SELECT count(*), md5(coalesce(string_agg(r::text, E'\n' ORDER BY %s), ''))
				FROM (SELECT ROW(%s) AS r, * FROM %s) t`, t.key, t.row, t.name)
			if err := tx.QueryRow(ctx, q).Scan(&h.Rows, &h.MD5); err != nil {
				return fmt.Errorf("table %s: %w", t.name, err)
			}
			tables = append(tables, h)
		}
		return nil
	})
	if err != nil {
		return "", nil, fmt.Errorf("hashing the store: %w", err)
	}
	all := sha256.New()
	for _, t := range tables {
		fmt.Fprintf(all, "%s %d %s\n", t.Table, t.Rows, t.MD5)
	}
	return hex.EncodeToString(all.Sum(nil)), tables, nil
}
