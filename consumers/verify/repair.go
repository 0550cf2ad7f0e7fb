package verify

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/omnisync/omnisync/consumers/store"
)

// catchUpSlack is how many records of the log may be left to fold while
// holding the store's lock: the fold first catches up with the members
// without it.
const catchUpSlack = 2000

// repair re-materializes rep's differing customers in st (see AgainstLog):
// the fold catches up with the store's offsets, then, under the store's
// lock, folds up to the offsets held there and replaces the customers by
// the fold's versions. gen is the store's generation the fold began at.
func (f *folder) repair(ctx context.Context, st Store, locked store.LockedReplacer, gen string, rep *Report) error {
	log := f.cfg.Logger
	// Catch up without the lock while what is left shrinks and is large:
	// the members go on meanwhile.
	for before := int64(-1); ; {
		now, err := st.Offsets(ctx, f.cfg.Group)
		if err != nil {
			return fmt.Errorf("reading the store's offsets: %w", err)
		}
		if err := f.behind(now); err != nil {
			return err
		}
		left := remaining(f.at, now)
		log.Info("repair: catching up with the group", zap.Int64("records_left", left))
		if left <= catchUpSlack || (before >= 0 && left >= before) {
			break
		}
		before = left
		if err := f.foldTo(ctx, now); err != nil {
			return err
		}
	}
	ids := make([]string, len(rep.Differ))
	for i, d := range rep.Differ {
		ids[i] = d.CustomerID
	}
	err := locked.ReplaceLocked(ctx, f.cfg.Group, func(ctx context.Context, held map[string]map[int32]int64, now string) (store.Replacement, error) {
		if now != gen {
			return store.Replacement{}, errors.New("the store was replaced or repaired while verify ran (its generation changed): verify again")
		}
		if err := f.behind(held); err != nil {
			return store.Replacement{}, err
		}
		log.Info("repair: folding the last records under the store's lock", zap.Int64("records", remaining(f.at, held)))
		if err := f.foldTo(ctx, held); err != nil {
			return store.Replacement{}, err
		}
		return f.customers(ctx, ids)
	})
	if err != nil {
		return err
	}
	rep.Repaired = len(ids)
	log.Info("repaired customers from the log", zap.Int("customers", len(ids)))
	return nil
}

// behind checks that the store's offsets are at or past the fold's: a
// store whose offsets went back was reset or replaced meanwhile.
func (f *folder) behind(offsets map[string]map[int32]int64) error {
	if !store.Covers(offsets, f.at) {
		return fmt.Errorf("the store's offsets %v are behind the log's fold %v (reset or replaced while verify ran): verify again", offsets, f.at)
	}
	return nil
}

// customers reads the fold's version of customers: the records it holds
// (a customer it does not hold has none) and their messages.
func (f *folder) customers(ctx context.Context, ids []string) (store.Replacement, error) {
	r := store.Replacement{CustomerIDs: ids}
	records, err := f.scratch.Load(ctx, ids)
	if err != nil {
		return r, fmt.Errorf("reading the fold: %w", err)
	}
	for _, id := range ids {
		rec, ok := records[id]
		if !ok {
			continue
		}
		r.Records = append(r.Records, rec)
		var after *store.Cursor
		for {
			page, err := f.scratch.Timeline(ctx, id, after, 500)
			if err != nil {
				return r, fmt.Errorf("reading the fold: %w", err)
			}
			r.Messages = append(r.Messages, page...)
			if len(page) < 500 {
				break
			}
			last := page[len(page)-1]
			after = &store.Cursor{At: last.OccurredAt.UnixMilli(), ID: last.MessageID}
		}
	}
	return r, nil
}

// remaining counts the records from at up to goal.
func remaining(at, goal map[string]map[int32]int64) (n int64) {
	for topic, parts := range goal {
		for p, g := range parts {
			if a := at[topic][p]; g > a {
				n += g - a
			}
		}
	}
	return n
}
