package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/pkg/events"
)

var (
	_ store.Scanner        = (*Store)(nil)
	_ store.Replacer       = (*Store)(nil)
	_ store.LockedReplacer = (*Store)(nil)
)

// Scan implements store.Scanner (store.Scan over the store's pages).
func (s *Store) Scan(ctx context.Context, fn func(merge.Record, []events.MessageEvent) error) error {
	return store.Scan(ctx, scanPages{s}, fn)
}

// scanPages reads the store for Scan.
type scanPages struct{ s *Store }

func (p scanPages) Customers(ctx context.Context, after string, limit int) ([]string, []merge.Record, error) {
	rows, err := p.s.db.QueryContext(ctx, `SELECT customer_id, record FROM customers WHERE customer_id > ?
		ORDER BY customer_id LIMIT ?`, after, limit)
	if err != nil {
		return nil, nil, fmt.Errorf("scanning customers: %w", err)
	}
	defer rows.Close()
	var ids []string
	var recs []merge.Record
	for rows.Next() {
		var id, text string
		if err := rows.Scan(&id, &text); err != nil {
			return nil, nil, fmt.Errorf("scanning customers: %w", err)
		}
		var r merge.Record
		if err := json.Unmarshal([]byte(text), &r); err != nil {
			return nil, nil, fmt.Errorf("record of %s: %w", id, err)
		}
		ids, recs = append(ids, id), append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("scanning customers: %w", err)
	}
	return ids, recs, nil
}

func (p scanPages) Messages(ctx context.Context, customerIDs []string, each func(string, events.MessageEvent) error) error {
	err := p.s.queryByIDs(ctx, `SELECT customer_id, event FROM messages WHERE customer_id IN (?) ORDER BY customer_id, message_id`, customerIDs,
		func(rows *sql.Rows) error {
			var id, text string
			if err := rows.Scan(&id, &text); err != nil {
				return err
			}
			var m events.MessageEvent
			if err := json.Unmarshal([]byte(text), &m); err != nil {
				return fmt.Errorf("message of %s: %w", id, err)
			}
			return each(id, m)
		})
	if err != nil {
		return fmt.Errorf("scanning messages: %w", err)
	}
	return nil
}

// Replace removes everything stored of customerIDs and writes records and
// messages in their place, in one transaction.
func (s *Store) Replace(ctx context.Context, customerIDs []string, records []merge.Record, messages []events.MessageEvent) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning a transaction: %w", err)
	}
	defer tx.Rollback()
	if err := replace(ctx, tx, store.Replacement{CustomerIDs: customerIDs, Records: records, Messages: messages}); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	return nil
}

// ReplaceLocked replaces what prepare returns in one transaction that
// holds the store's write lock from its start (the group's members wait
// at their next batch; readers go on), with the group's offsets and the
// generation read under it.
func (s *Store) ReplaceLocked(ctx context.Context, group string,
	prepare func(ctx context.Context, held map[string]map[int32]int64, generation string) (store.Replacement, error)) error {
	tx, err := s.db.BeginTx(ctx, nil) // immediate (_txlock): the write lock is taken here
	if err != nil {
		return fmt.Errorf("locking the store: %w", err)
	}
	defer tx.Rollback()
	held, err := offsets(ctx, tx, group)
	if err != nil {
		return err
	}
	gen, err := generation(ctx, tx)
	if err != nil {
		return err
	}
	r, err := prepare(ctx, held, gen)
	if err != nil {
		return err
	}
	if err := replace(ctx, tx, r); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	return nil
}

// replace removes r's customers and writes r's records and messages, and
// a new generation, in tx.
func replace(ctx context.Context, tx *sql.Tx, r store.Replacement) error {
	for _, table := range []string{"customers", "customer_fields", "conflicts", "identities", "messages", "absorptions"} {
		stmt, err := tx.PrepareContext(ctx, `DELETE FROM `+table+` WHERE customer_id = ?`)
		if err != nil {
			return fmt.Errorf("preparing statements: %w", err)
		}
		for _, id := range r.CustomerIDs {
			if _, err := stmt.ExecContext(ctx, id); err != nil {
				return fmt.Errorf("removing customer %s from %s: %w", id, table, err)
			}
		}
	}
	w, err := prepareWriter(ctx, tx)
	if err != nil {
		return err
	}
	for i := range r.Records {
		if err := w.upsertRecord(ctx, &r.Records[i]); err != nil {
			return fmt.Errorf("writing customer %s: %w", r.Records[i].CustomerID, err)
		}
	}
	for i := range r.Messages {
		if err := w.upsertMessage(ctx, &r.Messages[i]); err != nil {
			return fmt.Errorf("writing message %s: %w", r.Messages[i].MessageID, err)
		}
	}
	// Members holding these customers' old records refold from here.
	return setGeneration(ctx, tx)
}
