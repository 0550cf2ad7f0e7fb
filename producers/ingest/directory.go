package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/schemas"
)

// Directory is the identity directory: which customer each verified channel
// identity (a signed openid or unionid, a caller's number, a signed login, a
// CRM ID) belongs to. It follows the compacted identities topic in memory;
// producers add to it whenever an event links verified identities. Links of
// unverified identities (written before identities carried their trust) are
// ignored. Lookups are safe for concurrent use.
type Directory struct {
	cl    *kgo.Client
	serde *codec.Serde
	log   *zap.Logger

	mu    sync.RWMutex
	links map[string]string // IdentityKey → customer ID
	ready chan struct{}
}

// NewDirectory returns a directory that reads the identities topic of the
// cluster cfg names from its start. Call Run to follow it.
func NewDirectory(cfg kafka.Config, serde *codec.Serde, log *zap.Logger) (*Directory, error) {
	cl, err := kafka.NewClient(cfg, kgo.ConsumeTopics(schemas.IdentitiesTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, err
	}
	return &Directory{cl: cl, serde: serde, log: log, links: map[string]string{}, ready: make(chan struct{})}, nil
}

// Ready is closed once the directory has read the whole topic as it was
// when Run started; producers answer 503 until then.
func (d *Directory) Ready() <-chan struct{} { return d.ready }

// Run follows the identities topic until ctx ends, then closes the client.
func (d *Directory) Run(ctx context.Context) error {
	defer d.cl.Close()
	ends, err := kadm.NewClient(d.cl).ListEndOffsets(ctx, schemas.IdentitiesTopic)
	if err != nil {
		return fmt.Errorf("identity directory: listing end offsets: %w", err)
	}
	behind := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			behind[o.Partition] = o.Offset
		}
	})
	if len(behind) == 0 {
		close(d.ready)
	}
	for {
		fs := d.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				d.log.Warn("identity directory fetch", zap.Int32("partition", p), zap.Error(err))
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			var link events.IdentityLink
			if err := d.serde.Decode(ctx, r.Value, &link); err != nil {
				d.log.Warn("identity directory: undecodable link skipped", zap.Int32("partition", r.Partition), zap.Int64("offset", r.Offset), zap.Error(err))
			} else if link.Identity.Verified {
				d.remember(link.Identity, link.CustomerID)
			}
			if end, ok := behind[r.Partition]; ok && r.Offset+1 >= end {
				delete(behind, r.Partition)
				if len(behind) == 0 {
					close(d.ready)
				}
			}
		})
	}
}

// Lookup returns the customer an identity belongs to.
func (d *Directory) Lookup(id events.Identity) (string, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	c, ok := d.links[IdentityKey(id)]
	return c, ok
}

func (d *Directory) remember(id events.Identity, customerID string) {
	d.mu.Lock()
	d.links[IdentityKey(id)] = customerID
	d.mu.Unlock()
}

// Resolve returns the customer ID of an event and the verified identities
// not yet linked to anyone, for the caller to link. Only verified
// identities (and an explicit customer ID, which channels pass only when
// verified) may attach input to an existing customer:
//
//   - explicit, when the payload names a verified customer;
//   - else the customer of the best-ranked verified identity linked in
//     pending (links made earlier in the same request) or the directory;
//   - else one derived from the best-ranked verified identity;
//   - else, with unverified identities only, the anonymous customer derived
//     from the best-ranked session identity (device, web visitor), never
//     looked up: what a public client merely states never lands on an
//     existing customer.
//
// It returns "" when the event names no customer, has no verified identity
// and no session identity. A verified identity already linked to another
// customer keeps its link (merging customers is a later step).
func (d *Directory) Resolve(explicit string, ids []events.Identity, pending map[string]string) (customerID string, unlinked []events.Identity) {
	lookup := func(id events.Identity) (string, bool) {
		if c, ok := pending[IdentityKey(id)]; ok {
			return c, true
		}
		return d.Lookup(id)
	}
	better := func(i, j int) bool { return j < 0 || rank(ids[i].Kind) < rank(ids[j].Kind) }
	best, bestKnown, bestSession := -1, -1, -1
	for i, id := range ids {
		if !id.Verified {
			if sessionKinds[id.Kind] && better(i, bestSession) {
				bestSession = i
			}
			continue
		}
		if better(i, best) {
			best = i
		}
		if _, ok := lookup(id); ok && better(i, bestKnown) {
			bestKnown = i
		}
	}
	switch {
	case explicit != "":
		customerID = explicit
	case bestKnown >= 0:
		customerID, _ = lookup(ids[bestKnown])
	case best >= 0:
		customerID = CustomerIDFor(ids[best])
	case bestSession >= 0:
		customerID = CustomerIDFor(ids[bestSession])
	}
	for _, id := range ids {
		if _, ok := lookup(id); id.Verified && !ok && customerID != "" {
			unlinked = append(unlinked, id)
		}
	}
	return customerID, unlinked
}
