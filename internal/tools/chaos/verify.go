package main

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/omnisync/omnisync/schemas"
)

// consumedTopics are the topics the materializer folds.
var consumedTopics = []string{schemas.CustomerEventsTopic, schemas.CustomerMessagesTopic}

type offsets map[string]map[int32]int64

// endOffsets returns where the consumed topics end now, asking again while
// the cluster cannot answer for every partition.
func endOffsets(ctx context.Context, adm *kadm.Client, timeout time.Duration) (offsets, error) {
	deadline := time.Now().Add(timeout)
	for {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ends, err := adm.ListEndOffsets(qctx, consumedTopics...)
		cancel()
		if err == nil {
			err = ends.Error()
		}
		if err == nil {
			out := offsets{}
			ends.Each(func(o kadm.ListedOffset) {
				if out[o.Topic] == nil {
					out[o.Topic] = map[int32]int64{}
				}
				out[o.Topic][o.Partition] = o.Offset
			})
			return out, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("listing end offsets: %w", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// storeOffsets returns the group's next offsets as the store holds them
// (the materializer commits them with each batch).
func storeOffsets(ctx context.Context, pool *pgxpool.Pool, group string) (offsets, error) {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rows, err := pool.Query(qctx, `SELECT topic, partition, next_offset FROM consumer_offsets WHERE group_id = $1`, group)
	if err != nil {
		return nil, err
	}
	out := offsets{}
	var topic string
	var p int32
	var next int64
	_, err = pgx.ForEachRow(rows, []any{&topic, &p, &next}, func() error {
		if out[topic] == nil {
			out[topic] = map[int32]int64{}
		}
		out[topic][p] = next
		return nil
	})
	return out, err
}

// behind returns how many records the store's offsets lack to reach ends.
func behind(ends, have offsets) int64 {
	var n int64
	for t, ps := range ends {
		for p, end := range ps {
			if d := end - have[t][p]; d > 0 {
				n += d
			}
		}
	}
	return n
}

// waitDrained waits until the group's offsets in the store reach ends and
// returns how long that took; past timeout it fails with the lag left.
func waitDrained(ctx context.Context, pool *pgxpool.Pool, group string, ends offsets, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	var lag int64 = -1
	var lastErr error
	for {
		have, err := storeOffsets(ctx, pool, group)
		if err == nil {
			if lag = behind(ends, have); lag == 0 {
				return time.Since(start), nil
			}
		} else {
			lastErr = err
		}
		if time.Since(start) > timeout {
			return time.Since(start), fmt.Errorf("group %s still %d records behind after %s (last store error: %v)", group, lag, timeout, lastErr)
		}
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// groupOwnership describes the group: whether it is stable, its members,
// and how many partitions are assigned.
func groupOwnership(ctx context.Context, adm *kadm.Client, group string) (stable bool, members []string, assigned int, coordinator int32, err error) {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	groups, err := adm.DescribeGroups(qctx, group)
	if err != nil {
		return false, nil, 0, -1, err
	}
	g, ok := groups[group]
	if !ok {
		return false, nil, 0, -1, fmt.Errorf("group %s not described", group)
	}
	if g.Err != nil {
		return false, nil, 0, -1, g.Err
	}
	for _, m := range g.Members {
		members = append(members, m.MemberID)
	}
	for _, ps := range g.AssignedPartitions() {
		assigned += len(ps)
	}
	return g.State == "Stable", members, assigned, g.Coordinator.NodeID, nil
}

// waitOwned waits until the group is stable with want members, at least one
// of them not in old (the restarted member), and every one of partitions
// assigned; it returns how long that took.
func waitOwned(ctx context.Context, adm *kadm.Client, group string, want int, old []string, partitions int, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		stable, members, assigned, _, err := groupOwnership(ctx, adm, group)
		if err == nil && stable && len(members) == want && assigned == partitions {
			fresh := false
			for _, m := range members {
				fresh = fresh || !slices.Contains(old, m)
			}
			if fresh {
				return time.Since(start), nil
			}
		}
		if time.Since(start) > timeout {
			return time.Since(start), fmt.Errorf("partitions not all owned by %d live members after %s", want, timeout)
		}
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// storedMessage is what the store holds for an acknowledged message ID.
type storedMessage struct{ text string }

// lookupMessages returns the stored texts of the given message IDs.
func lookupMessages(ctx context.Context, pool *pgxpool.Pool, ids []string) (map[string]storedMessage, error) {
	out := make(map[string]storedMessage, len(ids))
	for i := 0; i < len(ids); i += 5000 {
		chunk := ids[i:min(i+5000, len(ids))]
		qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		rows, err := pool.Query(qctx, `SELECT message_id, coalesce(text, '') FROM messages WHERE message_id = ANY($1)`, chunk)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("looking up messages: %w", err)
		}
		var id, text string
		_, err = pgx.ForEachRow(rows, []any{&id, &text}, func() error {
			out[id] = storedMessage{text: text}
			return nil
		})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("looking up messages: %w", err)
		}
	}
	return out, nil
}

// tokenPattern finds the load's unique token in a stored text.
const tokenPattern = `tok-[wp]-[a-z0-9]+-[0-9-]+`

// doubled is one input stored under more than one message ID.
type doubled struct {
	Token string   `json:"token"`
	IDs   []string `json:"message_ids"`
}

// findDoubles returns every token stored in more than one message.
func findDoubles(ctx context.Context, pool *pgxpool.Pool) ([]doubled, error) {
	qctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	rows, err := pool.Query(qctx, `SELECT tok, array_agg(message_id ORDER BY message_id) FROM (
			SELECT substring(text FROM '`+tokenPattern+`') AS tok, message_id FROM messages) s
		WHERE tok IS NOT NULL GROUP BY tok HAVING count(*) > 1 ORDER BY tok`)
	if err != nil {
		return nil, fmt.Errorf("looking for doubled messages: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (doubled, error) {
		var d doubled
		return d, r.Scan(&d.Token, &d.IDs)
	})
	if err != nil {
		return nil, fmt.Errorf("looking for doubled messages: %w", err)
	}
	return out, nil
}

// lostMessage is an acknowledged message the store does not hold (or holds
// with another text).
type lostMessage struct {
	Channel   string    `json:"channel"`
	Request   int       `json:"request"`
	Token     string    `json:"token"`
	MessageID string    `json:"message_id"`
	FirstSent time.Time `json:"first_sent"`
	AckedAt   time.Time `json:"acked_at"`
	Attempts  int       `json:"attempts"`
	Problem   string    `json:"problem"` // missing, or what differs
}

// checkAcked looks up every message of the acknowledged requests in the
// store and returns those missing or stored with another text.
func checkAcked(ctx context.Context, pool *pgxpool.Pool, reqs []request) (acked int, lost []lostMessage, err error) {
	var ids []string
	for _, r := range reqs {
		ids = append(ids, r.IDs...)
	}
	stored, err := lookupMessages(ctx, pool, ids)
	if err != nil {
		return 0, nil, err
	}
	for _, r := range reqs {
		lm := func(i int, id, problem string) lostMessage {
			tok := ""
			if i < len(r.Tokens) {
				tok = r.Tokens[i]
			}
			return lostMessage{Channel: r.Channel, Request: r.N, Token: tok, MessageID: id, FirstSent: r.Attempts[0].Sent,
				AckedAt: r.AckedAt, Attempts: len(r.Attempts), Problem: problem}
		}
		if len(r.IDs) != len(r.Tokens) {
			lost = append(lost, lm(0, strings.Join(r.IDs, ","), fmt.Sprintf("the 2xx listed %d message IDs for %d messages", len(r.IDs), len(r.Tokens))))
			continue
		}
		for i, id := range r.IDs {
			acked++
			s, ok := stored[id]
			switch {
			case !ok:
				lost = append(lost, lm(i, id, "missing"))
			case !strings.Contains(s.text, r.Tokens[i]):
				lost = append(lost, lm(i, id, "stored with another text: "+s.text))
			}
		}
	}
	sort.Slice(lost, func(i, j int) bool { return lost[i].AckedAt.Before(lost[j].AckedAt) })
	return acked, lost, nil
}
