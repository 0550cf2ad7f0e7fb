package api

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/schemas"
)

// KafkaPublisher publishes customer events to the events topic, keyed by
// customer ID, and waits for Kafka's acknowledgement (acks=all with a
// client from kafka.NewClient); a wait that times out leaves the record
// going (kafka.ProduceAndWait).
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
	rec := &kgo.Record{Topic: schemas.CustomerEventsTopic, Key: []byte(ev.CustomerID), Value: value}
	return kafka.ProduceAndWait(ctx, p.Client, rec)
}
