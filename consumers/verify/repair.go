package verify

import (
	"context"
	"errors"
	"fmt"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/pkg/events"
)

// Repair re-materializes exactly the customers rep found differing, from
// the fold of the log AgainstLog made: in one transaction (st.Replace) it
// replaces each one's record and messages with the log's, restoring
// missing customers and messages and removing extra ones; a customer the
// log does not have is removed. The group's offsets are not touched.
// Verify again afterwards to check the store agrees.
func Repair(ctx context.Context, st store.Replacer, rep *Report) error {
	if rep.fresh == nil {
		return errors.New("repair needs a report of AgainstLog: only the log's fold says what a customer should be")
	}
	if rep.OK() {
		return nil
	}
	ids := make([]string, 0, len(rep.Differ))
	var records []merge.Record
	var messages []events.MessageEvent
	for _, d := range rep.Differ {
		ids = append(ids, d.CustomerID)
		c := rep.fresh[d.CustomerID]
		if c.record != nil {
			records = append(records, *c.record)
			messages = append(messages, c.messages...)
		}
	}
	if err := st.Replace(ctx, ids, records, messages); err != nil {
		return fmt.Errorf("repairing %d customers: %w", len(ids), err)
	}
	return nil
}
