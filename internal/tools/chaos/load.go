package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// attempt is one HTTP request of a logical request (the first send or a
// retry).
type attempt struct {
	Sent, Done time.Time
	Code       int // 0: no answer (connection refused or reset, client timeout)
}

// request is one logical client request: a web chat message, or a call
// transcript with its segments. Each message carries a unique token in its
// text, so a copy stored under another message ID shows up.
type request struct {
	Channel  string // web or phone
	N        int
	Tokens   []string // one per message, in the order the response lists IDs
	body     []byte
	Attempts []attempt
	IDs      []string // message IDs from the 2xx answer
	AckedAt  time.Time
}

func (r *request) acked() bool { return !r.AckedAt.IsZero() }

// target is a producer endpoint.
type target struct {
	url, key string
	inflight atomic.Int64
}

// load sends requests on a fixed schedule, each in its own goroutine,
// whatever the latency (open loop). A request without a 2xx — 503, no
// answer, 5xx — is sent again with the same body after retryDelay, for at
// most retryFor since its first send, as a real client would.
type load struct {
	run                  string
	web, phone           *target
	webRate, phoneRate   float64
	retryDelay, retryFor time.Duration
	client               *http.Client
	start                time.Time
	mu                   sync.Mutex
	reqs                 []*request
	wg                   sync.WaitGroup
	stopOnce             sync.Once
	stopped              chan struct{}
	schedulers           sync.WaitGroup
	webCount, phoneCount int
}

func newLoad(run string, web, phone *target, webRate, phoneRate float64) *load {
	return &load{
		run: run, web: web, phone: phone, webRate: webRate, phoneRate: phoneRate,
		retryDelay: time.Second, retryFor: 120 * time.Second,
		client: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
			MaxIdleConns: 400, MaxIdleConnsPerHost: 200, IdleConnTimeout: 30 * time.Second,
		}},
		stopped: make(chan struct{}),
	}
}

// begin starts the schedules.
func (l *load) begin(ctx context.Context) {
	l.start = time.Now()
	for _, s := range []struct {
		rate float64
		make func() *request
	}{{l.webRate, l.newWeb}, {l.phoneRate, l.newPhone}} {
		if s.rate <= 0 {
			continue
		}
		interval := time.Duration(float64(time.Second) / s.rate)
		l.schedulers.Add(1)
		go func() {
			defer l.schedulers.Done()
			next := time.Now()
			for {
				select {
				case <-ctx.Done():
					return
				case <-l.stopped:
					return
				case <-time.After(time.Until(next)):
				}
				r := s.make()
				l.mu.Lock()
				l.reqs = append(l.reqs, r)
				l.mu.Unlock()
				l.wg.Add(1)
				go func() { defer l.wg.Done(); l.send(ctx, r) }()
				next = next.Add(interval)
			}
		}()
	}
}

// end stops the schedules and waits (at most timeout) for the requests in
// flight and their retries.
func (l *load) end(timeout time.Duration) bool {
	l.stopOnce.Do(func() { close(l.stopped) })
	l.schedulers.Wait()
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

func (l *load) newWeb() *request {
	l.webCount++
	n := l.webCount
	token := fmt.Sprintf("tok-w-%s-%d", l.run, n)
	at := time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00")
	var evs []map[string]any
	if n%10 == 0 { // every tenth visitor also leaves a profile
		evs = append(evs, map[string]any{"type": "profile", "id": fmt.Sprintf("cwp-%s-%d", l.run, n), "occurred_at": at,
			"profile": map[string]any{"name": fmt.Sprintf("压测访客 %d", n), "email": fmt.Sprintf("v%d.%s@chaos.example.com", n, l.run),
				"attributes": map[string]string{"order_no": fmt.Sprintf("SO-%s-%d", l.run, n)}}})
	}
	evs = append(evs, map[string]any{"type": "message", "id": fmt.Sprintf("cwm-%s-%d", l.run, n), "occurred_at": at,
		"conversation_id": fmt.Sprintf("chaos-%s-%d", l.run, n), "content_type": "text",
		"text": fmt.Sprintf("你好，请问订单什么时候发货？ %s 谢谢", token)})
	body, _ := json.Marshal(map[string]any{"visitor_id": fmt.Sprintf("cv-%s-%d", l.run, n), "events": evs})
	return &request{Channel: "web", N: n, Tokens: []string{token}, body: body}
}

func (l *load) newPhone() *request {
	l.phoneCount++
	k := l.phoneCount
	end := time.Now().UTC()
	start := end.Add(-20 * time.Second)
	r := &request{Channel: "phone", N: k}
	var segs []map[string]any
	for i, sp := range []string{"agent", "caller", "agent"} {
		token := fmt.Sprintf("tok-p-%s-%d-%d", l.run, k, i)
		r.Tokens = append(r.Tokens, token)
		segs = append(segs, map[string]any{"speaker": sp, "start_ms": i * 5000, "end_ms": i*5000 + 4000,
			"text": fmt.Sprintf("第 %d 段通话记录 %s 结束", i, token), "confidence": 0.9})
	}
	r.body, _ = json.Marshal(map[string]any{"call_id": fmt.Sprintf("chaos-%s-%d", l.run, k), "direction": "inbound",
		"caller": fmt.Sprintf("13%09d", k), "callee": "4008001234", "agent_id": "agent-7",
		"started_at": start.Format(time.RFC3339Nano), "ended_at": end.Format(time.RFC3339Nano), "segments": segs})
	return r
}

func (l *load) send(ctx context.Context, r *request) {
	t := l.web
	if r.Channel == "phone" {
		t = l.phone
	}
	first := time.Now()
	for {
		a, ids := l.post(ctx, t, r.body)
		l.mu.Lock()
		r.Attempts = append(r.Attempts, a)
		if a.Code/100 == 2 {
			r.IDs, r.AckedAt = ids, a.Done
		}
		l.mu.Unlock()
		retry := a.Code == 0 || a.Code == http.StatusServiceUnavailable || a.Code == http.StatusTooManyRequests ||
			a.Code == http.StatusBadGateway || a.Code == http.StatusGatewayTimeout
		if !retry || time.Since(first) > l.retryFor || ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(l.retryDelay):
		}
	}
}

func (l *load) post(ctx context.Context, t *target, body []byte) (attempt, []string) {
	t.inflight.Add(1)
	defer t.inflight.Add(-1)
	a := attempt{Sent: time.Now()}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		a.Done = time.Now()
		return a, nil
	}
	req.Header.Set("Authorization", "Bearer "+t.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := l.client.Do(req)
	if err != nil {
		a.Done = time.Now()
		return a, nil
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	a.Done = time.Now()
	if err != nil { // the answer was cut off: not an acknowledgement
		return a, nil
	}
	a.Code = resp.StatusCode
	if a.Code/100 != 2 {
		return a, nil
	}
	var acc struct {
		Messages []string `json:"messages"`
	}
	if err := json.Unmarshal(b, &acc); err != nil {
		a.Code = -1 // a 2xx we cannot read is no acknowledgement we can check
		return a, nil
	}
	return a, acc.Messages
}

// snapshot returns copies of the requests so far.
func (l *load) snapshot() []request {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]request, len(l.reqs))
	for i, r := range l.reqs {
		out[i] = *r
		out[i].Attempts = append([]attempt(nil), r.Attempts...)
	}
	return out
}
