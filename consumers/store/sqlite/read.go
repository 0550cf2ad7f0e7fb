package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/pkg/events"
)

// SearchCustomers returns a page of live customers matching q, most
// recently updated first. Names, phones and e-mails are matched on their
// string values (json_extract) with instr, which has no wildcards and sees
// past NUL bytes; SQLite's lower folds ASCII letters only.
func (s *Store) SearchCustomers(ctx context.Context, q string, after *store.Cursor, limit int) ([]merge.Record, error) {
	where := []string{"c.deleted = 0", "c.merged_into IS NULL"}
	var args []any
	if q = strings.TrimSpace(q); q != "" {
		where = append(where, `(c.customer_id = ?
			OR EXISTS (SELECT 1 FROM identities i WHERE i.customer_id = c.customer_id AND i.value = ?)
			OR EXISTS (SELECT 1 FROM customer_fields f WHERE f.customer_id = c.customer_id
				AND f.field IN ('name', 'phone', 'email') AND instr(lower(json_extract(f.value_json, '$')), lower(?)) > 0))`)
		args = append(args, q, q, q)
	}
	if after != nil {
		where = append(where, `(c.updated_at < ? OR (c.updated_at = ? AND c.customer_id > ?))`)
		args = append(args, after.At, after.At, after.ID)
	}
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, `SELECT c.record FROM customers c WHERE `+strings.Join(where, " AND ")+`
		ORDER BY c.updated_at DESC, c.customer_id LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("searching customers: %w", err)
	}
	return scanJSON[merge.Record](rows)
}

// Customer returns one customer's record.
func (s *Store) Customer(ctx context.Context, customerID string) (merge.Record, bool, error) {
	var text string
	err := s.db.QueryRowContext(ctx, `SELECT record FROM customers WHERE customer_id = ?`, customerID).Scan(&text)
	if errors.Is(err, sql.ErrNoRows) {
		return merge.Record{}, false, nil
	}
	if err != nil {
		return merge.Record{}, false, fmt.Errorf("reading customer %s: %w", customerID, err)
	}
	var r merge.Record
	if err := json.Unmarshal([]byte(text), &r); err != nil {
		return merge.Record{}, false, fmt.Errorf("record of %s: %w", customerID, err)
	}
	return r, true, nil
}

// MessageChannels returns the channels of each customer's messages and of
// the messages of the customers absorbed into it (through chains); the
// messages_channels index answers it without reading the messages.
func (s *Store) MessageChannels(ctx context.Context, customerIDs []string) (map[string][]events.Channel, error) {
	out := map[string][]events.Channel{}
	err := s.queryByIDs(ctx, `WITH RECURSIVE t(root, id) AS (SELECT column1, column1 FROM (VALUES (?))
			UNION SELECT t.root, a.absorbed_id FROM absorptions a JOIN t ON a.customer_id = t.id)
		SELECT DISTINCT t.root, m.channel FROM t JOIN messages m ON m.customer_id = t.id ORDER BY 1, 2`, customerIDs,
		func(rows *sql.Rows) error {
			var id, ch string
			if err := rows.Scan(&id, &ch); err != nil {
				return err
			}
			out[id] = append(out[id], events.Channel(ch))
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("reading the channels of messages: %w", err)
	}
	return out, nil
}

// Redirect returns the survivor the customer is merged into, "" when none.
func (s *Store) Redirect(ctx context.Context, customerID string) (string, error) {
	var to sql.NullString
	err := s.db.QueryRowContext(ctx, `SELECT merged_into FROM customers WHERE customer_id = ?`, customerID).Scan(&to)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("reading the redirect of %s: %w", customerID, err)
	}
	return to.String, nil
}

// timelineIDs returns the customer and every customer absorbed into it,
// through chains of merges.
func (s *Store) timelineIDs(ctx context.Context, customerID string) ([]any, error) {
	rows, err := s.db.QueryContext(ctx, `WITH RECURSIVE timeline_ids(id) AS (SELECT ?
		UNION SELECT a.absorbed_id FROM absorptions a JOIN timeline_ids t ON a.customer_id = t.id) SELECT id FROM timeline_ids`, customerID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []any
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// Timeline returns a page of a customer's messages across channels, with
// the messages of every customer absorbed into it. A customer that absorbed
// none reads its page straight off the messages_timeline index; a survivor's
// customers' messages are merged and sorted.
func (s *Store) Timeline(ctx context.Context, customerID string, after *store.Cursor, limit int) ([]events.MessageEvent, error) {
	ids, err := s.timelineIDs(ctx, customerID)
	if err != nil {
		return nil, fmt.Errorf("reading the timeline: %w", err)
	}
	query := `SELECT event FROM messages WHERE customer_id IN (` + placeholders(len(ids)) + `)`
	args := ids
	if after != nil {
		query += ` AND (occurred_at > ? OR (occurred_at = ? AND message_id > ?))`
		args = append(args, after.At, after.At, after.ID)
	}
	rows, err := s.db.QueryContext(ctx, query+` ORDER BY occurred_at, message_id LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("reading the timeline: %w", err)
	}
	return scanJSON[events.MessageEvent](rows)
}

const conflictColumns = `id, customer_id, field, current_json, candidate_json, candidate_event_id, candidate_channel,
	candidate_source, detected_at, status, resolved_by, resolved_at`

// Conflicts returns a page of the conflicts with status (all when empty).
func (s *Store) Conflicts(ctx context.Context, status events.ConflictStatus, after *store.Cursor, limit int) ([]store.Conflict, error) {
	// A customer merged into another shows its conflicts on the survivor.
	where := []string{"NOT EXISTS (SELECT 1 FROM customers m WHERE m.customer_id = k.customer_id AND m.merged_into IS NOT NULL)"}
	var args []any
	if status != "" {
		where = append(where, "status = ?")
		args = append(args, string(status))
	}
	if after != nil {
		where = append(where, `(detected_at > ? OR (detected_at = ? AND id > ?))`)
		args = append(args, after.At, after.At, after.ID)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+conflictColumns+` FROM conflicts k WHERE `+strings.Join(where, " AND ")+`
		ORDER BY detected_at, id LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("reading conflicts: %w", err)
	}
	defer rows.Close()
	var out []store.Conflict
	for rows.Next() {
		c, err := scanConflict(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// Conflict returns one conflict.
func (s *Store) Conflict(ctx context.Context, id string) (store.Conflict, bool, error) {
	c, err := scanConflict(s.db.QueryRowContext(ctx, `SELECT `+conflictColumns+` FROM conflicts k WHERE id = ?
		ORDER BY EXISTS (SELECT 1 FROM customers m WHERE m.customer_id = k.customer_id AND m.merged_into IS NOT NULL), customer_id
		LIMIT 1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Conflict{}, false, nil
	}
	if err != nil {
		return store.Conflict{}, false, fmt.Errorf("reading conflict %s: %w", id, err)
	}
	return c, true, nil
}

func scanConflict(row interface{ Scan(...any) error }) (store.Conflict, error) {
	var c store.Conflict
	var channel, status string
	var detected int64
	var resolved sql.NullInt64
	if err := row.Scan(&c.ID, &c.CustomerID, &c.Field, &c.Current, &c.Candidate, &c.CandidateEventID, &channel,
		&c.CandidateSource, &detected, &status, &c.ResolvedBy, &resolved); err != nil {
		return c, err
	}
	c.CandidateChannel, c.Status = events.Channel(channel), events.ConflictStatus(status)
	c.DetectedAt = time.UnixMilli(detected).UTC()
	if resolved.Valid {
		c.ResolvedAt = time.UnixMilli(resolved.Int64).UTC()
	}
	return c, nil
}

// scanJSON decodes rows of one JSON text column into Ts and closes rows.
func scanJSON[T any](rows *sql.Rows) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		var text string
		if err := rows.Scan(&text); err != nil {
			return nil, err
		}
		var v T
		if err := json.Unmarshal([]byte(text), &v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
