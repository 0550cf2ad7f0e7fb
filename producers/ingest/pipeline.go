package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/deadletter"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/httpauth"
	"github.com/omnisync/omnisync/pkg/identity"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/pkg/normalize"
	"github.com/omnisync/omnisync/pkg/redact"
	"github.com/omnisync/omnisync/schemas"
)

// Config configures a Pipeline.
type Config struct {
	Client    *kgo.Client  // produces; use kafka.NewClient for idempotent acks=all
	Serde     *codec.Serde // encodes
	Directory *Directory   // resolves customer IDs; Run it before serving
	// Policy says which identities shown by two customers merge them
	// (merge_identities); default merge.DefaultPolicy.
	Policy  *merge.Policy
	Logger  *zap.Logger
	Metrics *Metrics // optional

	// Instance names this producer in each event's source
	// (producer/<channel>@<instance>); default the host name.
	Instance string
	// MaxBodyBytes is the largest request body accepted; default 1 MiB.
	MaxBodyBytes int64
	// ProduceTimeout bounds the wait for Kafka's acknowledgement before the
	// caller gets 503; default 10 s.
	ProduceTimeout time.Duration
	// Now is the clock for ingested_at; default time.Now.
	Now func() time.Time
}

// Pipeline runs channels' requests into Kafka. It is safe for concurrent use.
type Pipeline struct {
	cfg    Config
	recent *lru.Cache[string, struct{}] // event IDs Kafka acknowledged lately
}

// New returns a pipeline.
func New(cfg Config) *Pipeline {
	if cfg.Instance == "" {
		cfg.Instance, _ = os.Hostname()
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.ProduceTimeout <= 0 {
		cfg.ProduceTimeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Policy == nil {
		cfg.Policy = merge.DefaultPolicy()
	}
	recent, _ := lru.New[string, struct{}](100_000)
	return &Pipeline{cfg: cfg, recent: recent}
}

// Handler serves one channel's endpoint.
func (p *Pipeline) Handler(ch Channel) http.Handler {
	name := strings.ToLower(string(ch.Channel()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		p.serve(ch, name, sw, r)
		if m := p.cfg.Metrics; m != nil {
			m.requests.WithLabelValues(name, strconv.Itoa(sw.code)).Inc()
		}
	})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (p *Pipeline) reject(name, reason string) {
	if m := p.cfg.Metrics; m != nil {
		m.rejections.WithLabelValues(name, reason).Inc()
	}
}

func (p *Pipeline) serve(ch Channel, name string, w http.ResponseWriter, r *http.Request) {
	log := p.cfg.Logger.With(zap.String("channel", name))
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "", r.Method+" is not allowed", "")
		return
	}
	if err := ch.Authenticate(r); err != nil {
		p.reject(name, "unauthorized")
		log.Info("request refused", zap.Error(err))
		writeError(w, http.StatusUnauthorized, "unauthorized", "", err.Error(), "")
		return
	}
	if r.Method == http.MethodGet {
		if h, ok := ch.(Handshaker); ok {
			h.Handshake(w, r)
			return
		}
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "", "GET is not allowed", "")
		return
	}
	select {
	case <-p.cfg.Directory.Ready():
	default:
		p.reject(name, "unavailable")
		unavailable(w, "the identity directory is still loading")
		return
	}

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, p.cfg.MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			p.reject(name, "too_large")
			size := "more than " + strconv.FormatInt(p.cfg.MaxBodyBytes, 10)
			if r.ContentLength > p.cfg.MaxBodyBytes {
				size = strconv.FormatInt(r.ContentLength, 10)
			}
			reason := fmt.Sprintf("body of %s bytes, at most %d allowed; the dead letter keeps its first %d bytes and its size", size, p.cfg.MaxBodyBytes, deadletter.MaxPayload)
			p.deadLetter(w, r, name, body, &normalize.ValidationError{Reason: reason}, http.StatusRequestEntityTooLarge)
			return
		}
		writeError(w, http.StatusBadRequest, "bad_request", "", "reading body: "+err.Error(), "")
		return
	}
	batch, err := ch.Parse(r, body)
	if errors.Is(err, httpauth.ErrUnauthorized) { // a credential only the body shows (a replayed nonce, an encrypted push's signature)
		p.reject(name, "unauthorized")
		log.Info("request refused", zap.Error(err))
		writeError(w, http.StatusUnauthorized, "unauthorized", "", err.Error(), "")
		return
	}
	var invalid *normalize.ValidationError
	if err == nil {
		invalid = p.Complete(ch.Channel(), batch)
	} else if !errors.As(err, &invalid) {
		invalid = &normalize.ValidationError{Reason: err.Error()}
	}
	if invalid != nil {
		p.reject(name, "invalid")
		log.Info("invalid input", zap.String("field", invalid.Field), zap.String("reason", invalid.Reason))
		p.deadLetter(w, r, name, body, invalid, http.StatusBadRequest)
		return
	}
	if p.seen(batch) {
		log.Debug("re-delivery of events already in Kafka answered without producing", zap.Int("events", batch.Len()))
		p.respond(ch, w, r, batch)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), p.cfg.ProduceTimeout)
	defer cancel()
	start := p.cfg.Now()
	if err := p.Produce(ctx, ch.Channel(), batch); err != nil {
		if errors.As(err, &invalid) {
			p.reject(name, "invalid")
			p.deadLetter(w, r, name, body, invalid, http.StatusBadRequest)
			return
		}
		p.reject(name, "unavailable")
		log.Warn("Kafka did not take the events", zap.Int("events", batch.Len()), zap.Error(err))
		unavailable(w, "Kafka did not acknowledge the events; retry")
		return
	}
	if m := p.cfg.Metrics; m != nil {
		m.produce.WithLabelValues(name).Observe(p.cfg.Now().Sub(start).Seconds())
		m.events.WithLabelValues(name, "customer").Add(float64(len(batch.Customers)))
		m.events.WithLabelValues(name, "message").Add(float64(len(batch.Messages)))
	}
	p.respond(ch, w, r, batch)
}

// Complete fills in what the pipeline owns of a parsed batch from channel
// ch (channel, source, ingestion time, event IDs) and checks that every
// event can be given a customer. Handler runs it on every request; a
// producer that does not serve HTTP (omnisync import) runs it on each
// record it parsed, then Produce.
func (p *Pipeline) Complete(ch events.Channel, b *Batch) *normalize.ValidationError {
	now := p.cfg.Now().UTC().Truncate(time.Millisecond)
	source := p.source(ch)
	for i, ev := range b.Customers {
		if ev.CustomerID == "" && !anchored(ev.Identities) {
			return normalize.Invalid(fmt.Sprintf("customer_events[%d]", i), "names no customer and carries no verified or session identity")
		}
		if bad := reserved(fmt.Sprintf("customer_events[%d]", i), ev.Identities); bad != nil {
			return bad
		}
		if ev.Op != "" && ev.Op != events.OpUpsert && ev.Op != events.OpDelete {
			return normalize.Invalid(fmt.Sprintf("customer_events[%d].op", i), "%s: channels send UPSERT or DELETE only", ev.Op)
		}
		ev.Channel, ev.Source, ev.IngestedAt = orChannel(ev.Channel, ch), p.withInstance(orString(ev.Source, source)), now
		if ev.OccurredAt.IsZero() {
			ev.OccurredAt = now
		}
		if ev.Op == "" {
			ev.Op = events.OpUpsert
		}
		ev.EventID = EventID(ev.Channel, SenderKey(ev.CustomerID, ev.Identities), deref(ev.SourceEventID), ev.OccurredAt)
	}
	for i, m := range b.Messages {
		if m.CustomerID == "" && !anchored(m.Identities) {
			return normalize.Invalid(fmt.Sprintf("messages[%d]", i), "names no customer and carries no verified or session identity")
		}
		if bad := reserved(fmt.Sprintf("messages[%d]", i), m.Identities); bad != nil {
			return bad
		}
		m.Channel, m.Source, m.IngestedAt = orChannel(m.Channel, ch), orString(m.Source, source), now
		if m.OccurredAt.IsZero() {
			m.OccurredAt = now
		}
		m.MessageID = EventID(m.Channel, SenderKey(m.CustomerID, m.Identities), deref(m.SourceMessageID), m.OccurredAt)
	}
	return nil
}

// Produce resolves the customer IDs of a completed batch from channel ch,
// encodes its events and the identity links they make, and returns once
// Kafka acknowledged every record, or ctx ended (see kafka.ProduceAndWait:
// the records themselves are never cancelled). An event that does not
// encode is a *normalize.ValidationError.
func (p *Pipeline) Produce(ctx context.Context, ch events.Channel, b *Batch) error {
	records, links, err := p.records(ch, b)
	if err != nil {
		return &normalize.ValidationError{Reason: "encoding events: " + err.Error()}
	}
	if err := p.produce(ctx, records); err != nil {
		return err
	}
	for _, l := range links {
		p.cfg.Directory.remember(l.Identity, l.CustomerID)
	}
	p.remember(b)
	return nil
}

// records resolves customer IDs and encodes the batch and the identity links
// it creates into Kafka records keyed by customer ID.
func (p *Pipeline) records(ch events.Channel, b *Batch) ([]*kgo.Record, []*events.IdentityLink, error) {
	var recs []*kgo.Record
	var links []*events.IdentityLink
	pending := map[string]string{} // links and redirects made by this request
	suggested := map[string]bool{} // merge suggestions made by this request
	link := func(l *events.IdentityLink) {
		pending[IdentityKey(l.Identity)] = l.CustomerID
		links = append(links, l)
	}
	add := func(topic, key string, v any) error {
		value, err := p.cfg.Serde.Encode(v)
		if err != nil {
			return err
		}
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(key), Value: value})
		return nil
	}
	resolve := func(explicit string, t trigger, ids []events.Identity) (string, error) {
		t.explicit = explicit != ""
		res := p.cfg.Directory.Resolve(explicit, ids, pending)
		customerID, stitched := p.stitch(res, t)
		for _, ev := range stitched {
			if ev.Op == events.OpSuggestMerge {
				pair := ev.Merge.SurvivorID + ">" + ev.Merge.AbsorbedID
				if suggested[pair] {
					continue // one suggestion per pair and request
				}
				suggested[pair] = true
			}
			if l, ok := identity.Redirect(ev, p.source(ch), p.cfg.Now()); ok {
				link(l)
			}
			if err := add(schemas.CustomerEventsTopic, ev.CustomerID, ev); err != nil {
				return "", err
			}
			p.cfg.Logger.Info("customers stitched", zap.String("op", string(ev.Op)), zap.String("survivor_id", ev.Merge.SurvivorID),
				zap.String("absorbed_id", ev.Merge.AbsorbedID), zap.String("decided_by", ev.Merge.DecidedBy), zap.String("trigger", t.id))
		}
		for _, id := range res.Unlinked {
			link(&events.IdentityLink{Identity: id, CustomerID: customerID, Channel: ch,
				Source: p.source(ch), EventID: t.id, LinkedAt: p.cfg.Now().UTC()})
		}
		return customerID, nil
	}
	var err error
	for _, ev := range b.Customers {
		if ev.CustomerID, err = resolve(ev.CustomerID, trigger{id: ev.EventID, channel: ev.Channel, occurred: ev.OccurredAt}, ev.Identities); err != nil {
			return nil, nil, err
		}
		if err := add(schemas.CustomerEventsTopic, ev.CustomerID, ev); err != nil {
			return nil, nil, err
		}
	}
	for _, m := range b.Messages {
		if m.CustomerID, err = resolve(m.CustomerID, trigger{id: m.MessageID, channel: m.Channel, occurred: m.OccurredAt}, m.Identities); err != nil {
			return nil, nil, err
		}
		if err := add(schemas.CustomerMessagesTopic, m.CustomerID, m); err != nil {
			return nil, nil, err
		}
	}
	for _, l := range links {
		if err := add(schemas.IdentitiesTopic, IdentityKey(l.Identity), l); err != nil {
			return nil, nil, err
		}
		p.cfg.Logger.Debug("identity linked", zap.String("kind", l.Identity.Kind),
			zap.String("value", redact.Identity(l.Identity.Kind, l.Identity.Value)), zap.String("customer_id", l.CustomerID))
	}
	return recs, links, nil
}

// produce waits until Kafka acknowledged every record, or until ctx ends
// (see kafka.ProduceAndWait: the records themselves are never cancelled).
func (p *Pipeline) produce(ctx context.Context, records []*kgo.Record) error {
	return kafka.ProduceAndWait(ctx, p.cfg.Client, records...)
}

// seen reports whether Kafka already acknowledged every event of the batch
// to this instance (a re-sent delivery).
func (p *Pipeline) seen(b *Batch) bool {
	if b.Len() == 0 {
		return false
	}
	for _, ev := range b.Customers {
		if ev.SourceEventID == nil || !p.recent.Contains(ev.EventID) {
			return false
		}
	}
	for _, m := range b.Messages {
		if m.SourceMessageID == nil || !p.recent.Contains(m.MessageID) {
			return false
		}
	}
	return true
}

func (p *Pipeline) remember(b *Batch) {
	for _, ev := range b.Customers {
		p.recent.Add(ev.EventID, struct{}{})
	}
	for _, m := range b.Messages {
		p.recent.Add(m.MessageID, struct{}{})
	}
}

func (p *Pipeline) respond(ch Channel, w http.ResponseWriter, r *http.Request, b *Batch) {
	if rs, ok := ch.(Responder); ok {
		rs.Respond(w, r, b)
		return
	}
	resp := Accepted{CustomerEvents: []string{}, Messages: []string{}}
	for _, ev := range b.Customers {
		resp.CustomerEvents = append(resp.CustomerEvents, ev.EventID)
	}
	for _, m := range b.Messages {
		resp.Messages = append(resp.Messages, m.MessageID)
	}
	resp.Accepted = b.Len()
	writeJSON(w, http.StatusOK, resp)
}

// Accepted is the JSON answer to an accepted request.
type Accepted struct {
	Accepted       int      `json:"accepted"`
	CustomerEvents []string `json:"customer_events"`
	Messages       []string `json:"messages"`
}

// Error is the JSON answer to a refused request.
type Error struct {
	Error        string `json:"error"`
	Field        string `json:"field,omitempty"`
	Reason       string `json:"reason"`
	DeadLetterID string `json:"dead_letter_id,omitempty"`
}

// keptHeaders are the request headers a dead letter keeps; never
// credentials.
var keptHeaders = []string{"Content-Type", "User-Agent", "X-Request-Id", "X-Forwarded-For"}

// deadLetter writes the raw input (its first deadletter.MaxPayload bytes
// and its size, for a larger one) and the reason to the dead-letter topic,
// then answers code; if Kafka does not take the dead letter, the caller
// gets 503 so the input is not lost. A dead letter always fits in a Kafka
// record, so the 503 means Kafka is out of reach. For 413, body is what was
// read before the limit; the size kept is the request's Content-Length,
// or the limit + 1 (a lower bound) without one: the rest is never read.
func (p *Pipeline) deadLetter(w http.ResponseWriter, r *http.Request, name string, body []byte, why *normalize.ValidationError, code int) {
	headers := map[string]string{"method": r.Method, "path": r.URL.Path}
	if q := r.URL.RawQuery; q != "" {
		headers["query"] = q
	}
	for _, h := range keptHeaders {
		if v := r.Header.Get(h); v != "" {
			headers[h] = v
		}
	}
	size := int64(len(body))
	if code == http.StatusRequestEntityTooLarge {
		size = max(r.ContentLength, p.cfg.MaxBodyBytes+1)
	}
	in := events.DeadLetter{
		Stage: "ingest", Component: "producer/" + name, Reason: why.Reason, ContentType: r.Header.Get("Content-Type"),
		Payload: body, PayloadSize: size, Headers: headers, FailedAt: p.cfg.Now(),
	}
	if why.Field != "" {
		in.Field = &why.Field
	}
	rec, dl, err := deadletter.Record(p.cfg.Serde, schemas.DeadLetterTopic, []byte(name), in)
	if err == nil {
		ctx, cancel := context.WithTimeout(r.Context(), p.cfg.ProduceTimeout)
		defer cancel()
		err = p.produce(ctx, []*kgo.Record{rec})
	}
	if err != nil {
		p.cfg.Logger.Warn("dead letter not written", zap.String("channel", name), zap.Error(err))
		unavailable(w, "the input was invalid ("+deadletter.Text(why.Error())+") but could not be kept in the dead-letter topic; retry")
		return
	}
	kind := "invalid_input"
	if code == http.StatusRequestEntityTooLarge {
		kind = "too_large"
	}
	var field string
	if dl.Field != nil {
		field = *dl.Field
	}
	writeError(w, code, kind, field, dl.Reason, dl.ID)
}

// DeadLetters writes input rejected outside HTTP (an import's rejected
// rows) to the dead-letter topic, keyed by key, and returns the dead
// letters as written (bounded, with their IDs) once Kafka acknowledged
// every one.
func (p *Pipeline) DeadLetters(ctx context.Context, key string, in []events.DeadLetter) ([]*events.DeadLetter, error) {
	recs := make([]*kgo.Record, 0, len(in))
	out := make([]*events.DeadLetter, 0, len(in))
	for _, d := range in {
		if d.FailedAt.IsZero() {
			d.FailedAt = p.cfg.Now()
		}
		rec, dl, err := deadletter.Record(p.cfg.Serde, schemas.DeadLetterTopic, []byte(key), d)
		if err != nil {
			return nil, err
		}
		recs, out = append(recs, rec), append(out, dl)
	}
	if err := p.produce(ctx, recs); err != nil {
		return nil, err
	}
	return out, nil
}

func unavailable(w http.ResponseWriter, reason string) {
	w.Header().Set("Retry-After", "5")
	writeError(w, http.StatusServiceUnavailable, "unavailable", "", reason, "")
}

func writeError(w http.ResponseWriter, code int, kind, field, reason, deadLetterID string) {
	writeJSON(w, code, Error{Error: kind, Field: field, Reason: reason, DeadLetterID: deadLetterID})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (p *Pipeline) source(ch events.Channel) string {
	return "producer/" + strings.ToLower(string(ch)) + "@" + p.cfg.Instance
}

// SystemSource is the source of the events a back-office system sends
// (channel/system, e.g. producer/crm/main): Complete adds the instance.
// The forwarder recognises a system's own changes by it (loop prevention
// in two-way sync).
func SystemSource(ch events.Channel, system string) string {
	return "producer/" + strings.ToLower(string(ch)) + "/" + system
}

// withInstance adds the instance to a source a producer named without one.
func (p *Pipeline) withInstance(source string) string {
	if strings.HasPrefix(source, "producer/") && !strings.Contains(source, "@") {
		return source + "@" + p.cfg.Instance
	}
	return source
}

// anchored reports whether an event without a customer ID can be given one
// (see Directory.Resolve): it carries a verified or a session identity.
func anchored(ids []events.Identity) bool {
	for _, id := range ids {
		if id.Verified || sessionKinds[id.Kind] {
			return true
		}
	}
	return false
}

// reserved refuses identities of the directory's own redirect kind: only
// merge requests make redirects.
func reserved(field string, ids []events.Identity) *normalize.ValidationError {
	for j, id := range ids {
		if id.Kind == identity.RedirectKind {
			return normalize.Invalid(fmt.Sprintf("%s.identities[%d].kind", field, j), "%q is reserved for merged customers", id.Kind)
		}
	}
	return nil
}

func orChannel(c, ch events.Channel) events.Channel {
	if c == "" || c == events.ChannelUnknown {
		return ch
	}
	return c
}

func orString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
