package main

import (
	"context"
	"sync"
	"time"
)

// recovery marks the two moments that end a fault — the harness undoes it
// (the window of the fault's traffic figures ends) and the faulty service
// is back (serving again) — and measures, from the second, how long until
// every partition is owned by the group's two live members and until the
// store holds everything the log held at that moment (lag zero for the
// backlog of the fault).
type recovery struct {
	h        *harness
	ctx      context.Context
	ph       *phaseReport
	measures sync.WaitGroup
}

func (h *harness) newRecovery(ctx context.Context, ph *phaseReport) *recovery {
	return &recovery{h: h, ctx: ctx, ph: ph}
}

// undone marks the end of the fault window: the restart is being issued.
func (r *recovery) undone() { r.ph.FaultEnd = time.Now().UTC() }

// back marks the faulty service serving again and starts the measures.
func (r *recovery) back() {
	ph, h, ctx := r.ph, r.h, r.ctx
	ph.BackAt = time.Now().UTC()
	r.measures.Add(2)
	go func() {
		defer r.measures.Done()
		if _, err := waitOwned(ctx, h.adm, h.group, len(h.consumers), nil, h.parts, h.cfg.drainTimeout); err != nil {
			ph.note("partitions after the service was back: %v", err)
			return
		}
		ph.OwnedSeconds = ptr(time.Since(ph.BackAt).Seconds())
	}()
	go func() {
		defer r.measures.Done()
		ends, err := endOffsets(ctx, h.adm, 60*time.Second)
		if err != nil {
			ph.note("backlog when the service was back not measured: %v", err)
			return
		}
		if _, err := waitDrained(ctx, h.pool, h.group, ends, h.cfg.drainTimeout); err != nil {
			ph.note("backlog when the service was back not drained: %v", err)
			return
		}
		ph.DrainSeconds = ptr(time.Since(ph.BackAt).Seconds())
	}()
}

// wait waits for the measures back started.
func (r *recovery) wait() { r.measures.Wait() }
