package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/ksuid"

	"github.com/omnisync/omnisync/consumers/store"
)

// A replay (package replay) builds a new store in a shadow schema of the
// same database, then swaps it in by renaming schemas in one transaction.
// Every connection names the tables unqualified and finds them through its
// search_path (the live store's: the default, "$user", public; a shadow's:
// its schema alone), so after the rename the live connections' next
// statements name the swapped-in tables: PostgreSQL re-plans its cached
// plans (pgx prepares every statement) when a schema is renamed, and a
// statement waiting for a lock re-resolves the names once it has it.

// ShadowSchema is the schema a replay builds a replacement for the store
// in live in.
func ShadowSchema(live string) string { return live + "_replay" }

// OpenSchema opens (creating the schema, and migrating it, if needed) the
// store whose tables are in schema: its connections search that schema
// alone.
func OpenSchema(ctx context.Context, dsn, schema string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parsing the PostgreSQL DSN: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	_, err = conn.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{schema}.Sanitize())
	conn.Close(ctx)
	if err != nil {
		return nil, fmt.Errorf("creating schema %s: %w", schema, err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{schema}.Sanitize()
	return open(ctx, cfg)
}

// Schema returns the schema the store's tables are in.
func (s *Store) Schema(ctx context.Context) (string, error) {
	var schema *string
	if err := s.pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return "", fmt.Errorf("reading the store's schema: %w", err)
	}
	if schema == nil {
		return "", errors.New("the store's search_path names no existing schema")
	}
	return *schema, nil
}

// DropSchema drops schema and all it holds, if it exists.
func (s *Store) DropSchema(ctx context.Context, schema string) error {
	if _, err := s.pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
		return fmt.Errorf("dropping schema %s: %w", schema, err)
	}
	return nil
}

// SwapIn replaces the store by the one in schema shadow, atomically: in
// one transaction it locks the store's offsets table (group's members
// wait at their next batch's first statement, before writing anything;
// readers go on), reads group's offsets, calls prepare with them (which
// brings the shadow to those offsets, or later ones, and verifies it), checks
// that the shadow holds them, and renames the store's schema away and
// the shadow's to the store's. Readers see the old store or the new,
// never a part of either. The old schema is dropped afterwards. When
// prepare or a check fails the store is left untouched.
func (s *Store) SwapIn(ctx context.Context, shadow, group string, prepare func(ctx context.Context, live map[string]map[int32]int64) error) error {
	live, err := s.Schema(ctx)
	if err != nil {
		return err
	}
	if live == shadow {
		return fmt.Errorf("the store is in schema %s, the shadow's own", shadow)
	}
	old := live + "_replaced"
	if err := s.DropSchema(ctx, old); err != nil {
		return err
	}
	liveID, shadowID, oldID := pgx.Identifier{live}.Sanitize(), pgx.Identifier{shadow}.Sanitize(), pgx.Identifier{old}.Sanitize()
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE `+liveID+`.consumer_offsets IN EXCLUSIVE MODE`); err != nil {
			return fmt.Errorf("locking the store's offsets: %w", err)
		}
		held, err := offsetsOf(ctx, tx, `SELECT topic, partition, next_offset FROM `+liveID+`.consumer_offsets WHERE group_id = $1`, group)
		if err != nil {
			return err
		}
		if err := prepare(ctx, held); err != nil {
			return err
		}
		built, err := offsetsOf(ctx, tx, `SELECT topic, partition, next_offset FROM `+shadowID+`.consumer_offsets WHERE group_id = $1`, group)
		if err != nil {
			return fmt.Errorf("the shadow's offsets: %w", err)
		}
		if !store.Covers(built, held) {
			return fmt.Errorf("the shadow holds offsets %v, the store %v: not swapping", built, held)
		}
		// Accounts and credentials are the API's, not the log's: they move
		// over with the swap.
		for _, q := range []string{`DELETE FROM ` + shadowID + `.credentials`, `DELETE FROM ` + shadowID + `.accounts`,
			`INSERT INTO ` + shadowID + `.accounts SELECT * FROM ` + liveID + `.accounts`,
			`INSERT INTO ` + shadowID + `.credentials SELECT * FROM ` + liveID + `.credentials`} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("carrying the accounts over to the shadow: %w", err)
			}
		}
		if _, err := tx.Exec(ctx, `ALTER SCHEMA `+liveID+` RENAME TO `+oldID); err != nil {
			return fmt.Errorf("renaming schema %s: %w", live, err)
		}
		if _, err := tx.Exec(ctx, `ALTER SCHEMA `+shadowID+` RENAME TO `+liveID); err != nil {
			return fmt.Errorf("renaming schema %s: %w", shadow, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return s.DropSchema(ctx, old)
}

// Reset empties the store for a replay in place: no records, messages,
// conflicts, identities or policy, and group's offsets set to from (the
// log's start), in one transaction. A member of group still running finds
// its offsets moved at its next batch and refolds from there.
func (s *Store) Reset(ctx context.Context, group string, from map[string]map[int32]int64) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		batch := &pgx.Batch{}
		// The offsets first, as the swap does: a batch locks its offset
		// rows before it writes customers, so truncating first deadlocks
		// with a batch under way.
		batch.Queue(`LOCK TABLE consumer_offsets IN EXCLUSIVE MODE`)
		batch.Queue(`TRUNCATE customers, customer_fields, conflicts, messages, identities, absorptions`)
		batch.Queue(`DELETE FROM store_meta WHERE key = 'policy_hash'`)
		batch.Queue(newGeneration, ksuid.New().String())
		batch.Queue(`DELETE FROM consumer_offsets WHERE group_id = $1`, text(group))
		queueOffsets(batch, &store.Batch{Group: group, Offsets: from})
		return tx.SendBatch(ctx, batch).Close()
	})
	if err != nil {
		return fmt.Errorf("resetting the store: %w", err)
	}
	return nil
}
