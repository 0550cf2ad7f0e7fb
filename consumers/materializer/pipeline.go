package materializer

import (
	"cmp"
	"context"
	"errors"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
)

// writer applies folded batches to the store on lanes, one goroutine
// each; a partition's batches all go to one lane, in the order they were
// submitted, so batches of other partitions are applied at once. On each
// lane at most one batch waits while another is applied, which bounds the
// memory a fast Kafka and a slow store take.
//
// When the store refuses a batch because its offsets moved (the
// compare-and-set of store.Batch.From), the writer drops every batch
// after it, on every lane, until resume: they were folded on top of it,
// or from records the member may no longer hold.
type writer struct {
	lanes []*lane

	mu      sync.Mutex
	err     error  // why the writer stopped; nil while it runs
	isMoved bool   // a batch was refused: drop batches until resume
	wake    func() // called when a batch is refused or the writer stops; see setWake
}

type lane struct {
	jobs    chan *job
	stopped chan struct{} // closed when the lane's goroutine returns
	last    *job          // the last batch submitted; under writer.mu
}

func newWriter(lanes int) *writer {
	w := &writer{}
	for range lanes {
		w.lanes = append(w.lanes, &lane{jobs: make(chan *job, 1), stopped: make(chan struct{})})
	}
	return w
}

// run starts the lanes; they apply the submitted batches until close.
// After a failure (the context ended, or a permanent error) no lane
// applies anything more: a later batch must not be applied without the
// one before.
func (w *writer) run(ctx context.Context, m *Materializer, publisher *kgo.Client) {
	for _, l := range w.lanes {
		go func() {
			defer close(l.stopped)
			for j := range l.jobs {
				if w.failed() == nil && !w.moved() {
					err := m.apply(ctx, j, publisher)
					var moved *store.OffsetsMovedError
					w.mu.Lock()
					switch {
					case errors.As(err, &moved):
						w.isMoved = true
					case err != nil:
						w.err = cmp.Or(w.err, err)
					}
					if err != nil && w.wake != nil {
						w.wake()
					}
					w.mu.Unlock()
				}
				close(j.done)
			}
		}()
	}
}

// submit queues a batch on its partition's lane, waiting while another
// one waits there.
func (w *writer) submit(ctx context.Context, j *job) error {
	l := w.lanes[int(j.partition)%len(w.lanes)]
	w.mu.Lock()
	l.last = j
	w.mu.Unlock()
	select {
	case l.jobs <- j:
		return nil
	case <-ctx.Done():
		close(j.done)
		return ctx.Err()
	}
}

// drain waits until every submitted batch is applied or the writer has
// stopped.
func (w *writer) drain() {
	for _, l := range w.lanes {
		w.mu.Lock()
		last := l.last
		w.mu.Unlock()
		if last != nil {
			<-last.done
		}
	}
}

// moved reports whether the store refused a batch because its offsets
// moved: the writer drops batches until resume.
func (w *writer) moved() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.isMoved
}

// setWake sets the function called when a batch is refused or the writer
// stops (nil for none); it is called at once when that already happened.
func (w *writer) setWake(wake func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.wake = wake
	if wake != nil && (w.isMoved || w.err != nil) {
		wake()
	}
}

// resume applies batches again after a refusal, once the member has
// re-seeked.
func (w *writer) resume() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.isMoved = false
}

// failed returns why the writer stopped, nil while it runs.
func (w *writer) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// close ends the lanes once the queued batches are dealt with and waits
// for them. Only the goroutine that submits may call it, after run.
func (w *writer) close() {
	for _, l := range w.lanes {
		close(l.jobs)
	}
	for _, l := range w.lanes {
		<-l.stopped
	}
}

// recordCache holds customer records this member folded or loaded, so
// that a customer folded again soon is neither read from the store nor
// decoded from JSON again. A record of a batch the writer has not yet
// applied is pinned: it is newer than the store's and must not be evicted
// (a Load would return the older one). Others are evicted, in no
// particular order, beyond max records or maxBytes (estimated, see
// recordSize): records grow with a customer's history, so a count alone
// would let the cache grow with the events per customer.
type recordCache struct {
	mu       sync.Mutex
	max      int
	maxBytes int
	bytes    int // recordSize of the records held
	recs     map[string]*cached
}

type cached struct {
	rec  merge.Record
	pins int // batches holding this customer that are not yet applied
}

func newRecordCache(max, maxBytes int) *recordCache {
	return &recordCache{max: max, maxBytes: maxBytes, recs: map[string]*cached{}}
}

// recordSize estimates the memory a record holds, in bytes: a fixed part
// and one per field, conflict and identity (their strings are short).
func recordSize(r *merge.Record) int {
	return 512 + 192*len(r.Fields) + 384*len(r.Conflicts) + 128*len(r.Identities)
}

func (c *recordCache) get(id string) (merge.Record, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.recs[id]
	if !ok {
		return merge.Record{}, false
	}
	return e.rec, true
}

// add holds a record as the store has it.
func (c *recordCache) add(id string, r merge.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.recs[id]; !ok {
		c.recs[id] = &cached{rec: r}
		c.bytes += recordSize(&r)
	}
}

// pin holds the records of a batch about to be submitted.
func (c *recordCache) pin(recs []merge.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range recs {
		e, ok := c.recs[r.CustomerID]
		if !ok {
			e = &cached{}
			c.recs[r.CustomerID] = e
		} else {
			c.bytes -= recordSize(&e.rec)
		}
		e.rec = r
		c.bytes += recordSize(&e.rec)
		e.pins++
	}
}

// unpin releases the records of an applied batch and evicts what is over
// the limit.
func (c *recordCache) unpin(recs []merge.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range recs {
		if e, ok := c.recs[r.CustomerID]; ok && e.pins > 0 {
			e.pins--
		}
	}
	for id, e := range c.recs {
		if len(c.recs) <= c.max && c.bytes <= c.maxBytes {
			break
		}
		if e.pins == 0 {
			c.bytes -= recordSize(&e.rec)
			delete(c.recs, id)
		}
	}
}

// reset forgets every record: another member may write them from now on.
func (c *recordCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.recs)
	c.bytes = 0
}
