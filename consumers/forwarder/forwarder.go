// Package forwarder runs a consumer group on the compacted state topic that
// delivers every changed customer record to a target system over HTTP: a
// POST of the record as JSON (see Body) to one URL.
//
// Delivery is at least once. Offsets are committed to Kafka only after the
// target acknowledged every record before them with a 2xx, so a crash or a
// rebalance re-sends records, never skips them; the record's version (also
// in the Idempotency-Key header, customer_id:version) lets the target drop
// what it already has. Network errors, 5xx, 408 and 429 are retried with
// the project's policy (package retry: exponential backoff capped at 2 s,
// full jitter), waiting at least a Retry-After the target sends (up to 5
// minutes), for as long as it takes; any other
// answer (a 4xx: the target will never take this record) sends the record
// to the dead-letter topic with the status and the target's reason, and
// the forwarder moves on. Records that cannot be decoded go there too.
package forwarder

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/deadletter"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/pkg/retry"
	"github.com/omnisync/omnisync/schemas"
)

// Config configures a Forwarder.
type Config struct {
	Kafka kafka.Config
	Group string // the consumer group, one per target system
	Serde *codec.Serde
	// Target is the http(s) URL each record is POSTed to.
	Target string
	// Token, when set, is sent as "Authorization: Bearer <Token>".
	Token string
	// Secret, when set, signs each body: "X-Omnisync-Signature:
	// sha256=<hex HMAC-SHA256 of the body with Secret>".
	Secret string
	// HTTPClient sends the requests; default one with a 30 s timeout.
	HTTPClient *http.Client
	// Topic is the state topic; default schemas.CustomerStateTopic.
	Topic string
	// DeadLetterTopic defaults to schemas.DeadLetterTopic.
	DeadLetterTopic string
	// MaxBatch is the most records polled at once; default 500.
	MaxBatch int
	// SkipSources, for two-way sync, are the back-office systems the
	// target is, as channel/system (crm/main: the sources
	// producer/crm/main@…, see ingest.SystemSource): a record whose last
	// change came from one of them is not sent back to it (see Echo).
	SkipSources []string
	Logger      *zap.Logger
	Metrics     *Metrics // optional
}

// Forwarder is one member of a forwarding consumer group.
type Forwarder struct {
	cfg Config
	cl  *kgo.Client
}

// New returns a member of cfg.Group; Run starts it.
func New(cfg Config) (*Forwarder, error) {
	u, err := url.Parse(cfg.Target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("target %q: want an http:// or https:// URL", cfg.Target)
	}
	if cfg.Group == "" {
		return nil, errors.New("forwarder: no consumer group")
	}
	for _, sys := range cfg.SkipSources {
		if ch, name, ok := strings.Cut(sys, "/"); !ok || ch == "" || name == "" || strings.ContainsAny(name, "/@") {
			return nil, fmt.Errorf("skip source %q: want channel/system, e.g. crm/main", sys)
		}
	}
	if cfg.Serde == nil {
		return nil, errors.New("forwarder: no serde")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Topic == "" {
		cfg.Topic = schemas.CustomerStateTopic
	}
	if cfg.DeadLetterTopic == "" {
		cfg.DeadLetterTopic = schemas.DeadLetterTopic
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 500
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	cl, err := kafka.NewClient(cfg.Kafka, append(kafka.GroupOpts(),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
	)...)
	if err != nil {
		return nil, err
	}
	return &Forwarder{cfg: cfg, cl: cl}, nil
}

// Ping checks that the Kafka cluster answers, for readiness.
func (f *Forwarder) Ping(ctx context.Context) error { return f.cl.Ping(ctx) }

// Run forwards until ctx ends; it returns nil after a clean shutdown.
func (f *Forwarder) Run(ctx context.Context) error {
	defer func() {
		if err := kafka.CloseMember(f.cl); err != nil {
			f.cfg.Logger.Warn("leaving the consumer group", zap.Error(err))
		}
	}()
	for {
		fs := f.cl.PollRecords(ctx, f.cfg.MaxBatch)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(topic string, p int32, err error) {
			f.cfg.Logger.Warn("fetch error", zap.String("topic", topic), zap.Int32("partition", p), zap.Error(err))
		})
		if err := f.process(ctx, fs); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		f.cl.AllowRebalance()
	}
}

// process delivers a polled batch, the partitions concurrently and each
// partition's records in order, and commits the offsets once every record
// is acknowledged by the target or in the dead-letter topic.
func (f *Forwarder) process(ctx context.Context, fs kgo.Fetches) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		done []*kgo.Record
	)
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) == 0 {
			return
		}
		wg.Go(func() {
			for _, rec := range p.Records {
				if err := f.handle(ctx, rec); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
			mu.Lock()
			done = append(done, p.Records[len(p.Records)-1])
			mu.Unlock()
		})
	})
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err // only ctx ends a retry: nothing of this batch is committed
	}
	if len(done) == 0 {
		return nil
	}
	// A failed commit only means a re-send after a restart; the next
	// batch's commit covers these offsets too.
	if err := f.cl.CommitRecords(ctx, done...); err != nil && ctx.Err() == nil {
		f.cfg.Logger.Warn("committing offsets", zap.Error(err))
	}
	return nil
}

// handle delivers one record or dead-letters it; it returns an error only
// when ctx ends.
func (f *Forwarder) handle(ctx context.Context, rec *kgo.Record) error {
	var st events.CustomerState
	err := f.retry(ctx, "decoding a record", func() error {
		err := f.cfg.Serde.Decode(ctx, rec.Value, &st)
		var de *codec.DecodeError
		if errors.As(err, &de) {
			return &permanent{err: err}
		}
		return err
	})
	var p *permanent
	switch {
	case errors.As(err, &p):
		return f.deadLetter(ctx, rec, p)
	case err != nil:
		return err
	}
	if st.CustomerID == "" || st.CustomerID != string(rec.Key) {
		return f.deadLetter(ctx, rec, &permanent{err: fmt.Errorf("record key %q does not match its customer ID %q", rec.Key, st.CustomerID)})
	}
	if Echo(&st, f.cfg.SkipSources) {
		f.cfg.Logger.Debug("not sent back to the system its last change came from", zap.String("customer_id", st.CustomerID), zap.Int64("version", st.Version))
		f.cfg.Metrics.skip()
		return nil
	}
	body, err := NewBody(&st)
	if err != nil {
		return f.deadLetter(ctx, rec, &permanent{err: err})
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return f.deadLetter(ctx, rec, &permanent{err: err})
	}
	start := time.Now()
	err = f.retry(ctx, "delivering "+st.CustomerID+" v"+strconv.FormatInt(st.Version, 10), func() error {
		return f.post(ctx, &st, payload)
	})
	switch {
	case errors.As(err, &p):
		return f.deadLetter(ctx, rec, p)
	case err != nil:
		return err
	}
	f.cfg.Metrics.delivered(time.Since(start))
	return nil
}

// Echo reports whether a record's last change came from one of systems
// (channel/system, e.g. crm/main): every field write with the newest
// occurred_at has the source producer/<channel>/<system>@…. Sending such
// a record to that system would echo its own change back to it, and, if
// it answered with a change of its own, loop. A record without fields (a
// delete) is never an echo.
func Echo(st *events.CustomerState, systems []string) bool {
	if len(systems) == 0 {
		return false
	}
	var newest time.Time
	for _, r := range st.Fields {
		if r.OccurredAt.After(newest) {
			newest = r.OccurredAt
		}
	}
	found := false
	for _, r := range st.Fields {
		if !r.OccurredAt.Equal(newest) {
			continue
		}
		system, _, _ := strings.Cut(strings.TrimPrefix(r.Source, "producer/"), "@")
		if !strings.HasPrefix(r.Source, "producer/") || !slices.Contains(systems, system) {
			return false
		}
		found = true
	}
	return found
}

// post sends one record. It returns nil on a 2xx, a *permanent error when
// the target refuses the record for good, and a *retryable error otherwise.
func (f *Forwarder) post(ctx context.Context, st *events.CustomerState, payload []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.cfg.Target, bytes.NewReader(payload))
	if err != nil {
		return &permanent{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "omnisync-forwarder")
	req.Header.Set("Idempotency-Key", st.CustomerID+":"+strconv.FormatInt(st.Version, 10))
	if f.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+f.cfg.Token)
	}
	if f.cfg.Secret != "" {
		mac := hmac.New(sha256.New, []byte(f.cfg.Secret))
		mac.Write(payload)
		req.Header.Set("X-Omnisync-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	}
	resp, err := f.cfg.HTTPClient.Do(req)
	if err != nil {
		return &retryable{reason: "network", err: err}
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // lets the connection be reused
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return nil
	}
	err = fmt.Errorf("target answered %d: %s", code, strings.TrimSpace(string(snippet)))
	if code >= 500 || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests {
		r := &retryable{reason: strconv.Itoa(code), err: err}
		if s, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && s > 0 {
			r.after = min(time.Duration(s)*time.Second, 5*time.Minute)
		}
		return r
	}
	return &permanent{err: err, status: code}
}

// deadLetter writes rec to the dead-letter topic with the reason, retrying
// until Kafka has it.
func (f *Forwarder) deadLetter(ctx context.Context, rec *kgo.Record, why *permanent) error {
	f.cfg.Logger.Warn("record sent to the dead-letter topic", zap.String("topic", rec.Topic),
		zap.Int32("partition", rec.Partition), zap.Int64("offset", rec.Offset), zap.Error(why.err))
	headers := map[string]string{"target": f.cfg.Target}
	if why.status != 0 {
		headers["status"] = strconv.Itoa(why.status)
	}
	dl, err := deadletter.Consumed(f.cfg.Serde, f.cfg.DeadLetterTopic, rec, events.DeadLetter{
		Stage: "forward", Component: "forwarder/" + f.cfg.Group, Reason: why.err.Error(), Headers: headers,
	})
	if err != nil {
		return fmt.Errorf("encoding a dead letter: %w", err)
	}
	if err := f.retry(ctx, "writing a dead letter", func() error {
		return kafka.ProduceAndWait(ctx, f.cl, dl)
	}); err != nil {
		return err
	}
	f.cfg.Metrics.deadLetter()
	return nil
}

// permanent is an error retrying cannot fix; status is the target's HTTP
// status when it answered.
type permanent struct {
	err    error
	status int
}

func (p *permanent) Error() string { return p.err.Error() }

// retryable is a failed delivery worth another try; reason labels the
// retry metric (network or the HTTP status) and after is the target's
// Retry-After. Other errors fn returns are retried with reason internal.
type retryable struct {
	reason string
	after  time.Duration
	err    error
}

func (r *retryable) Error() string { return r.err.Error() }

// RetryAfter is the target's Retry-After, for retry.Do.
func (r *retryable) RetryAfter() time.Duration { return r.after }

// retry runs fn with the project's retry policy until it succeeds, returns
// a *permanent error (marked for retry), or ctx ends, counting each failure
// by reason.
func (f *Forwarder) retry(ctx context.Context, what string, fn func() error) error {
	return retry.Do(ctx, f.cfg.Logger, what, func() error {
		err := fn()
		var p *permanent
		switch {
		case err == nil:
			return nil
		case errors.As(err, &p):
			return retry.Permanent(err)
		}
		reason := "internal" // the registry or Kafka
		var r *retryable
		if errors.As(err, &r) {
			reason = r.reason
		}
		if ctx.Err() == nil {
			f.cfg.Metrics.retry(reason)
		}
		return err
	})
}
