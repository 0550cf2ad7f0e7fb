package devregistry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/omnisync/omnisync/pkg/retry"
	"github.com/omnisync/omnisync/schemas"
)

// Registry is the embedded schema registry. It is an http.Handler serving
// the Confluent Schema Registry REST API; mount it at the root of a server
// (the API's paths start at /subjects, /schemas, /config ...). It is safe
// for concurrent use: reads run concurrently, writes one at a time.
type Registry struct {
	cl   *kgo.Client
	log  *zap.Logger
	opts options
	mux  *http.ServeMux

	writeMu sync.Mutex   // serialises writes: decide, produce, apply
	mu      sync.RWMutex // guards st; writers hold writeMu too, so they read st without mu
	st      state
}

var _ http.Handler = (*Registry)(nil)

// Option configures a Registry.
type Option func(*options)

type options struct {
	topic             string
	replicationFactor int16
	writeTimeout      time.Duration
}

// Topic sets the topic the registry persists to, by default
// schemas.RegistryTopic ("_schemas"). Use another name when a Confluent
// registry already owns _schemas on the cluster.
func Topic(name string) Option { return func(o *options) { o.topic = name } }

// ReplicationFactor sets the replication factor the topic is created with
// when it does not exist, by default -1: the broker's default.
func ReplicationFactor(n int16) Option { return func(o *options) { o.replicationFactor = n } }

// WriteTimeout bounds how long a write may wait to be sent to Kafka, by
// default 10s; it then fails with a store error (HTTP 500, error code
// 50001). A write already sent is not abandoned: if Kafka's answer is lost,
// the client retries it idempotently and the request waits until Kafka
// settles it, so the registry never disagrees with its topic.
func WriteTimeout(d time.Duration) Option { return func(o *options) { o.writeTimeout = d } }

// New creates the registry's topic if it is missing, reads it back to
// rebuild the registry's state and returns the registry, ready to serve.
//
// The registry uses cl to administer, read and write its topic, and uses it
// as a direct consumer while New reads the topic: cl must not be a group or
// regex consumer nor consume other topics, must not be transactional, and
// must produce with acks=all (kgo's default). A dedicated client is the
// simple way, e.g. kgo.NewClient(kgo.SeedBrokers(addrs...)). The caller
// keeps ownership of cl and closes it after the registry is no longer used.
// A nil log logs nothing. New fails when the topic exists with more than one
// partition or is not compacted (the schemas would expire), as Confluent's
// registry does.
func New(ctx context.Context, cl *kgo.Client, log *zap.Logger, opts ...Option) (*Registry, error) {
	if log == nil {
		log = zap.NewNop()
	}
	o := options{topic: schemas.RegistryTopic, replicationFactor: -1, writeTimeout: 10 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	if err := checkClient(cl); err != nil {
		return nil, err
	}
	builtin := map[string]string{}
	for _, n := range schemas.All {
		builtin[n.Subject()] = levelFull
	}
	r := &Registry{cl: cl, log: log.With(zap.String("topic", o.topic)), opts: o, st: newState(builtin)}
	if err := r.ensureTopic(ctx); err != nil {
		return nil, err
	}
	if err := r.load(ctx); err != nil {
		return nil, err
	}
	r.mux = r.routes()
	r.log.Info("schema registry ready", zap.Int("subjects", len(r.st.subjects)),
		zap.Int("schemas", len(r.st.texts)), zap.Int("next_id", r.st.nextID))
	return r, nil
}

// ServeHTTP serves the Confluent Schema Registry REST API. It refuses what
// a web page of another site can make a browser send (see crossSite).
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if err := crossSite(req); err != nil {
		r.endpoint(func(*http.Request) (any, error) { return nil, err }).ServeHTTP(w, req)
		return
	}
	r.mux.ServeHTTP(w, req)
}

func checkClient(cl *kgo.Client) error {
	if cl == nil {
		return errors.New("devregistry: nil Kafka client")
	}
	if g, _ := cl.OptValue(kgo.ConsumerGroup).(string); g != "" {
		return fmt.Errorf("devregistry: the Kafka client consumes as group %q; give the registry a client without a consumer group", g)
	}
	if regex, _ := cl.OptValue(kgo.ConsumeRegex).(bool); regex || len(cl.GetConsumeTopics()) > 0 {
		return errors.New("devregistry: the Kafka client already consumes topics; give the registry a client of its own")
	}
	if txn := cl.OptValues(kgo.TransactionalID); len(txn) == 2 && txn[1] == true {
		return errors.New("devregistry: the Kafka client is transactional; give the registry a non-transactional client")
	}
	if acks, _ := cl.OptValue(kgo.RequiredAcks).(kgo.Acks); acks != kgo.AllISRAcks() {
		return errors.New("devregistry: the Kafka client must produce with kgo.RequiredAcks(kgo.AllISRAcks())")
	}
	return nil
}

// ensureTopic creates the topic if it is missing and checks that it has one
// partition and is compacted.
func (r *Registry) ensureTopic(ctx context.Context) error {
	adm := kadm.NewClient(r.cl) // not closed: that would close r.cl
	topic := r.opts.topic
	compact := "compact"
	_, err := adm.CreateTopic(ctx, 1, r.opts.replicationFactor, map[string]*string{"cleanup.policy": &compact}, topic)
	switch {
	case err == nil:
		r.log.Info("created schema registry topic")
	case !errors.Is(err, kerr.TopicAlreadyExists):
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	err = r.retry(ctx, "checking the schema registry topic", func(ctx context.Context) error {
		details, err := adm.ListTopics(ctx, topic)
		if err != nil {
			return err
		}
		td := details[topic]
		if td.Err != nil {
			return td.Err
		}
		if len(td.Partitions) != 1 {
			return retry.Permanent(fmt.Errorf("it has %d partitions; the schema registry needs exactly 1", len(td.Partitions)))
		}
		configs, err := adm.DescribeTopicConfigs(ctx, topic)
		if err != nil {
			return err
		}
		rc, err := configs.On(topic, nil)
		if err == nil {
			err = rc.Err
		}
		if err != nil {
			return err
		}
		for _, c := range rc.Configs {
			if c.Key == "cleanup.policy" && c.MaybeValue() != "compact" {
				return retry.Permanent(fmt.Errorf("cleanup.policy is %s; the schema registry needs compact, or schemas would expire", c.MaybeValue()))
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("checking topic %s: %w", topic, err)
	}
	return nil
}

// load reads the topic from its start to its high watermark into r.st.
func (r *Registry) load(ctx context.Context) error {
	adm := kadm.NewClient(r.cl)
	topic := r.opts.topic
	var start, end int64
	err := r.retry(ctx, "listing the schema registry topic's offsets", func(ctx context.Context) error {
		starts, err := adm.ListStartOffsets(ctx, topic)
		if err != nil {
			return err
		}
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			return err
		}
		s, _ := starts.Lookup(topic, 0)
		e, _ := ends.Lookup(topic, 0)
		start, end = s.Offset, e.Offset
		return errors.Join(s.Err, e.Err)
	})
	if err != nil {
		return fmt.Errorf("listing offsets of %s: %w", topic, err)
	}
	if start >= end {
		return nil
	}
	r.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(start)}})
	defer r.cl.RemoveConsumePartitions(map[string][]int32{topic: {0}})
	records, skipped := 0, 0
	for {
		fetches := r.cl.PollFetches(ctx)
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) { ferr = errors.Join(ferr, err) })
		if ferr != nil {
			return fmt.Errorf("reading %s: %w", topic, ferr)
		}
		done := false
		fetches.EachRecord(func(rec *kgo.Record) {
			records++
			if err := r.st.apply(rec.Key, rec.Value); err != nil {
				skipped++
				r.log.Warn("skipping schema registry record", zap.Int64("offset", rec.Offset), zap.Error(err))
			}
			done = done || rec.Offset >= end-1
		})
		if done {
			r.log.Info("read schema registry topic", zap.Int("records", records), zap.Int("skipped", skipped))
			return nil
		}
	}
}

// write produces recs, waits until all in-sync replicas have them, and then
// applies the ones that were written to r.st, in order. The caller holds
// r.writeMu. A failure is a store error (HTTP 500, error code 50001).
func (r *Registry) write(ctx context.Context, recs ...record) error {
	krs := make([]*kgo.Record, len(recs))
	for i, rec := range recs {
		krs[i] = &kgo.Record{Topic: r.opts.topic, Key: rec.key, Value: rec.value}
	}
	// A client that goes away must not cut a write in two.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.writeTimeout)
	defer cancel()
	failed := map[*kgo.Record]error{}
	for _, res := range r.cl.ProduceSync(ctx, krs...) {
		if res.Err != nil {
			failed[res.Record] = res.Err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, kr := range krs {
		if err := failed[kr]; err != nil {
			errs = append(errs, err)
			continue
		}
		if err := r.st.apply(kr.Key, kr.Value); err != nil {
			r.log.Error("applying our own schema registry record", zap.ByteString("key", kr.Key), zap.Error(err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		r.log.Error("writing to the schema registry topic", zap.Int("records", len(krs)), zap.Int("failed", len(errs)), zap.Error(err))
		return &apiError{http.StatusInternalServerError, 50001, "Error while writing to the backend Kafka store: " + err.Error()}
	}
	return nil
}

// retry calls fn with the project's retry policy for up to 10 s, for
// metadata that lags behind a topic's creation.
func (r *Registry) retry(ctx context.Context, what string, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return retry.Do(ctx, r.log, what, func() error { return fn(ctx) })
}
