package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/pkg/events"
)

// args collects positional query arguments.
type args []any

// add appends v and returns its placeholder.
func (a *args) add(v any) string {
	*a = append(*a, v)
	return fmt.Sprintf("$%d", len(*a))
}

func checkLimit(limit int) error {
	if limit <= 0 {
		return fmt.Errorf("page limit %d: want a positive limit", limit)
	}
	return nil
}

// SearchCustomers returns a page of live customers matching q, most
// recently updated first. Case is ignored as the database's LC_CTYPE
// folds it (ILIKE): only ASCII under the C locale.
func (s *Store) SearchCustomers(ctx context.Context, q string, after *store.Cursor, limit int) ([]merge.Record, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	var a args
	where := []string{"NOT c.deleted", "c.merged_into IS NULL"}
	if q = text(strings.TrimSpace(q)); q != "" {
		eq, like := a.add(q), a.add("%"+escapeLike(q)+"%")
		where = append(where, `(c.customer_id = `+eq+` OR c.name ILIKE `+like+` OR c.phone ILIKE `+like+` OR c.email ILIKE `+like+`
			OR EXISTS (SELECT 1 FROM identities i WHERE i.value = `+eq+` AND i.customer_id = c.customer_id))`)
	}
	if after != nil {
		at, id := a.add(time.UnixMilli(after.At)), a.add(text(after.ID))
		where = append(where, `(c.updated_at < `+at+` OR (c.updated_at = `+at+` AND c.customer_id > `+id+`))`)
	}
	rows, err := s.pool.Query(ctx, `SELECT c.record FROM customers c WHERE `+strings.Join(where, " AND ")+`
		ORDER BY c.updated_at DESC, c.customer_id LIMIT `+a.add(limit), a...)
	if err != nil {
		return nil, fmt.Errorf("searching customers: %w", err)
	}
	out, err := scanJSON[merge.Record](rows)
	if err != nil {
		return nil, fmt.Errorf("searching customers: %w", err)
	}
	return out, nil
}

// escapeLike escapes LIKE's wildcards and its default escape character.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// Customer returns one customer's record.
func (s *Store) Customer(ctx context.Context, customerID string) (merge.Record, bool, error) {
	rows, err := s.pool.Query(ctx, `SELECT record FROM customers WHERE customer_id = $1`, text(customerID))
	if err != nil {
		return merge.Record{}, false, fmt.Errorf("reading customer %s: %w", customerID, err)
	}
	recs, err := scanJSON[merge.Record](rows)
	if err != nil || len(recs) == 0 {
		if err != nil {
			err = fmt.Errorf("reading customer %s: %w", customerID, err)
		}
		return merge.Record{}, false, err
	}
	return recs[0], true, nil
}

// MessageChannels returns the channels of each customer's messages and of
// the messages of the customers absorbed into it (through chains); the
// messages_channels index answers it without reading the messages.
func (s *Store) MessageChannels(ctx context.Context, customerIDs []string) (map[string][]events.Channel, error) {
	ids := make([]string, len(customerIDs))
	for i, id := range customerIDs {
		ids[i] = text(id)
	}
	rows, err := s.pool.Query(ctx, `WITH RECURSIVE t(root, id) AS (SELECT r COLLATE "C", r COLLATE "C" FROM unnest($1::text[]) AS r
			UNION SELECT t.root, a.absorbed_id FROM absorptions a JOIN t ON a.customer_id = t.id)
		SELECT DISTINCT t.root, m.channel FROM t JOIN messages m ON m.customer_id = t.id ORDER BY 1, 2`, ids)
	if err != nil {
		return nil, fmt.Errorf("reading the channels of messages: %w", err)
	}
	out := map[string][]events.Channel{}
	var id, ch string
	_, err = pgx.ForEachRow(rows, []any{&id, &ch}, func() error {
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
	var to *string
	err := s.pool.QueryRow(ctx, `SELECT merged_into FROM customers WHERE customer_id = $1`, text(customerID)).Scan(&to)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("reading the redirect of %s: %w", customerID, err)
	}
	if to == nil {
		return "", nil
	}
	return *to, nil
}

// Timeline returns a page of a customer's messages across channels, with
// the messages of every customer absorbed into it (through chains). A
// customer that absorbed none reads its page straight off the
// messages_timeline index; a survivor's customers' messages are sorted.
func (s *Store) Timeline(ctx context.Context, customerID string, after *store.Cursor, limit int) ([]events.MessageEvent, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `WITH RECURSIVE timeline_ids(id) AS (SELECT $1::text COLLATE "C"
			UNION SELECT ab.absorbed_id FROM absorptions ab JOIN timeline_ids t ON ab.customer_id = t.id)
		SELECT id FROM timeline_ids`, text(customerID))
	if err != nil {
		return nil, fmt.Errorf("reading the timeline: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("reading the timeline: %w", err)
	}
	a := args{}
	query := `SELECT event FROM messages WHERE customer_id = ` + a.add(text(customerID))
	if len(ids) > 1 {
		a = args{}
		query = `SELECT event FROM messages WHERE customer_id = ANY(` + a.add(ids) + `)`
	}
	if after != nil {
		at, id := a.add(time.UnixMilli(after.At)), a.add(text(after.ID))
		query += ` AND (occurred_at > ` + at + ` OR (occurred_at = ` + at + ` AND message_id > ` + id + `))`
	}
	rows, err = s.pool.Query(ctx, query+` ORDER BY occurred_at, message_id LIMIT `+a.add(limit), a...)
	if err != nil {
		return nil, fmt.Errorf("reading the timeline: %w", err)
	}
	out, err := scanJSON[events.MessageEvent](rows)
	if err != nil {
		return nil, fmt.Errorf("reading the timeline: %w", err)
	}
	return out, nil
}

const conflictColumns = `id, customer_id, field, current_json, candidate_json, candidate_event_id, candidate_channel,
	candidate_source, detected_at, status, resolved_by, resolved_at`

// Conflicts returns a page of the conflicts with status (all when empty).
func (s *Store) Conflicts(ctx context.Context, status events.ConflictStatus, after *store.Cursor, limit int) ([]store.Conflict, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	var a args
	// A customer merged into another shows its conflicts on the survivor.
	where := []string{"NOT EXISTS (SELECT 1 FROM customers m WHERE m.customer_id = k.customer_id AND m.merged_into IS NOT NULL)"}
	if status != "" {
		where = append(where, "status = "+a.add(string(status)))
	}
	if after != nil {
		at, id := a.add(time.UnixMilli(after.At)), a.add(text(after.ID))
		where = append(where, `(detected_at > `+at+` OR (detected_at = `+at+` AND id > `+id+`))`)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+conflictColumns+` FROM conflicts k WHERE `+strings.Join(where, " AND ")+`
		ORDER BY detected_at, id LIMIT `+a.add(limit), a...)
	if err != nil {
		return nil, fmt.Errorf("reading conflicts: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanConflict)
	if err != nil {
		return nil, fmt.Errorf("reading conflicts: %w", err)
	}
	return out, nil
}

// Conflict returns one conflict.
func (s *Store) Conflict(ctx context.Context, id string) (store.Conflict, bool, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+conflictColumns+` FROM conflicts k WHERE id = $1
		ORDER BY EXISTS (SELECT 1 FROM customers m WHERE m.customer_id = k.customer_id AND m.merged_into IS NOT NULL), customer_id
		LIMIT 1`, text(id))
	if err != nil {
		return store.Conflict{}, false, fmt.Errorf("reading conflict %s: %w", id, err)
	}
	c, err := pgx.CollectOneRow(rows, scanConflict)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Conflict{}, false, nil
	}
	if err != nil {
		return store.Conflict{}, false, fmt.Errorf("reading conflict %s: %w", id, err)
	}
	return c, true, nil
}

func scanConflict(row pgx.CollectableRow) (store.Conflict, error) {
	var c store.Conflict
	var channel, status string
	var resolved *time.Time
	if err := row.Scan(&c.ID, &c.CustomerID, &c.Field, &c.Current, &c.Candidate, &c.CandidateEventID, &channel,
		&c.CandidateSource, &c.DetectedAt, &status, &c.ResolvedBy, &resolved); err != nil {
		return c, err
	}
	c.CandidateChannel, c.Status = events.Channel(channel), events.ConflictStatus(status)
	c.DetectedAt = c.DetectedAt.UTC()
	if resolved != nil {
		c.ResolvedAt = resolved.UTC()
	}
	return c, nil
}
