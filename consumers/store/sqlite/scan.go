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
	_ store.Scanner  = (*Store)(nil)
	_ store.Replacer = (*Store)(nil)
)

// scanPage is how many customers Scan reads at a time.
const scanPage = 500

// Scan calls fn with every customer and its messages in customer-ID order,
// reading a page of customers (and then their messages) at a time.
// Customer IDs are never empty (the merge ignores events without one), so
// the first page is the one after "".
func (s *Store) Scan(ctx context.Context, fn func(merge.Record, []events.MessageEvent) error) error {
	after := ""
	for {
		var recs []merge.Record
		var ids []string
		rows, err := s.db.QueryContext(ctx, `SELECT customer_id, record FROM customers WHERE customer_id > ?
			ORDER BY customer_id LIMIT ?`, after, scanPage)
		if err != nil {
			return fmt.Errorf("scanning customers: %w", err)
		}
		for rows.Next() {
			var id, text string
			if err := rows.Scan(&id, &text); err != nil {
				rows.Close()
				return fmt.Errorf("scanning customers: %w", err)
			}
			var r merge.Record
			if err := json.Unmarshal([]byte(text), &r); err != nil {
				rows.Close()
				return fmt.Errorf("record of %s: %w", id, err)
			}
			recs, ids = append(recs, r), append(ids, id)
		}
		if err := rows.Close(); err != nil {
			return err
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
		err = s.queryByIDs(ctx, `SELECT customer_id, event FROM messages WHERE customer_id IN (?) ORDER BY customer_id, message_id`, ids,
			func(rows *sql.Rows) error {
				var id, text string
				if err := rows.Scan(&id, &text); err != nil {
					return err
				}
				var m events.MessageEvent
				if err := json.Unmarshal([]byte(text), &m); err != nil {
					return fmt.Errorf("message of %s: %w", id, err)
				}
				for i < len(ids) && ids[i] != id {
					if err := emit(); err != nil {
						return err
					}
				}
				cur = append(cur, m)
				return nil
			})
		if err != nil {
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
	defer s.stmts.prepareNew(ctx)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning a transaction: %w", err)
	}
	defer tx.Rollback()
	for _, table := range []string{"customers", "customer_fields", "conflicts", "identities", "messages"} {
		stmt, err := tx.PrepareContext(ctx, `DELETE FROM `+table+` WHERE customer_id = ?`)
		if err != nil {
			return fmt.Errorf("preparing statements: %w", err)
		}
		for _, id := range customerIDs {
			if _, err := stmt.ExecContext(ctx, id); err != nil {
				return fmt.Errorf("removing customer %s from %s: %w", id, table, err)
			}
		}
	}
	w := &txWriter{tx: tx, stmts: s.stmts}
	if err := w.writeRecords(ctx, newestPerCustomer(records), nil); err != nil {
		return err
	}
	if err := w.insertMessages(ctx, messages); err != nil {
		return err
	}
	// Members holding these customers' old records refold from here.
	if err := setGeneration(ctx, tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	return nil
}
