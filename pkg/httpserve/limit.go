package httpserve

import (
	"encoding/json"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// A client is the peer address of the connection (r.RemoteAddr): an IPv4
// address, or an IPv6 /64 (what one host usually holds). X-Forwarded-For is
// not read, so behind a reverse proxy every client shares the proxy's
// budget: raise the limits there, or limit at the proxy.
func clientKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// clientIdle is how long a client with nothing in flight is remembered;
// by then its token bucket is full again, so forgetting it changes nothing.
const clientIdle = time.Minute

// limiter keeps a token bucket and an in-flight count per client, in a map
// of at most maxClients entries.
type limiter struct {
	rate        rate.Limit
	burst       int
	maxInFlight int
	maxClients  int

	mu        sync.Mutex
	clients   map[string]*client
	lastSweep time.Time
	now       func() time.Time
}

type client struct {
	bucket   *rate.Limiter
	inFlight int
	seen     time.Time
}

func newLimiter(o Options) *limiter {
	l := &limiter{burst: o.RateBurst, maxInFlight: o.MaxInFlight, maxClients: o.MaxClients,
		clients: map[string]*client{}, now: time.Now}
	l.rate = rate.Limit(o.RateLimit)
	if o.RateLimit < 0 {
		l.rate = rate.Inf
	}
	if o.MaxInFlight < 0 {
		l.maxInFlight = math.MaxInt
	}
	return l
}

func (l *limiter) wrap(h http.Handler) http.Handler {
	if l.rate == rate.Inf && l.maxInFlight == math.MaxInt {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := clientKey(r.RemoteAddr)
		retry, reason := l.acquire(key)
		if reason != "" {
			refuse(w, retry, reason)
			return
		}
		defer l.release(key)
		h.ServeHTTP(w, r)
	})
}

// acquire takes a token and an in-flight slot for the client, or says why
// not and after how long to retry.
func (l *limiter) acquire(key string) (retry time.Duration, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	c := l.clients[key]
	if c == nil {
		if !l.makeRoom(now) {
			return time.Second, "the server is tracking too many clients at once"
		}
		c = &client{bucket: rate.NewLimiter(l.rate, l.burst)}
		l.clients[key] = c
	}
	c.seen = now
	if c.inFlight >= l.maxInFlight {
		return time.Second, "more than " + strconv.Itoa(l.maxInFlight) + " requests in flight from this client"
	}
	if res := c.bucket.ReserveN(now, 1); !res.OK() || res.DelayFrom(now) > 0 {
		delay := time.Second
		if res.OK() {
			delay = res.DelayFrom(now)
			res.CancelAt(now)
		}
		return delay, "more than " + strconv.FormatFloat(float64(l.rate), 'f', -1, 64) + " requests per second from this client"
	}
	c.inFlight++
	return 0, ""
}

func (l *limiter) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.clients[key]; c != nil {
		c.inFlight--
		c.seen = l.now()
	}
}

// makeRoom makes sure a new client fits: once a minute it forgets clients
// idle for clientIdle, and when the map is still full it forgets one idle
// client (any one: map order is random). It reports false when every
// remembered client has requests in flight.
func (l *limiter) makeRoom(now time.Time) bool {
	if now.Sub(l.lastSweep) >= clientIdle {
		for k, c := range l.clients {
			if c.inFlight == 0 && now.Sub(c.seen) >= clientIdle {
				delete(l.clients, k)
			}
		}
		l.lastSweep = now
	}
	if len(l.clients) < l.maxClients {
		return true
	}
	for k, c := range l.clients {
		if c.inFlight == 0 {
			delete(l.clients, k)
			return true
		}
	}
	return false
}

// refuse answers 429 with Retry-After in whole seconds and a JSON body like
// the ingest endpoints' errors.
func refuse(w http.ResponseWriter, retry time.Duration, reason string) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(retry.Seconds())))))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusTooManyRequests)
	_ = json.NewEncoder(w).Encode(struct {
		Error  string `json:"error"`
		Reason string `json:"reason"`
	}{"rate_limited", reason})
}
