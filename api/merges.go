package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/segmentio/ksuid"
	"go.uber.org/zap"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/normalize"
)

// maxRedirects bounds the redirects followed: merges go from the greater
// customer ID to the smaller, so chains end, and are short in practice.
const maxRedirects = 32

// followRedirects returns the end of id's chain of merges as the store
// holds it — the customer the chain ends at, with its record — and the IDs
// followed on the way (empty when id is not merged). A survivor the store
// does not know yet (its hand-off is not folded) ends the chain at the
// last customer known. ok is false when id itself is unknown.
func (s *server) followRedirects(ctx context.Context, id string) (end merge.Record, path []string, ok bool, err error) {
	rec, ok, err := s.cfg.Store.Customer(ctx, id)
	if err != nil || !ok {
		return rec, nil, ok, err
	}
	path = []string{}
	for len(path) < maxRedirects {
		to, err := s.cfg.Store.Redirect(ctx, rec.CustomerID)
		if err != nil || to == "" {
			return rec, path, true, err
		}
		next, found, err := s.cfg.Store.Customer(ctx, to)
		if err != nil || !found {
			return rec, path, true, err
		}
		path = append(path, rec.CustomerID)
		rec = next
	}
	return rec, path, true, nil
}

// alsoKnownAsOf lists every customer merged into r, through chains: the
// absorbed customers' own absorptions are read from their records.
func (s *server) alsoKnownAsOf(ctx context.Context, r merge.Record) ([]AlsoKnownAs, error) {
	out := []AlsoKnownAs{}
	type item struct {
		a   merge.Absorption
		via string
	}
	queue := []item{}
	for _, a := range r.Absorbed {
		queue = append(queue, item{a, ""})
	}
	for len(queue) > 0 && len(out) < maxRedirects*4 {
		it := queue[0]
		queue = queue[1:]
		out = append(out, alsoKnownAs(it.a, it.via))
		rec, ok, err := s.cfg.Store.Customer(ctx, it.a.CustomerID)
		if err != nil {
			return nil, err
		}
		if ok {
			for _, a := range rec.Absorbed {
				queue = append(queue, item{a, it.a.CustomerID})
			}
		}
	}
	return out, nil
}

// maxMergeBody bounds a merge or unmerge request's body.
const maxMergeBody = 64 << 10

// readBody decodes a JSON request body strictly into v; on failure it has
// answered.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body: more than %d bytes", limit))
		return false
	case err != nil:
		writeError(w, http.StatusBadRequest, "invalid_request", "body: "+err.Error())
		return false
	}
	if bad := normalize.CheckJSONText(body); bad != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", bad.Error())
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "body: "+err.Error())
		return false
	}
	return true
}

// text checks a required text property; on failure it has answered.
func requiredText(w http.ResponseWriter, name string, v *string, max int, what string) bool {
	var err error
	if *v, err = normalize.Text(name, *v, max); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return false
	}
	if *v == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", name+": "+what)
		return false
	}
	return true
}

// createMerge publishes a MERGE request: keyed by the absorbed customer,
// the greater of the two chains' ends (docs/design.md, Customer merge).
func (s *server) createMerge(w http.ResponseWriter, r *http.Request) {
	var req MergeRequest
	if !readBody(w, r, maxMergeBody, &req) ||
		!requiredText(w, "survivor_id", &req.SurvivorID, 256, "name a customer") ||
		!requiredText(w, "absorbed_id", &req.AbsorbedID, 256, "name a customer") {
		return
	}
	agent, ok := s.decider(w, r, req.DecidedBy)
	if !ok {
		return
	}
	evidence := make([]events.Identity, 0, len(req.Evidence))
	for i, id := range req.Evidence {
		if strings.TrimSpace(id.Kind) == "" || strings.TrimSpace(id.Value) == "" {
			writeError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("evidence[%d]: kind and value are required", i))
			return
		}
		evidence = append(evidence, events.Identity(id))
	}
	// Each side's chain end: a merged customer's survivor is the one to merge.
	ends := [2]string{}
	for i, id := range []string{req.SurvivorID, req.AbsorbedID} {
		rec, _, ok, err := s.followRedirects(r.Context(), id)
		switch {
		case err != nil:
			s.storeFailed(w, err)
			return
		case !ok:
			writeError(w, http.StatusNotFound, "not_found", "no customer "+id)
			return
		case rec.Deleted():
			writeError(w, http.StatusConflict, "deleted", "customer "+rec.CustomerID+" was erased on request")
			return
		}
		ends[i] = rec.CustomerID
	}
	if ends[0] == ends[1] {
		writeError(w, http.StatusConflict, "already_merged", fmt.Sprintf("%s and %s are one customer already (%s)", req.SurvivorID, req.AbsorbedID, ends[0]))
		return
	}
	// Merges go from the greater ID to the smaller, so that two merges
	// racing the other way cannot loop: the smaller ID survives.
	survivor, absorbed := min(ends[0], ends[1]), max(ends[0], ends[1])
	now := s.cfg.Now().UTC()
	ev := &events.CustomerEvent{
		EventID: ksuid.New().String(), CustomerID: absorbed, Channel: events.ChannelAgent,
		Source: "api@" + s.cfg.Instance, Op: events.OpMerge, OccurredAt: now, IngestedAt: now,
		Merge: &events.Merge{SurvivorID: survivor, AbsorbedID: absorbed, Evidence: evidence, DecidedBy: agent},
	}
	if !s.publish(w, r, ev, "merge", "customer.merge", absorbed, map[string]string{"survivor_id": survivor, "merge_event_id": ev.EventID}) {
		return
	}
	writeJSON(w, http.StatusAccepted, MergeAccepted{MergeID: ev.EventID, EventID: ev.EventID, SurvivorID: survivor, AbsorbedID: absorbed})
}

// unmerge publishes an UNMERGE request keyed by the survivor; it never
// writes the store.
func (s *server) unmerge(w http.ResponseWriter, r *http.Request) {
	var req UnmergeRequest
	if !readBody(w, r, maxMergeBody, &req) ||
		!requiredText(w, "merge_id", &req.MergeID, 256, "name the merge to undo (an also_known_as entry's merge_id)") {
		return
	}
	agent, ok := s.decider(w, r, req.DecidedBy)
	if !ok {
		return
	}
	id := r.PathValue("id")
	rec, ok, err := s.cfg.Store.Customer(r.Context(), id)
	switch {
	case err != nil:
		s.storeFailed(w, err)
		return
	case !ok:
		writeError(w, http.StatusNotFound, "not_found", "no customer "+id)
		return
	case rec.MergedInto != nil:
		writeError(w, http.StatusConflict, "survivor_merged",
			fmt.Sprintf("customer %s is merged into %s: unmerge it from %s first", id, rec.MergedInto.CustomerID, rec.MergedInto.CustomerID))
		return
	}
	var absorbed string
	for _, a := range rec.Absorbed {
		if a.MergeID == req.MergeID {
			absorbed = a.CustomerID
		}
	}
	if absorbed == "" {
		writeError(w, http.StatusConflict, "not_merged",
			fmt.Sprintf("customer %s holds no merge %s (see its also_known_as; a merge made a moment ago may not be folded yet)", id, req.MergeID))
		return
	}
	now := s.cfg.Now().UTC()
	ev := &events.CustomerEvent{
		EventID: ksuid.New().String(), CustomerID: id, Channel: events.ChannelAgent,
		Source: "api@" + s.cfg.Instance, Op: events.OpUnmerge, OccurredAt: now, IngestedAt: now,
		Merge: &events.Merge{MergeID: req.MergeID, SurvivorID: id, AbsorbedID: absorbed, DecidedBy: agent},
	}
	if !s.publish(w, r, ev, "unmerge", "customer.unmerge", absorbed, map[string]string{"merge_id": req.MergeID, "unmerge_event_id": ev.EventID}) {
		return
	}
	writeJSON(w, http.StatusAccepted, MergeAccepted{MergeID: req.MergeID, EventID: ev.EventID, SurvivorID: id, AbsorbedID: absorbed})
}

// publish publishes ev, a decision the caller made, with its audit event
// (action on target, with details) when a Recorder is set; on failure it
// has answered.
func (s *server) publish(w http.ResponseWriter, r *http.Request, ev *events.CustomerEvent, what, action, target string, details map[string]string) bool {
	var err error
	if s.cfg.Recorder != nil {
		p, _ := PrincipalOf(r.Context())
		err = s.cfg.Recorder.Record(r.Context(), s.auditEvent(p, action, ev.CustomerID, target, details), ev)
	} else {
		err = s.cfg.Publisher.Publish(r.Context(), ev)
	}
	if err != nil {
		s.cfg.Logger.Warn(what+" not published", zap.String("customer_id", ev.CustomerID), zap.Error(err))
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "unavailable", "Kafka did not acknowledge the "+what+"; retry")
		return false
	}
	return true
}

// decider returns who decides a merge or unmerge: the caller. A body
// naming someone else is refused (answered); an empty one means the caller.
func (s *server) decider(w http.ResponseWriter, r *http.Request, named string) (string, bool) {
	p, _ := PrincipalOf(r.Context())
	named = strings.TrimSpace(named)
	if named != "" && named != p.Name {
		writeError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("decided_by: the decider is the caller, %s; omit decided_by or send that name (got %q)", p.Name, named))
		return "", false
	}
	return p.Name, true
}
