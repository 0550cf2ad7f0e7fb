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
}

// Publish implements Publisher.
func (p KafkaPublisher) Publish(ctx context.Context, ev *events.CustomerEvent) error {
	value, err := p.Serde.Encode(ev)
	if err != nil {
		return fmt.Errorf("encoding event %s: %w", ev.EventID, err)
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	recs := []*kgo.Record{{Topic: schemas.CustomerEventsTopic, Key: []byte(ev.CustomerID), Value: value}}
	if link, ok := identity.Redirect(ev, ev.Source, ev.IngestedAt); ok {
		v, err := p.Serde.Encode(link)
		if err != nil {
			return fmt.Errorf("encoding the redirect of %s: %w", link.Identity.Value, err)
		}
		recs = append(recs, &kgo.Record{Topic: schemas.IdentitiesTopic, Key: []byte(identity.Key(link.Identity)), Value: v})
	}
	return kafka.ProduceAndWait(ctx, p.Client, recs...)
}
