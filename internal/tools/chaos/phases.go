package main

import (
	"context"
	"fmt"
	"log"
	"strconv"
	"sync"
	"time"
)

// phase runs one fault under the load: a baseline, the fault (until the
// harness undoes it), a recovery, then the check against the store.
func (h *harness) phase(ctx context.Context, fault string) error {
	ph := &phaseReport{Fault: fault, Start: time.Now().UTC()}
	h.report.Phases = append(h.report.Phases, ph)
	log.Printf("=== %s: baseline %s", fault, h.cfg.baseline)
	if err := sleep(ctx, h.cfg.baseline); err != nil {
		return err
	}
	ph.FaultStart = time.Now().UTC()
	rec := h.newRecovery(ctx, ph)
	var err error
	switch fault {
	case "broker-kill":
		err = h.brokerKill(ctx, ph, rec)
	case "rolling-restart":
		err = h.rollingRestart(ctx, ph, rec)
	case "member-restart":
		err = h.memberRestarts(ctx, ph, rec)
	case "materializer-kill":
		err = h.memberKills(ctx, ph, rec)
	case "producer-kill":
		err = h.producerKills(ctx, ph, rec)
	case "postgres-stop":
		err = h.postgresStop(ctx, ph, rec)
	case "all-brokers-stop":
		err = h.allBrokersStop(ctx, ph, rec)
	}
	if err != nil {
		return err
	}
	log.Printf("%s: fault over after %.1f s; recovery %s", fault, ph.FaultEnd.Sub(ph.FaultStart).Seconds(), h.cfg.recovery)
	if err := sleep(ctx, h.cfg.recovery); err != nil {
		return err
	}
	ph.End = time.Now().UTC()
	rec.wait()
	return h.check(ctx, ph)
}

// check waits until the store holds everything the log holds now and looks
// up every message acknowledged so far.
func (h *harness) check(ctx context.Context, ph *phaseReport) error {
	reqs := h.load.snapshot()
	h.checked = append(h.checked, make([]bool, len(reqs)-len(h.checked))...)
	ends, err := endOffsets(ctx, h.adm, 60*time.Second)
	if err != nil {
		return err
	}
	d, err := waitDrained(ctx, h.pool, h.group, ends, h.cfg.drainTimeout)
	if err != nil {
		ph.Problems = append(ph.Problems, err.Error())
		return err
	}
	ph.CheckLagSeconds = d.Seconds()
	// The messages acknowledged since the previous check (each checked in
	// one phase; the final check looks at all of them again).
	var acked []request
	for i, r := range reqs {
		if r.acked() && !h.checked[i] {
			acked = append(acked, r)
			h.checked[i] = true
		}
	}
	var lost []lostMessage
	if ph.Acked, lost, err = checkAcked(ctx, h.pool, acked); err != nil {
		return err
	}
	ph.Lost = lost
	doubles, err := findDoubles(ctx, h.pool)
	if err != nil {
		return err
	}
	// Doubles are counted once, in the first check that sees them.
	for _, d := range doubles {
		if !h.report.seenDouble(d.Token) {
			ph.Doubled = append(ph.Doubled, d)
		}
	}
	ph.Stats = windowStats(reqs, ph)
	log.Printf("%s: %d messages acknowledged in the phase, %d lost, %d doubled; fault window: %d attempts, %.2f%% 2xx",
		ph.Fault, ph.Acked, len(ph.Lost), len(ph.Doubled), ph.Stats.Sent, ph.Stats.Share2xx)
	return nil
}

// brokerKill kills the broker coordinating the group (SIGKILL) and starts
// it again after brokerDown.
func (h *harness) brokerKill(ctx context.Context, ph *phaseReport, rec *recovery) error {
	node := 2
	if _, _, _, coord, err := groupOwnership(ctx, h.adm, h.group); err == nil && coord >= 1 && coord <= 3 {
		node = int(coord)
	}
	ph.note("killed node %d (the group's coordinator) with SIGKILL; started it again after %s", node, h.cfg.brokerDown)
	if _, err := h.kafka(ctx, "stop-node", strconv.Itoa(node), "--kill"); err != nil {
		return err
	}
	ph.FaultStart = time.Now().UTC()
	if err := sleep(ctx, h.cfg.brokerDown); err != nil {
		return err
	}
	rec.undone()
	t := time.Now()
	if _, err := h.kafka(ctx, "start-node", strconv.Itoa(node)); err != nil {
		return err
	}
	rec.back()
	ph.measure("node serving again after start (s)", time.Since(t).Seconds())
	return nil
}

// rollingRestart stops each node with SIGTERM in turn and waits until it
// serves again before the next.
func (h *harness) rollingRestart(ctx context.Context, ph *phaseReport, rec *recovery) error {
	for n := 1; n <= 3; n++ {
		t := time.Now()
		if _, err := h.kafka(ctx, "stop-node", strconv.Itoa(n)); err != nil {
			return err
		}
		stopped := time.Since(t)
		if _, err := h.kafka(ctx, "start-node", strconv.Itoa(n)); err != nil {
			return err
		}
		ph.note("node %d: stopped in %.1f s, serving again %.1f s later", n, stopped.Seconds(), time.Since(t).Seconds()-stopped.Seconds())
	}
	rec.undone()
	rec.back()
	return nil
}

// memberKills kills a materializer member with SIGKILL memberKills times,
// alternating members, restarting it a second later each time, and measures
// how long until every partition is owned by two live members again and
// until the backlog at the restart is in the store.
func (h *harness) memberKills(ctx context.Context, ph *phaseReport, rec *recovery) error {
	var measures sync.WaitGroup
	for i := 0; i < h.cfg.memberKills; i++ {
		p := h.consumers[i%len(h.consumers)]
		_, before, _, _, _ := groupOwnership(ctx, h.adm, h.group)
		p.kill()
		killed := time.Now()
		if err := sleep(ctx, time.Second); err != nil {
			return err
		}
		if err := h.restart(ctx, p); err != nil {
			return err
		}
		restarted := time.Now()
		last := i == h.cfg.memberKills-1
		if last {
			rec.undone()
			rec.back()
		}
		window := h.cfg.killEvery - time.Since(killed)
		if last {
			window = h.cfg.drainTimeout
		}
		k := &memberStop{Member: p.name, Signal: "SIGKILL", StoppedAt: killed.UTC(), RestartedAt: restarted.UTC()}
		ph.MemberStops = append(ph.MemberStops, k)
		ends, _ := endOffsets(ctx, h.adm, 10*time.Second)
		measures.Add(2)
		go func() {
			defer measures.Done()
			if d, err := waitOwned(ctx, h.adm, h.group, 2, before, h.parts, window); err == nil {
				k.OwnedSeconds = ptr(d.Seconds())
			}
		}()
		go func() {
			defer measures.Done()
			if ends == nil {
				return
			}
			if d, err := waitDrained(ctx, h.pool, h.group, ends, window); err == nil {
				k.DrainedSeconds = ptr(d.Seconds())
			}
		}()
		k.WindowSeconds = window.Seconds()
		if !last {
			if err := sleep(ctx, time.Until(killed.Add(h.cfg.killEvery))); err != nil {
				return err
			}
		}
	}
	measures.Wait()
	return nil
}

// memberRestarts restarts each materializer member in turn as a rolling
// deploy does: SIGTERM, wait until it exited, start it again. It measures
// how long until the survivor owns every partition after the stop, and
// until both members own their share again after the restart.
func (h *harness) memberRestarts(ctx context.Context, ph *phaseReport, rec *recovery) error {
	for i, p := range h.consumers {
		_, before, _, _, _ := groupOwnership(ctx, h.adm, h.group)
		stopped := time.Now()
		p.terminate()
		k := &memberStop{Member: p.name, Signal: "SIGTERM", StoppedAt: stopped.UTC(), WindowSeconds: h.cfg.killEvery.Seconds()}
		ph.MemberStops = append(ph.MemberStops, k)
		if _, err := waitOwned(ctx, h.adm, h.group, len(h.consumers)-1, nil, h.parts, h.cfg.killEvery); err == nil {
			k.TakenOverSeconds = ptr(time.Since(stopped).Seconds())
		}
		last := i == len(h.consumers)-1
		if last {
			rec.undone()
		}
		if err := h.restart(ctx, p); err != nil {
			return err
		}
		restarted := time.Now()
		k.RestartedAt = restarted.UTC()
		if last {
			rec.back()
		}
		if _, err := waitOwned(ctx, h.adm, h.group, len(h.consumers), before, h.parts, h.cfg.killEvery); err == nil {
			k.OwnedSeconds = ptr(time.Since(restarted).Seconds())
		}
	}
	return nil
}

// producerKills kills a producer with SIGKILL while requests are in flight
// (web, phone, web, …), restarting it two seconds later.
func (h *harness) producerKills(ctx context.Context, ph *phaseReport, rec *recovery) error {
	for i := 0; i < h.cfg.producerKills; i++ {
		ch, t := "web", h.load.web
		if i%2 == 1 {
			ch, t = "phone", h.load.phone
		}
		p := h.procs["produce-"+ch]
		start := time.Now()
		for t.inflight.Load() == 0 && time.Since(start) < 5*time.Second {
			time.Sleep(time.Millisecond)
		}
		inflight := t.inflight.Load()
		p.kill()
		killed := time.Now()
		if i == 0 {
			ph.FaultStart = killed.UTC()
		}
		if err := sleep(ctx, 2*time.Second); err != nil {
			return err
		}
		last := i == h.cfg.producerKills-1
		if last {
			rec.undone()
		}
		if err := h.restart(ctx, p); err != nil {
			return err
		}
		if last {
			rec.back()
		}
		ph.note("killed produce-%s with %d requests in flight; ready again %.1f s after the kill", ch, inflight, time.Since(killed).Seconds())
		if i < h.cfg.producerKills-1 {
			if err := sleep(ctx, time.Until(killed.Add(h.cfg.killEvery))); err != nil {
				return err
			}
		}
	}
	return nil
}

// postgresStop stops PostgreSQL for outage and starts it again.
func (h *harness) postgresStop(ctx context.Context, ph *phaseReport, rec *recovery) error {
	if err := h.postgres(ctx, "stop"); err != nil {
		return err
	}
	ph.FaultStart = time.Now().UTC()
	if err := sleep(ctx, h.cfg.outage); err != nil {
		return err
	}
	rec.undone()
	if err := h.postgres(ctx, "up"); err != nil {
		return err
	}
	rec.back()
	ph.note("PostgreSQL stopped (pg_ctl stop -m fast) for %s, then started again", h.cfg.outage)
	return nil
}

// allBrokersStop stops every broker (SIGTERM), keeps them down for outage,
// then starts the whole cluster again. Every request sent while no broker
// runs must get a 503, never a 2xx.
func (h *harness) allBrokersStop(ctx context.Context, ph *phaseReport, rec *recovery) error {
	t := time.Now()
	if _, err := h.kafka(ctx, "stop-all"); err != nil {
		return err
	}
	ph.DownStart = ptr(time.Now().UTC())
	ph.note("stop-all took %.1f s", time.Since(t).Seconds())
	if err := sleep(ctx, h.cfg.outage); err != nil {
		return err
	}
	ph.DownEnd = ptr(time.Now().UTC())
	rec.undone()
	t = time.Now()
	if _, err := h.kafka(ctx, "start-all"); err != nil {
		return err
	}
	rec.back()
	ph.note("every broker down for %s; start-all took %.1f s until all three served", h.cfg.outage, time.Since(t).Seconds())
	return nil
}

func ptr[T any](v T) *T { return &v }

func (ph *phaseReport) note(format string, args ...any) {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	ph.Notes = append(ph.Notes, fmt.Sprintf(format, args...))
}

func (ph *phaseReport) measure(name string, v float64) {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	ph.Measures = append(ph.Measures, measure{Name: name, Value: v})
}
