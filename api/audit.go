package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/schemas"
)

// Recorder puts decisions on record: the audit event and, in the same
// produce, the customer events it decided (a RESOLVE); nil once Kafka
// acknowledged every record.
type Recorder interface {
	Record(ctx context.Context, audit *events.AuditEvent, with ...*events.CustomerEvent) error
}

// Record implements Recorder: the audit event goes to the audit topic
// (p.AuditTopic, default schemas.AuditTopic), the others as Publish sends
// them, all handed to the client at once.
func (p KafkaPublisher) Record(ctx context.Context, audit *events.AuditEvent, with ...*events.CustomerEvent) error {
	topic := p.AuditTopic
	if topic == "" {
		topic = schemas.AuditTopic
	}
	value, err := p.Serde.Encode(audit)
	if err != nil {
		return fmt.Errorf("encoding audit event %s: %w", audit.EventID, err)
	}
	recs := []*kgo.Record{{Topic: topic, Key: []byte(audit.Actor), Value: value}}
	for _, ev := range with {
		evRecs, err := p.records(ev)
		if err != nil {
			return err
		}
		recs = append(recs, evRecs...)
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout())
	defer cancel()
	return kafka.ProduceAndWait(ctx, p.Client, recs...)
}

// AuditFilter selects audit events; empty fields match all.
type AuditFilter struct {
	Actor, Customer, Action string
	Since                   time.Time
}

// AuditReader answers GET /api/v1/audit: events matching f, newest
// first, the page after the event with ID after ("" for the first).
type AuditReader interface {
	Audit(ctx context.Context, f AuditFilter, after string, limit int) ([]events.AuditEvent, error)
}

// AuditLog is the audit trail built from the audit topic: it reads the
// topic from its start and keeps following it, so every API replica
// holds the whole trail and a rebuilt store changes nothing of it.
// Decisions are made by people, so the trail stays small enough to hold
// in memory (about 300 bytes an event).
type AuditLog struct {
	cl    *kgo.Client
	serde *codec.Serde
	log   *zap.Logger

	mu     sync.RWMutex
	events []events.AuditEvent // in log order
	byID   map[string]int
}

// NewAuditLog returns an AuditLog of topic (default schemas.AuditTopic);
// call Run to follow it.
func NewAuditLog(cfg kafka.Config, topic string, serde *codec.Serde, log *zap.Logger) (*AuditLog, error) {
	if topic == "" {
		topic = schemas.AuditTopic
	}
	cl, err := kafka.NewClient(cfg, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, err
	}
	return &AuditLog{cl: cl, serde: serde, log: log, byID: map[string]int{}}, nil
}

// Run follows the topic until ctx ends, then closes the client.
func (l *AuditLog) Run(ctx context.Context) error {
	defer l.cl.Close()
	for {
		fs := l.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(_ string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				l.log.Warn("audit log fetch", zap.Int32("partition", p), zap.Error(err))
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			var ev events.AuditEvent
			if err := l.serde.Decode(ctx, r.Value, &ev); err != nil {
				l.log.Warn("audit log: undecodable record skipped", zap.Int64("offset", r.Offset), zap.Error(err))
				return
			}
			l.add(ev)
		})
	}
}

func (l *AuditLog) add(ev events.AuditEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, dup := l.byID[ev.EventID]; dup {
		return // a producer retry
	}
	l.byID[ev.EventID] = len(l.events)
	l.events = append(l.events, ev)
}

// Audit implements AuditReader.
func (l *AuditLog) Audit(_ context.Context, f AuditFilter, after string, limit int) ([]events.AuditEvent, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	i := len(l.events) - 1
	if after != "" {
		at, ok := l.byID[after]
		if !ok {
			return nil, errBadCursor
		}
		i = at - 1
	}
	var out []events.AuditEvent
	for ; i >= 0 && len(out) < limit; i-- {
		ev := l.events[i]
		if (f.Actor == "" || ev.Actor == f.Actor) && (f.Customer == "" || ev.CustomerID == f.Customer) &&
			(f.Action == "" || ev.Action == f.Action) && !ev.OccurredAt.Before(f.Since) {
			out = append(out, ev)
		}
	}
	return out, nil
}

// AuditEntry is an entry of GET /api/v1/audit.
type AuditEntry struct {
	ID         string            `json:"id"`
	At         time.Time         `json:"at"`
	Actor      string            `json:"actor"`
	ActorRole  string            `json:"actor_role"`
	Action     string            `json:"action"`
	CustomerID *string           `json:"customer_id"`
	Target     string            `json:"target"`
	Details    map[string]string `json:"details"`
	Source     string            `json:"source"`
}

func (s *server) audit(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Audit == nil {
		writeError(w, http.StatusNotFound, "not_found", "this server keeps no audit trail")
		return
	}
	after, limit, err := page(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	q := r.URL.Query()
	f := AuditFilter{Actor: q.Get("actor"), Customer: q.Get("customer"), Action: q.Get("action")}
	if v := q.Get("since"); v != "" {
		if f.Since, err = time.Parse(time.RFC3339Nano, v); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", "since: want an RFC 3339 time such as 2026-12-08T02:00:00Z, got "+v)
			return
		}
	}
	var afterID string
	if after != nil {
		afterID = after.ID
	}
	list, err := s.cfg.Audit.Audit(r.Context(), f, afterID, limit)
	if errors.Is(err, errBadCursor) {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if err != nil {
		s.storeFailed(w, err)
		return
	}
	writeJSON(w, http.StatusOK, pageOf(list, limit, auditEntryOf, func(ev events.AuditEvent) store.Cursor {
		return store.Cursor{At: ev.OccurredAt.UnixMilli(), ID: ev.EventID}
	}))
}

func auditEntryOf(ev events.AuditEvent) AuditEntry {
	details := ev.Details
	if details == nil {
		details = map[string]string{}
	}
	return AuditEntry{ID: ev.EventID, At: ms(ev.OccurredAt), Actor: ev.Actor, ActorRole: ev.ActorRole, Action: ev.Action,
		CustomerID: optString(ev.CustomerID), Target: ev.Target, Details: details, Source: ev.Source}
}
