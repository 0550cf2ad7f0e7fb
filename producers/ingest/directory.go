package ingest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/identity"
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

	mu        sync.RWMutex
	links     map[string]string // IdentityKey → customer ID
	redirects map[string]string // merged customer ID → its survivor
	ready     chan struct{}
}

// NewDirectory returns a directory that reads the identities topic of the
// cluster cfg names from its start. Call Run to follow it.
func NewDirectory(cfg kafka.Config, serde *codec.Serde, log *zap.Logger) (*Directory, error) {
	cl, err := kafka.NewClient(cfg, kgo.ConsumeTopics(schemas.IdentitiesTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, err
	}
	return &Directory{cl: cl, serde: serde, log: log, links: map[string]string{}, redirects: map[string]string{}, ready: make(chan struct{})}, nil
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

// Lookup returns the customer an identity belongs to, as linked (Survivor
// follows merges).
func (d *Directory) Lookup(id events.Identity) (string, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	c, ok := d.links[IdentityKey(id)]
	return c, ok
}

// maxRedirects bounds a chain of merges followed; merges go to smaller IDs,
// so chains end, and a longer one means entries written by racing requests.
const maxRedirects = 64

// Survivor returns the end of the chain of merges starting at customer:
// the customer itself when it is not merged. pending holds entries made
// earlier in the same request (identity.Key → customer ID).
func (d *Directory) Survivor(customer string, pending map[string]string) string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	for range maxRedirects {
		next, ok := pending[IdentityKey(redirectOf(customer))]
		if !ok {
			next, ok = d.redirects[customer]
		}
		if !ok || next == customer {
			break
		}
		customer = next
	}
	return customer
}

func redirectOf(customer string) events.Identity {
	return events.Identity{Kind: identity.RedirectKind, Value: customer, Verified: true}
}

func (d *Directory) remember(id events.Identity, customerID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if id.Kind != identity.RedirectKind {
		d.links[IdentityKey(id)] = customerID
	} else if customerID == id.Value {
		delete(d.redirects, id.Value) // unmerged
	} else {
		d.redirects[id.Value] = customerID
	}
}

// Resolution is what Resolve found for one event.
type Resolution struct {
	// CustomerID is the event's customer: the end of its chain of merges.
	CustomerID string
	// Unlinked are the event's verified identities linked to no one, for
	// the caller to link to CustomerID.
	Unlinked []events.Identity
	// Linked are the event's verified identities linked to CustomerID (or
	// to a customer merged into it).
	Linked []events.Identity
	// Others are the other customers the event's verified identities are
	// linked to (each the end of its chain of merges), in order of their
	// best-ranked identity: candidates for a merge with CustomerID.
	Others []Candidate
}

// Candidate is another customer an event showed identities of.
type Candidate struct {
	CustomerID string
	Evidence   []events.Identity // the event's identities linked to it
}

// Resolve returns the customer of an event and how its identities relate
// to the identity graph. Only verified identities (and an explicit
// customer ID, which channels pass only when verified) may attach input to
// an existing customer:
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
// Linked customers are followed through merges to their survivors. The
// customer ID is "" when the event names no customer, has no verified
// identity and no session identity. A verified identity already linked to
// another customer keeps its link: it is reported in Others, and the
// caller decides whether the two customers merge.
func (d *Directory) Resolve(explicit string, ids []events.Identity, pending map[string]string) Resolution {
	owner := func(id events.Identity) (string, bool) {
		c, ok := pending[IdentityKey(id)]
		if !ok {
			c, ok = d.Lookup(id)
		}
		if !ok {
			return "", false
		}
		return d.Survivor(c, pending), true
	}
	better := func(i, j int) bool { return j < 0 || rank(ids[i].Kind) < rank(ids[j].Kind) }
	best, bestKnown, bestSession := -1, -1, -1
	owners := make([]string, len(ids))
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
		if c, ok := owner(id); ok {
			owners[i] = c
			if better(i, bestKnown) {
				bestKnown = i
			}
		}
	}
	var res Resolution
	switch {
	case explicit != "":
		res.CustomerID = d.Survivor(explicit, pending)
	case bestKnown >= 0:
		res.CustomerID = owners[bestKnown]
	case best >= 0:
		res.CustomerID = CustomerIDFor(ids[best])
	case bestSession >= 0:
		res.CustomerID = CustomerIDFor(ids[bestSession])
	}
	if res.CustomerID == "" {
		return res
	}
	order := make([]int, 0, len(ids)) // verified identities, best-ranked first
	for i, id := range ids {
		if id.Verified {
			order = append(order, i)
		}
	}
	slices.SortStableFunc(order, func(i, j int) int { return rank(ids[i].Kind) - rank(ids[j].Kind) })
	for _, i := range order {
		switch c := owners[i]; {
		case c == "":
			res.Unlinked = append(res.Unlinked, ids[i])
		case c == res.CustomerID:
			res.Linked = append(res.Linked, ids[i])
		default:
			k := slices.IndexFunc(res.Others, func(o Candidate) bool { return o.CustomerID == c })
			if k < 0 {
				k = len(res.Others)
				res.Others = append(res.Others, Candidate{CustomerID: c})
			}
			res.Others[k].Evidence = append(res.Others[k].Evidence, ids[i])
		}
	}
	return res
}
