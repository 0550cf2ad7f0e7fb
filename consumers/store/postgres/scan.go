package postgres

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/ksuid"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/pkg/events"
)

var (
	_ store.Scanner  = (*Store)(nil)
	_ store.Replacer = (*Store)(nil)
)

// Scan implements store.Scanner (store.Scan over the store's pages); the
// columns sort bytewise (COLLATE "C").
func (s *Store) Scan(ctx context.Context, fn func(merge.Record, []events.MessageEvent) error) error {
	return store.Scan(ctx, scanPages{s}, fn)
}

// scanPages reads the store for Scan.
type scanPages struct{ s *Store }

func (p scanPages) Customers(ctx context.Context, after string, limit int) ([]string, []merge.Record, error) {
	rows, err := p.s.pool.Query(ctx, `SELECT customer_id, record FROM customers WHERE customer_id > $1
		ORDER BY customer_id LIMIT $2`, after, limit)
	if err != nil {
		return nil, nil, fmt.Errorf("scanning customers: %w", err)
	}
	defer rows.Close()
	var ids []string
	var recs []merge.Record
	for rows.Next() {
		var id string
		var doc []byte
		if err := rows.Scan(&id, &doc); err != nil {
			return nil, nil, fmt.Errorf("scanning customers: %w", err)
		}
		var r merge.Record
		if err := json.Unmarshal(doc, &r); err != nil {
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
	rows, err := p.s.pool.Query(ctx, `SELECT customer_id, event FROM messages WHERE customer_id = ANY($1)
		ORDER BY customer_id, message_id`, customerIDs)
	if err != nil {
		return fmt.Errorf("scanning messages: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var doc []byte
		if err := rows.Scan(&id, &doc); err != nil {
			return fmt.Errorf("scanning messages: %w", err)
		}
		var m events.MessageEvent
		if err := json.Unmarshal(doc, &m); err != nil {
			return fmt.Errorf("message of %s: %w", id, err)
		}
		if err := each(id, m); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("scanning messages: %w", err)
	}
	return nil
}

// Replace removes everything stored of customerIDs and writes records and
// messages in their place, in one transaction.
func (s *Store) Replace(ctx context.Context, customerIDs []string, records []merge.Record, messages []events.MessageEvent) error {
	ids := make([]string, len(customerIDs))
	for i, id := range customerIDs {
		ids[i] = text(id)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, table := range []string{"customers", "customer_fields", "conflicts", "identities", "messages", "absorptions"} {
			if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE customer_id = ANY($1)`, ids); err != nil {
				return fmt.Errorf("removing customers from %s: %w", table, err)
			}
		}
		recs := newestPerCustomer(records)
		written, err := upsertCustomers(ctx, tx, recs)
		if err != nil {
			return fmt.Errorf("writing customers: %w", err)
		}
		batch := &pgx.Batch{}
		queueChildren(batch, recs, written, nil)
		if err := queueMessages(batch, messages); err != nil {
			return err
		}
		// Members holding these customers' old records refold from here.
		batch.Queue(newGeneration, ksuid.New().String())
		return tx.SendBatch(ctx, batch).Close()
	})
	if err != nil {
		return fmt.Errorf("replacing customers: %w", err)
	}
	return nil
}
