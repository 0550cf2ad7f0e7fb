package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"

	"github.com/omnisync/omnisync/consumers/store"
)

// A replay (package replay) builds a new store in a shadow file beside
// the live one (ShadowPath), then copies it into the live file in one
// write transaction (SwapIn). Other processes keep the live file open and
// need not reopen anything: in WAL mode their readers see the old content
// or the new, never a part of either, and their writers wait for the lock.

// ShadowPath is the file a replay builds a replacement for the store at
// path in.
func ShadowPath(path string) string { return path + ".replay" }

// RemoveFiles removes a closed database file and its WAL and shared-memory
// files, those that exist.
func RemoveFiles(path string) error {
	var errs []error
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// replacedTables are the tables a swap replaces whole; of consumer_offsets
// and store_meta it replaces the group's rows and the policy hash.
var replacedTables = []string{"customers", "customer_fields", "conflicts", "messages", "identities", "absorptions"}

// SwapIn replaces the content of the store at path by the shadow's at
// shadowPath, atomically: in one transaction on the store it takes the
// write lock (group's members wait at their next batch; readers go on),
// reads group's offsets, calls prepare with them (which brings the shadow
// to those offsets and verifies it), checks that the shadow holds them or
// later ones, and replaces every table's rows by the shadow's. When prepare or
// a check fails the store is left untouched. The shadow file is left for
// the caller to close and remove.
func SwapIn(ctx context.Context, path, shadowPath, group string, prepare func(ctx context.Context, live map[string]map[int32]int64) error) error {
	// Deferred transactions: the write lock is taken on the store alone,
	// by the first write; the shadow is read only after prepare.
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, err)
	}
	defer conn.Close()
	if _, err := os.Stat(shadowPath); err != nil {
		return fmt.Errorf("the shadow: %w", err)
	}
	if _, err := conn.ExecContext(ctx, `ATTACH DATABASE ? AS shadow`, shadowPath); err != nil {
		return fmt.Errorf("attaching the shadow %s: %w", shadowPath, err)
	}
	defer conn.ExecContext(context.Background(), `DETACH DATABASE shadow`) //nolint:errcheck // closing anyway
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// The first statement writes, so it waits for the lock (busy_timeout);
	// a write after a read would fail at once if another writer had
	// committed since the read.
	if _, err := tx.ExecContext(ctx, `INSERT INTO main.store_meta (key, value) VALUES ('replay', 'swapping')
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`); err != nil {
		return fmt.Errorf("locking the store: %w", err)
	}
	held, err := offsets(ctx, tx, group)
	if err != nil {
		return err
	}
	if err := prepare(ctx, held); err != nil {
		return err
	}
	// The shadow is read from here on: a snapshot taken after prepare.
	var liveVersion, shadowVersion int
	if err := tx.QueryRowContext(ctx, `SELECT (SELECT MAX(version) FROM main.schema_migrations), (SELECT MAX(version) FROM shadow.schema_migrations)`).
		Scan(&liveVersion, &shadowVersion); err != nil {
		return fmt.Errorf("reading the schema versions: %w", err)
	}
	if liveVersion != shadowVersion {
		return fmt.Errorf("the store has schema version %d, the shadow %d: open the store with this omnisync first", liveVersion, shadowVersion)
	}
	built, err := offsetsIn(ctx, tx, "shadow", group)
	if err != nil {
		return fmt.Errorf("the shadow's offsets: %w", err)
	}
	if !store.Covers(built, held) {
		return fmt.Errorf("the shadow holds offsets %v, the store %v: not swapping", built, held)
	}
	type stmt struct {
		query string
		args  []any
	}
	var stmts []stmt
	for _, t := range replacedTables {
		stmts = append(stmts, stmt{`DELETE FROM main.` + t, nil}, stmt{`INSERT INTO main.` + t + ` SELECT * FROM shadow.` + t, nil})
	}
	stmts = append(stmts,
		stmt{`DELETE FROM main.consumer_offsets WHERE group_id = ?`, []any{group}},
		stmt{`INSERT INTO main.consumer_offsets SELECT * FROM shadow.consumer_offsets WHERE group_id = ?`, []any{group}},
		stmt{`DELETE FROM main.store_meta WHERE key IN ('policy_hash', 'generation', 'replay')`, nil},
		stmt{`INSERT INTO main.store_meta SELECT * FROM shadow.store_meta WHERE key IN ('policy_hash', 'generation')`, nil})
	for _, st := range stmts {
		if _, err := tx.ExecContext(ctx, st.query, st.args...); err != nil {
			return fmt.Errorf("copying the shadow in: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing the swap: %w", err)
	}
	return nil
}

func offsetsIn(ctx context.Context, q querier, schema, group string) (map[string]map[int32]int64, error) {
	rows, err := q.QueryContext(ctx, `SELECT topic, partition, next_offset FROM `+schema+`.consumer_offsets WHERE group_id = ?`, group)
	if err != nil {
		return nil, err
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

// Reset empties the store for a replay in place: no records, messages,
// conflicts, identities or policy, and group's offsets set to from (the
// log's start), in one transaction. A member of group still running finds
// its offsets moved at its next batch and refolds from there.
func (s *Store) Reset(ctx context.Context, group string, from map[string]map[int32]int64) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	stmts := []string{}
	for _, t := range replacedTables {
		stmts = append(stmts, `DELETE FROM `+t)
	}
	stmts = append(stmts, `DELETE FROM store_meta WHERE key = 'policy_hash'`)
	for _, q := range stmts {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("resetting the store: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM consumer_offsets WHERE group_id = ?`, group); err != nil {
		return fmt.Errorf("resetting the store: %w", err)
	}
	if err := setGeneration(ctx, tx); err != nil {
		return err
	}
	for topic, parts := range from {
		for p, next := range parts {
			if _, err := tx.ExecContext(ctx, `INSERT INTO consumer_offsets (group_id, topic, partition, next_offset) VALUES (?, ?, ?, ?)`,
				group, topic, p, next); err != nil {
				return fmt.Errorf("resetting the store: %w", err)
			}
		}
	}
	return tx.Commit()
}
