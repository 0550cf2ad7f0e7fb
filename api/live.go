package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/schemas"
)

// LiveEvent is one event of GET /api/v1/live: a customer record the
// materializer committed (and then published to the state topic).
type LiveEvent struct {
	// ID is "<partition>-<offset>" of the state record: the SSE id.
	ID         string `json:"id"`
	CustomerID string `json:"customer_id"`
	Version    int64  `json:"version"`
	// Changes names what changed since the version this server saw last:
	// message, field, conflict (a new one), resolution, identity, deleted;
	// record when it had not seen the customer (a reload tells).
	Changes       []string  `json:"changes"`
	Deleted       bool      `json:"deleted"`
	NeedsReview   bool      `json:"needs_review"`
	OpenConflicts int       `json:"open_conflicts"`
	UpdatedAt     time.Time `json:"updated_at"`
	// CommittedAt is when the materializer published the change, after
	// its store commit (the state record's timestamp).
	CommittedAt time.Time `json:"committed_at"`

	data []byte // the SSE frame, encoded once for every client
}

// Live fans the changes the materializers commit out to the clients of
// GET /api/v1/live. Each API replica follows every partition of the state
// topic (the materializer publishes each record it committed there) by
// itself, without a consumer group, from the end: every replica receives
// every change, and none polls the store. A bounded ring of recent events
// lets a client that reconnects with Last-Event-ID resume without a gap;
// one whose ID the ring no longer holds is told to resync.
type Live struct {
	cl    *kgo.Client
	adm   *kadm.Client
	topic string
	serde *codec.Serde
	log   *zap.Logger
	ready chan struct{}

	// ClientBuffer is how many events a client may lag behind before it
	// is told to resync and dropped; Heartbeat how often an idle stream
	// gets a comment line (so proxies keep it open). Set before Run.
	ClientBuffer int
	Heartbeat    time.Duration

	mu         sync.Mutex
	clients    map[*liveClient]struct{}            // following every customer
	byCustomer map[string]map[*liveClient]struct{} // following one
	ring       []*LiveEvent                        // the last ringSize events, oldest first
	seen       map[string]seenState
}

// ringSize bounds the events kept for resuming; seenSize the customers
// whose last state is kept to tell what changed.
const (
	ringSize = 4096
	seenSize = 100_000
)

// seenState is what Live remembers of a customer's last state: enough to
// tell what changed, in a few words (100,000 customers take about 6 MB).
type seenState struct {
	version     int64
	lastContact int64
	fields      uint64 // FNV-1a of the fields' names and event IDs, in name order
	conflicts   int    // how many conflicts the record holds
	closed      int    // how many of them are resolved
	identities  int
	deleted     bool
}

type liveClient struct {
	customer string // "" for all
	ch       chan *LiveEvent
	dropped  chan struct{} // closed when the client fell behind
	once     sync.Once
}

// NewLive returns a Live following topic (default
// schemas.CustomerStateTopic); call Run.
func NewLive(cfg kafka.Config, topic string, serde *codec.Serde, log *zap.Logger) (*Live, error) {
	if topic == "" {
		topic = schemas.CustomerStateTopic
	}
	cl, err := kafka.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	return &Live{cl: cl, adm: kadm.NewClient(cl), topic: topic, serde: serde, log: log, ready: make(chan struct{}),
		ClientBuffer: 256, Heartbeat: 15 * time.Second, clients: map[*liveClient]struct{}{}, byCustomer: map[string]map[*liveClient]struct{}{},
		seen: map[string]seenState{}}, nil
}

// Ready is closed once Live follows the topic from its end offsets as of
// Run's start: every change committed after that reaches the clients.
func (l *Live) Ready() <-chan struct{} { return l.ready }

// Run follows the state topic until ctx ends, then closes the client.
func (l *Live) Run(ctx context.Context) error {
	defer l.cl.Close()
	var ends kadm.ListedOffsets
	for {
		var err error
		ends, err = l.adm.ListEndOffsets(ctx, l.topic)
		if err == nil {
			err = ends.Error()
		}
		if err == nil {
			break
		}
		l.log.Warn("live: listing the state topic's end offsets; retrying", zap.Error(err))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
	from := map[string]map[int32]kgo.Offset{l.topic: {}}
	ends.Each(func(o kadm.ListedOffset) { from[l.topic][o.Partition] = kgo.NewOffset().At(o.Offset) })
	l.cl.AddConsumePartitions(from)
	close(l.ready)
	for {
		fs := l.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(_ string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				l.log.Warn("live: fetching the state topic", zap.Int32("partition", p), zap.Error(err))
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			var st events.CustomerState
			if err := l.serde.Decode(ctx, r.Value, &st); err != nil {
				l.log.Warn("live: undecodable state record skipped", zap.Int32("partition", r.Partition), zap.Int64("offset", r.Offset), zap.Error(err))
				return
			}
			l.publish(fmt.Sprintf("%d-%d", r.Partition, r.Offset), &st, r.Timestamp)
		})
	}
}

// publish turns a committed state into an event, keeps it for resuming
// and hands it to every client that wants it, never waiting for one.
func (l *Live) publish(id string, st *events.CustomerState, committed time.Time) {
	ev := &LiveEvent{ID: id, CustomerID: st.CustomerID, Version: st.Version, Deleted: st.Deleted, NeedsReview: st.NeedsReview,
		UpdatedAt: ms(st.UpdatedAt), CommittedAt: ms(committed)}
	now := seenState{version: st.Version, conflicts: len(st.Conflicts), identities: len(st.Identities), deleted: st.Deleted}
	if st.LastContactAt != nil {
		now.lastContact = st.LastContactAt.UnixMilli()
	}
	h := fnv.New64a()
	for _, name := range slices.Sorted(maps.Keys(st.Fields)) {
		h.Write([]byte(name))
		h.Write([]byte{0})
		h.Write([]byte(st.Fields[name].EventID))
		h.Write([]byte{0})
	}
	now.fields = h.Sum64()
	for _, c := range st.Conflicts {
		if c.Status == events.ConflictOpen {
			ev.OpenConflicts++
		} else {
			now.closed++
		}
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	before, known := l.seen[st.CustomerID]
	if known && before.version >= st.Version {
		return // a re-publication of what the clients have
	}
	ev.Changes = changesOf(before, now, known)
	if len(l.seen) >= seenSize && !known {
		for k := range l.seen { // forget one at random
			delete(l.seen, k)
			break
		}
	}
	l.seen[st.CustomerID] = now
	b, _ := json.Marshal(ev)
	ev.data = []byte("id: " + ev.ID + "\nevent: change\ndata: " + string(b) + "\n\n")
	if len(l.ring) == ringSize {
		copy(l.ring, l.ring[1:])
		l.ring = l.ring[:ringSize-1]
	}
	l.ring = append(l.ring, ev)
	l.offer(l.clients, ev)
	l.offer(l.byCustomer[ev.CustomerID], ev)
}

// offer hands ev to each of clients without waiting: one whose buffer is
// full fell behind and is dropped (told to resync).
func (l *Live) offer(clients map[*liveClient]struct{}, ev *LiveEvent) {
	for c := range clients {
		select {
		case c.ch <- ev:
		default:
			l.remove(c)
			c.once.Do(func() { close(c.dropped) })
		}
	}
}

// remove forgets c; l.mu is held.
func (l *Live) remove(c *liveClient) {
	if c.customer == "" {
		delete(l.clients, c)
		return
	}
	set := l.byCustomer[c.customer]
	delete(set, c)
	if len(set) == 0 {
		delete(l.byCustomer, c.customer)
	}
}

func changesOf(before, now seenState, known bool) []string {
	if !known {
		return []string{"record"}
	}
	var out []string
	if now.lastContact != before.lastContact {
		out = append(out, "message")
	}
	if now.fields != before.fields {
		out = append(out, "field")
	}
	if now.conflicts > before.conflicts {
		out = append(out, "conflict")
	}
	if now.closed > before.closed {
		out = append(out, "resolution")
	}
	if now.identities != before.identities {
		out = append(out, "identity")
	}
	if now.deleted && !before.deleted {
		out = append(out, "deleted")
	}
	if len(out) == 0 {
		out = append(out, "record")
	}
	return out
}

// subscribe adds a client and returns the events after lastID it missed;
// resync is true when lastID is not in the ring (too old, or another
// replica's).
func (l *Live) subscribe(customer, lastID string) (c *liveClient, missed []*LiveEvent, resync bool) {
	c = &liveClient{customer: customer, ch: make(chan *LiveEvent, l.ClientBuffer), dropped: make(chan struct{})}
	l.mu.Lock()
	defer l.mu.Unlock()
	if lastID != "" {
		resync = true
		for i, ev := range l.ring {
			if ev.ID == lastID {
				resync = false
				for _, ev := range l.ring[i+1:] {
					if customer == "" || ev.CustomerID == customer {
						missed = append(missed, ev)
					}
				}
				break
			}
		}
	}
	if customer == "" {
		l.clients[c] = struct{}{}
	} else {
		if l.byCustomer[customer] == nil {
			l.byCustomer[customer] = map[*liveClient]struct{}{}
		}
		l.byCustomer[customer][c] = struct{}{}
	}
	return c, missed, resync
}

func (l *Live) unsubscribe(c *liveClient) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.remove(c)
}

// Clients returns how many clients are connected.
func (l *Live) Clients() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.clients)
	for _, set := range l.byCustomer {
		n += len(set)
	}
	return n
}

// resyncFrame tells a client to reload what it shows (then it keeps
// receiving changes, or, after being dropped, reconnects).
const resyncFrame = "event: resync\ndata: {}\n\n"

func (s *server) live(w http.ResponseWriter, r *http.Request) {
	l := s.cfg.Live
	if l == nil {
		writeError(w, http.StatusNotFound, "not_found", "this server does not push changes")
		return
	}
	rc := http.NewResponseController(w)
	customer := r.URL.Query().Get("customer")
	lastID := r.Header.Get("Last-Event-ID")
	if lastID != "" && !validEventID(lastID) {
		writeError(w, http.StatusBadRequest, "invalid_request", "Last-Event-ID: not an ID this API sent")
		return
	}
	c, missed, resync := l.subscribe(customer, lastID)
	defer l.unsubscribe(c)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	// The stream outlives the server's write timeout.
	_ = rc.SetWriteDeadline(time.Time{})
	write := func(b []byte) bool {
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	first := []byte("retry: 2000\n: connected\n\n")
	if resync {
		first = append(first, resyncFrame...)
	}
	for _, ev := range missed {
		first = append(first, ev.data...)
	}
	if !write(first) {
		return
	}
	beat := time.NewTicker(l.Heartbeat)
	defer beat.Stop()
	var buf []byte // what is queued, written at once; reused
	for {
		select {
		case <-r.Context().Done():
			return
		case <-c.dropped:
			write([]byte(resyncFrame))
			return
		case ev := <-c.ch:
			buf = append(buf[:0], ev.data...)
			for more := true; more; {
				select {
				case ev := <-c.ch:
					buf = append(buf, ev.data...)
				default:
					more = false
				}
			}
			if !write(buf) {
				return
			}
			if cap(buf) > 64<<10 {
				buf = nil // do not keep a backlog's buffer on an idle connection
			}
		case <-beat.C:
			if !write([]byte(": heartbeat\n\n")) {
				return
			}
		}
	}
}

func validEventID(id string) bool {
	p, o, ok := strings.Cut(id, "-")
	_, err1 := strconv.ParseInt(p, 10, 32)
	_, err2 := strconv.ParseInt(o, 10, 64)
	return ok && err1 == nil && err2 == nil
}
