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
	_ store.Scanner        = (*Store)(nil)
	_ store.Replacer       = (*Store)(nil)
	_ store.LockedReplacer = (*Store)(nil)
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
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return replace(ctx, tx, store.Replacement{CustomerIDs: customerIDs, Records: records, Messages: messages})
	})
	if err != nil {
		return fmt.Errorf("replacing customers: %w", err)
	}
	return nil
}

// ReplaceLocked replaces what prepare returns in one transaction that
// first locks consumer_offsets as a replay's swap does (EXCLUSIVE mode:
// the members' batches wait at their first statement, plain reads go on),
// with the group's offsets and the generation read under the lock.
func (s *Store) ReplaceLocked(ctx context.Context, group string,
	prepare func(ctx context.Context, held map[string]map[int32]int64, generation string) (store.Replacement, error)) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE consumer_offsets IN EXCLUSIVE MODE`); err != nil {
			return fmt.Errorf("locking the store's offsets: %w", err)
		}
		held, err := offsetsOf(ctx, tx, `SELECT topic, partition, next_offset FROM consumer_offsets WHERE group_id = $1`, group)
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
			return fmt.Errorf("replacing customers: %w", err)
		}
		return nil
	})
}

// replace removes r's customers and writes r's records and messages, and
// a new generation, in tx.
func replace(ctx context.Context, tx pgx.Tx, r store.Replacement) error {
	ids := make([]string, len(r.CustomerIDs))
	for i, id := range r.CustomerIDs {
		ids[i] = text(id)
	}
	for _, table := range []string{"customers", "customer_fields", "conflicts", "identities", "messages", "absorptions"} {
		if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE customer_id = ANY($1)`, ids); err != nil {
			return fmt.Errorf("removing customers from %s: %w", table, err)
		}
	}
	recs := newestPerCustomer(r.Records)
	written, err := upsertCustomers(ctx, tx, recs)
	if err != nil {
		return fmt.Errorf("writing customers: %w", err)
	}
	batch := &pgx.Batch{}
	queueChildren(batch, recs, written, nil)
	if err := queueMessages(batch, r.Messages); err != nil {
		return err
	}
	// Members holding these customers' old records refold from here.
	batch.Queue(newGeneration, ksuid.New().String())
	return tx.SendBatch(ctx, batch).Close()
}
