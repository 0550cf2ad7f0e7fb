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

// scanPage is how many customers Scan reads at a time.
const scanPage = 500

// Scan calls fn with every customer and its messages in customer-ID order
// (the columns sort bytewise, COLLATE "C"), reading a page of customers
// (and then their messages) at a time.
// Customer IDs are never empty (the merge ignores events without one), so
// the first page is the one after "".
func (s *Store) Scan(ctx context.Context, fn func(merge.Record, []events.MessageEvent) error) error {
	after := ""
	for {
		var recs []merge.Record
		var ids []string
		rows, err := s.pool.Query(ctx, `SELECT customer_id, record FROM customers WHERE customer_id > $1
			ORDER BY customer_id LIMIT $2`, after, scanPage)
		if err != nil {
			return fmt.Errorf("scanning customers: %w", err)
		}
		for rows.Next() {
			var id string
			var doc []byte
			var r merge.Record
			if err := rows.Scan(&id, &doc); err != nil {
				rows.Close()
				return fmt.Errorf("scanning customers: %w", err)
			}
			if err := json.Unmarshal(doc, &r); err != nil {
				rows.Close()
				return fmt.Errorf("record of %s: %w", id, err)
			}
			recs, ids = append(recs, r), append(ids, id)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("scanning customers: %w", err)
		}
		if len(ids) == 0 {
			return nil
		}
		// The page's messages stream in (customer, message ID) order; a
		// customer is handed over once its last message is read, so only
		// one customer's messages are held at a time.
		i := 0
		var cur []events.MessageEvent
		emit := func() error {
			err := fn(recs[i], cur)
			i, cur = i+1, nil
			return err
		}
		rows, err = s.pool.Query(ctx, `SELECT customer_id, event FROM messages WHERE customer_id = ANY($1)
			ORDER BY customer_id, message_id`, ids)
		if err != nil {
			return fmt.Errorf("scanning messages: %w", err)
		}
		for rows.Next() {
			var id string
			var doc []byte
			var m events.MessageEvent
			if err := rows.Scan(&id, &doc); err != nil {
				rows.Close()
				return fmt.Errorf("scanning messages: %w", err)
			}
			if err := json.Unmarshal(doc, &m); err != nil {
				rows.Close()
				return fmt.Errorf("message of %s: %w", id, err)
			}
			for i < len(ids) && ids[i] != id {
				if err := emit(); err != nil {
					rows.Close()
					return err
				}
			}
			cur = append(cur, m)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("scanning messages: %w", err)
		}
		for i < len(recs) {
			if err := emit(); err != nil {
				return err
			}
		}
		after = ids[len(ids)-1]
	}
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
