package store

import (
	"context"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/pkg/events"
)

// ScanPage is how many customers a Scan reads at a time.
const ScanPage = 500

// Pages is how a store reads itself for Scan: a page of customers, then
// their messages.
type Pages interface {
	// Customers returns up to limit customers with IDs after after, in
	// customer-ID order (bytewise): their IDs and records.
	Customers(ctx context.Context, after string, limit int) ([]string, []merge.Record, error)
	// Messages calls each with every message of customerIDs and its
	// customer's ID, in (customer ID, message ID) order.
	Messages(ctx context.Context, customerIDs []string, each func(customerID string, m events.MessageEvent) error) error
}

// Scan implements Scanner over a store's Pages: a page of customers at a
// time, and one customer's messages at a time, handed to fn once its last
// message is read. Customer IDs are never empty (the merge ignores events
// without one), so the first page is the one after "".
func Scan(ctx context.Context, p Pages, fn func(merge.Record, []events.MessageEvent) error) error {
	after := ""
	for {
		ids, recs, err := p.Customers(ctx, after, ScanPage)
		if err != nil || len(ids) == 0 {
			return err
		}
		i := 0
		var cur []events.MessageEvent
		emit := func() error {
			err := fn(recs[i], cur)
			i, cur = i+1, nil
			return err
		}
		err = p.Messages(ctx, ids, func(id string, m events.MessageEvent) error {
			for i < len(ids) && ids[i] != id {
				if err := emit(); err != nil {
					return err
				}
			}
			cur = append(cur, m)
			return nil
		})
		if err != nil {
			return err
		}
		for i < len(recs) {
			if err := emit(); err != nil {
				return err
			}
		}
		after = ids[len(ids)-1]
	}
}
