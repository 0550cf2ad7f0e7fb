package wxpush

import (
	"crypto/sha256"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/omnisync/omnisync/pkg/httpauth"
)

// MaxNonces bounds the pushes a channel remembers at once: 200,000 within
// the default 5-minute window is about 660 pushes a second, sustained;
// 100,000 take about 11 MB.
const MaxNonces = 200_000

// Nonces is the replay check: it remembers, for as long as the timestamp
// window accepts a push URL, each (timestamp, nonce) taken and the SHA-256
// of the body it came with. The same pair with the same body is WeChat
// re-sending an unanswered push, and is taken again (the pipeline answers
// it without producing twice); with another body it is a replay of a
// captured URL, and is refused. When MaxNonces pairs are remembered, new
// pushes are refused until older ones leave the window: forgetting a pair
// would open it to a replay.
//
// Entries are kept by the timestamp's second and dropped once the
// timestamp is further than the window behind the clock, exactly when the
// signature check stops accepting the URL. (An expirable LRU such as
// hashicorp/golang-lru's evicts the oldest entry when full, which is the
// forgetting this must not do.) Safe for concurrent use.
type Nonces struct {
	window int64 // seconds
	max    int

	mu       sync.Mutex
	n        int
	bySecond map[int64]map[string][sha256.Size]byte // timestamp's second → "timestamp nonce" → body hash
	pruned   int64                                  // the second last pruned at
}

// NewNonces returns a replay check for a timestamp window of window (at
// least a second) remembering at most limit pushes.
func NewNonces(window time.Duration, limit int) *Nonces {
	return &Nonces{window: max(int64(window/time.Second), 1), max: limit, bySecond: map[int64]map[string][sha256.Size]byte{}}
}

// Check takes the push of the signed URL (timestamp, nonce) with body at
// now, or refuses it with an error wrapping httpauth.ErrUnauthorized.
func (ns *Nonces) Check(now time.Time, timestamp, nonce string, body []byte) error {
	sum := sha256.Sum256(body)
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		sec = now.Unix() // only when the timestamp check is off
	}
	key := timestamp + " " + nonce
	ns.mu.Lock()
	defer ns.mu.Unlock()
	ns.prune(now.Unix())
	if prev, ok := ns.bySecond[sec][key]; ok {
		if prev == sum {
			return nil // WeChat re-sending the same push
		}
		return fmt.Errorf("%w: timestamp %s and nonce %s were already used with another body (a replayed URL)", httpauth.ErrUnauthorized, timestamp, nonce)
	}
	if ns.n >= ns.max {
		return fmt.Errorf("%w: %d pushes taken within %ds; refusing more until they leave the replay window rather than forgetting their nonces", httpauth.ErrUnauthorized, ns.n, ns.window)
	}
	m := ns.bySecond[sec]
	if m == nil {
		m = map[string][sha256.Size]byte{}
		ns.bySecond[sec] = m
	}
	m[key] = sum
	ns.n++
	return nil
}

// prune drops the seconds further than the window behind now, once a
// second.
func (ns *Nonces) prune(now int64) {
	if now == ns.pruned {
		return
	}
	ns.pruned = now
	for sec, m := range ns.bySecond {
		if sec < now-ns.window {
			ns.n -= len(m)
			delete(ns.bySecond, sec)
		}
	}
}

// Len is the number of pushes remembered.
func (ns *Nonces) Len() int {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return ns.n
}
