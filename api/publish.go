package api

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/identity"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/schemas"
)

// KafkaPublisher publishes customer events to the events topic, keyed by
// customer ID, and waits for Kafka's acknowledgement (acks=all with a
// client from kafka.NewClient); a wait that times out leaves the record
// going (kafka.ProduceAndWait). With a MERGE or UNMERGE request it writes
// the identity directory's redirect (identity.Redirect), so producers send
// the absorbed customer's identities to the survivor.
type KafkaPublisher struct {
	Client  *kgo.Client
	Serde   *codec.Serde
	Timeout time.Duration // default 10 s
	// EventsTopic and AuditTopic default to schemas.CustomerEventsTopic
	// and schemas.AuditTopic (tests use topics of their own).
	EventsTopic, AuditTopic string
}

func (p KafkaPublisher) timeout() time.Duration {
	if p.Timeout <= 0 {
		return 10 * time.Second
	}
	return p.Timeout
}

// records returns ev's record and, for a MERGE or UNMERGE request, the
// directory's redirect.
func (p KafkaPublisher) records(ev *events.CustomerEvent) ([]*kgo.Record, error) {
	value, err := p.Serde.Encode(ev)
	if err != nil {
		return nil, fmt.Errorf("encoding event %s: %w", ev.EventID, err)
	}
	topic := p.EventsTopic
	if topic == "" {
		topic = schemas.CustomerEventsTopic
	}
	recs := []*kgo.Record{{Topic: topic, Key: []byte(ev.CustomerID), Value: value}}
	if link, ok := identity.Redirect(ev, ev.Source, ev.IngestedAt); ok {
		v, err := p.Serde.Encode(link)
		if err != nil {
			return nil, fmt.Errorf("encoding the redirect of %s: %w", link.Identity.Value, err)
		}
		recs = append(recs, &kgo.Record{Topic: schemas.IdentitiesTopic, Key: []byte(identity.Key(link.Identity)), Value: v})
	}
	return recs, nil
}

// Publish implements Publisher.
func (p KafkaPublisher) Publish(ctx context.Context, ev *events.CustomerEvent) error {
	recs, err := p.records(ev)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout())
	defer cancel()
	return kafka.ProduceAndWait(ctx, p.Client, recs...)
}
