package kafka

import (
	"context"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ProduceAndWait hands records to cl and waits until Kafka acknowledged
// every one, or until ctx ends. ctx bounds only the wait, never the
// records: a record handed to the client is never cancelled, because a
// record failed while a broker may already have written it can make the
// idempotent producer reuse its sequence numbers and lose a later record.
// After ctx ends the caller answers "not confirmed" (503), the records keep
// going and may still land, and deterministic event IDs absorb the
// caller's re-send. When the client's buffer is full (Kafka unreachable for
// long), records are refused at once (kgo.ErrMaxBuffered) instead of
// queued, so memory stays bounded. It returns the first record's error.
//
// It does not flush: with a client that lingers, each call would wait out
// the linger. Config.Opts sets none (franz-go's default is 10 ms), and
// records produced while a request is in flight still go in the next one.
//
// franz-go v1.22.2 (#1484, in the v1.22.3 we pin) fixed that loss: a sent
// batch failed by its context now bumps the producer epoch instead of
// letting the next batch reuse its sequence numbers and be acknowledged
// unwritten; we keep the background context anyway, so an acknowledgement
// never depends on that fix and a record is never half-cancelled.
func ProduceAndWait(ctx context.Context, cl *kgo.Client, records ...*kgo.Record) error {
	if len(records) == 0 {
		return nil
	}
	done := make(chan error, 1)
	var mu sync.Mutex
	remaining := len(records)
	var firstErr error
	for _, rec := range records {
		cl.TryProduce(context.Background(), rec, func(_ *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			if remaining--; remaining == 0 {
				done <- firstErr
			}
		})
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("waiting for Kafka's acknowledgement: %w", ctx.Err())
	}
}
