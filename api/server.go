package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/ksuid"
	"go.uber.org/zap"

	"github.com/omnisync/omnisync/consumers/merge"
	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/normalize"
)

// Publisher publishes a customer event and returns once Kafka
// acknowledged it.
type Publisher interface {
	Publish(ctx context.Context, ev *events.CustomerEvent) error
}

// Config configures the API.
type Config struct {
	Store     store.Reader
	Publisher Publisher // takes the RESOLVE, MERGE and UNMERGE requests when Recorder is nil
	// Recorder, when set, takes every decision on record: a RESOLVE event
	// together with its audit event, and the audit events of account,
	// token and session changes (which need it).
	Recorder Recorder
	Status   *Status // answers /api/v1/sync/status
	// AdminToken is the bootstrap admin's bearer token (principal
	// bootstrap-admin, role admin).
	AdminToken string
	// Accounts keeps the agents' accounts, tokens and sessions; nil
	// leaves the admin token the only credential.
	Accounts store.Accounts
	// Audit answers GET /api/v1/audit; nil: 404.
	Audit AuditReader
	// Live answers GET /api/v1/live; nil: 404.
	Live *Live
	// SessionTTL is how long a browser session lasts; default
	// DefaultSessionTTL.
	SessionTTL time.Duration
	// SecureCookies sets Secure on the session cookies also when the
	// request did not come over TLS (behind a TLS-terminating proxy).
	SecureCookies bool
	Logger        *zap.Logger
	// Instance names this server in the source of the events it
	// publishes (api@<instance>).
	Instance string
	Now      func() time.Time // default time.Now
}

// Paging limits.
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

// Handler returns the /api/v1 routes.
func Handler(cfg Config) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	s := &server{cfg: cfg, fails: newFailures(addressFailures, failureRefill), accountFails: newFailures(accountFailures, failureRefill)}
	mux := http.NewServeMux()
	for _, rt := range routes {
		mux.HandleFunc(rt.pattern, s.guard(rt.role, rt.handle))
	}
	// Unknown paths need credentials too, so they tell nothing to others.
	mux.HandleFunc("/api/", s.guard(RoleViewer, func(_ *server, w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such API path: "+r.Method+" "+r.URL.Path)
	}))
	return mux
}

// routes are the API's endpoints and the least role each needs (checked
// before anything else; "" is public); api/openapi.yaml documents each (a
// test checks).
var routes = []struct {
	pattern string
	role    string
	handle  func(*server, http.ResponseWriter, *http.Request)
}{
	{"GET /api/v1/customers", RoleViewer, (*server).searchCustomers},
	{"GET /api/v1/customers/{id}", RoleViewer, (*server).customer},
	{"GET /api/v1/customers/{id}/timeline", RoleViewer, (*server).timeline},
	{"GET /api/v1/conflicts", RoleViewer, (*server).conflicts},
	{"GET /api/v1/conflicts/{id}", RoleViewer, (*server).conflict},
	{"POST /api/v1/conflicts/{id}/resolve", RoleAgent, (*server).resolve},
	{"POST /api/v1/customers/{id}/unmerge", RoleAgent, (*server).unmerge},
	{"POST /api/v1/merges", RoleAgent, (*server).createMerge},
	{"GET /api/v1/sync/status", RoleViewer, (*server).syncStatus},
	// Accounts and sessions (agents.go).
	{"POST /api/v1/session", "", (*server).signIn},
	{"GET /api/v1/session", RoleViewer, (*server).whoami},
	{"DELETE /api/v1/session", RoleViewer, (*server).signOut},
	{"GET /api/v1/agents", RoleAdmin, (*server).listAgents},
	{"POST /api/v1/agents", RoleAdmin, (*server).addAgent},
	{"DELETE /api/v1/agents/{name}", RoleAdmin, (*server).disableAgent},
	{"PUT /api/v1/agents/{name}/password", RoleAdmin, (*server).setPassword},
	{"POST /api/v1/agents/{name}/tokens", RoleAdmin, (*server).addToken},
	{"DELETE /api/v1/agents/{name}/tokens/{id}", RoleAdmin, (*server).revokeToken},
	// The audit trail (audit.go) and live push (live.go).
	{"GET /api/v1/audit", RoleAdmin, (*server).audit},
	{"GET /api/v1/live", RoleViewer, (*server).live},
}

// Failed sign-ins and refused credentials allowed before 429: per client
// address and per account, a burst, then one per failureRefill.
const (
	addressFailures = 30
	accountFailures = 5
	failureRefill   = 10 * time.Second
)

type server struct {
	cfg          Config
	fails        *failures // per client address
	accountFails *failures // per account name (sign-in)
}

// page reads limit and cursor.
func page(r *http.Request) (*store.Cursor, int, error) {
	limit := DefaultLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxLimit {
			return nil, 0, fmt.Errorf("limit: want a number from 1 to %d, got %q", MaxLimit, v)
		}
		limit = n
	}
	after, err := decodeCursor(r.URL.Query().Get("cursor"))
	return after, limit, err
}

// pageOf builds a Page; a full page gets the cursor of its last item.
func pageOf[S, T any](items []S, limit int, conv func(S) T, cursor func(S) store.Cursor) Page[T] {
	p := Page[T]{Items: make([]T, 0, len(items))}
	for _, it := range items {
		p.Items = append(p.Items, conv(it))
	}
	if len(items) == limit && limit > 0 {
		p.NextCursor = encodeCursor(cursor(items[len(items)-1]))
	}
	return p
}

func (s *server) searchCustomers(w http.ResponseWriter, r *http.Request) {
	after, limit, err := page(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	recs, err := s.cfg.Store.SearchCustomers(r.Context(), r.URL.Query().Get("q"), after, limit)
	if err != nil {
		s.storeFailed(w, err)
		return
	}
	ids := make([]string, len(recs))
	for i, rec := range recs {
		ids[i] = rec.CustomerID
	}
	channels, err := s.cfg.Store.MessageChannels(r.Context(), ids)
	if err != nil {
		s.storeFailed(w, err)
		return
	}
	summary := func(rec merge.Record) CustomerSummary { return summaryOf(rec, channels[rec.CustomerID]) }
	writeJSON(w, http.StatusOK, pageOf(recs, limit, summary, func(c merge.Record) store.Cursor {
		return store.Cursor{At: c.UpdatedAt.UnixMilli(), ID: c.CustomerID}
	}))
}

// customer answers the unified view; for a customer merged into another
// it answers the survivor's, marked redirected_from.
func (s *server) customer(w http.ResponseWriter, r *http.Request) {
	rec, path, ok, err := s.followRedirects(r.Context(), r.PathValue("id"))
	var channels map[string][]events.Channel
	var aka []AlsoKnownAs
	if err == nil && ok {
		channels, err = s.cfg.Store.MessageChannels(r.Context(), []string{rec.CustomerID})
	}
	if err == nil && ok {
		aka, err = s.alsoKnownAsOf(r.Context(), rec)
	}
	switch {
	case err != nil:
		s.storeFailed(w, err)
	case !ok:
		writeError(w, http.StatusNotFound, "not_found", "no customer "+r.PathValue("id"))
	default:
		c := customerOf(rec, channels[rec.CustomerID])
		c.AlsoKnownAs = aka
		if len(path) > 0 {
			c.RedirectedFrom, c.RedirectPath = &path[0], path
		}
		writeJSON(w, http.StatusOK, c)
	}
}

func (s *server) timeline(w http.ResponseWriter, r *http.Request) {
	after, limit, err := page(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	// The timeline of a merged customer is its survivor's, which holds
	// the messages of every customer absorbed.
	rec, _, ok, err := s.followRedirects(r.Context(), r.PathValue("id"))
	id := r.PathValue("id")
	if ok {
		id = rec.CustomerID
	}
	var msgs []events.MessageEvent
	if err == nil {
		msgs, err = s.cfg.Store.Timeline(r.Context(), id, after, limit)
	}
	if err != nil {
		s.storeFailed(w, err)
		return
	}
	writeJSON(w, http.StatusOK, pageOf(msgs, limit, messageOf, func(m events.MessageEvent) store.Cursor {
		return store.Cursor{At: m.OccurredAt.UnixMilli(), ID: m.MessageID}
	}))
}

// statuses maps the status query parameter to conflict statuses.
var statuses = map[string]events.ConflictStatus{
	"open": events.ConflictOpen, "kept_current": events.ConflictKeptCurrent,
	"took_candidate": events.ConflictTookCandidate, "set_value": events.ConflictSetValue, "all": "",
}

func (s *server) conflicts(w http.ResponseWriter, r *http.Request) {
	after, limit, err := page(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	name := strings.ToLower(r.URL.Query().Get("status"))
	if name == "" {
		name = "open"
	}
	status, ok := statuses[name]
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid_request", "status: want open, kept_current, took_candidate, set_value or all, got "+strconv.Quote(name))
		return
	}
	list, err := s.cfg.Store.Conflicts(r.Context(), status, after, limit)
	if err != nil {
		s.storeFailed(w, err)
		return
	}
	p := pageOf(list, limit, conflictOf, func(c store.Conflict) store.Cursor {
		return store.Cursor{At: c.DetectedAt.UnixMilli(), ID: c.ID}
	})
	names := map[string]*string{}
	for i := range p.Items {
		id := p.Items[i].CustomerID
		if _, ok := names[id]; !ok {
			rec, _, err := s.cfg.Store.Customer(r.Context(), id)
			if err != nil {
				s.storeFailed(w, err)
				return
			}
			names[id] = textField(rec, "name")
		}
		p.Items[i].CustomerName = names[id]
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *server) conflict(w http.ResponseWriter, r *http.Request) {
	c, ok, err := s.cfg.Store.Conflict(r.Context(), r.PathValue("id"))
	var rec merge.Record
	if err == nil && ok {
		rec, _, err = s.cfg.Store.Customer(r.Context(), c.CustomerID)
	}
	switch {
	case err != nil:
		s.storeFailed(w, err)
	case !ok:
		writeError(w, http.StatusNotFound, "not_found", "no conflict "+r.PathValue("id"))
	default:
		out := conflictOf(c)
		out.CustomerName = textField(rec, "name")
		writeJSON(w, http.StatusOK, out)
	}
}

// maxResolveBody bounds a resolve request's body.
const maxResolveBody = 64 << 10

// choices maps a resolve request's choice to the event's.
var choices = map[string]events.ResolutionChoice{
	"keep_current": events.ChoiceKeepCurrent, "take_candidate": events.ChoiceTakeCandidate, "set_value": events.ChoiceSetValue,
}

func (s *server) resolve(w http.ResponseWriter, r *http.Request) {
	var req ResolveRequest
	if !readBody(w, r, maxResolveBody, &req) {
		return
	}
	var err error
	if req.ResolvedBy, err = normalize.Text("resolved_by", req.ResolvedBy, 128); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}

	choice, ok := choices[strings.ToLower(req.Choice)]
	switch {
	case !ok:
		writeError(w, http.StatusBadRequest, "invalid_request", "choice: want keep_current, take_candidate or set_value, got "+strconv.Quote(req.Choice))
		return
	case choice == events.ChoiceSetValue && (req.Value == nil || strings.TrimSpace(*req.Value) == ""):
		writeError(w, http.StatusBadRequest, "invalid_request", "value: set_value needs the new value")
		return
	case choice != events.ChoiceSetValue && req.Value != nil:
		writeError(w, http.StatusBadRequest, "invalid_request", "value: only set_value takes a value")
		return
	}
	// The resolver is the caller; a body naming someone else is refused.
	p, _ := PrincipalOf(r.Context())
	if req.ResolvedBy != "" && req.ResolvedBy != p.Name {
		writeError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("resolved_by: the resolver is the caller, %s; omit resolved_by or send that name (got %q)", p.Name, req.ResolvedBy))
		return
	}
	c, ok, err := s.cfg.Store.Conflict(r.Context(), r.PathValue("id"))
	if err == nil && ok && req.Value != nil {
		if req.Value, err = normalizedValue(c.Field, *req.Value); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
			return
		}
	}
	switch {
	case err != nil:
		s.storeFailed(w, err)
		return
	case !ok:
		writeError(w, http.StatusNotFound, "not_found", "no conflict "+r.PathValue("id"))
		return
	case !c.Open():
		writeError(w, http.StatusConflict, "already_resolved", fmt.Sprintf("conflict %s is %s", c.ID, c.Status))
		return
	}
	var mergeReq *events.CustomerEvent
	if c.Field == merge.SuggestionField {
		if choice == events.ChoiceSetValue {
			writeError(w, http.StatusBadRequest, "invalid_request", "choice: a merge suggestion is confirmed (take_candidate) or rejected (keep_current)")
			return
		}
		if choice == events.ChoiceTakeCandidate {
			if mergeReq, err = s.mergeRequest(r.Context(), c, p.Name); err != nil {
				s.storeFailed(w, err)
				return
			}
		}
	}
	if mergeReq != nil {
		// The MERGE first: a retry after a failed RESOLVE publishes the
		// same request again (its ID is derived from the suggestion's),
		// which the fold absorbs.
		if err := s.cfg.Publisher.Publish(r.Context(), mergeReq); err != nil {
			s.cfg.Logger.Warn("merge request not published", zap.String("conflict_id", c.ID), zap.Error(err))
			w.Header().Set("Retry-After", "5")
			writeError(w, http.StatusServiceUnavailable, "unavailable", "Kafka did not acknowledge the merge request; retry")
			return
		}
	}
	now := s.cfg.Now().UTC()
	ev := &events.CustomerEvent{
		EventID: ksuid.New().String(), CustomerID: c.CustomerID, Channel: events.ChannelAgent,
		Source: "api@" + s.cfg.Instance, Op: events.OpResolve, OccurredAt: now, IngestedAt: now,
		Resolution: &events.Resolution{ConflictID: c.ID, Field: c.Field, Choice: choice, Value: req.Value, ResolvedBy: p.Name},
	}
	details := map[string]string{"field": c.Field, "choice": string(choice), "resolve_event_id": ev.EventID}
	if mergeReq != nil {
		details["merge_event_id"] = mergeReq.EventID
	}
	if !s.publish(w, r, ev, "resolution", "conflict.resolve", c.ID, details) {
		return
	}
	out := ResolveAccepted{ConflictID: c.ID, EventID: ev.EventID, CustomerID: c.CustomerID}
	if mergeReq != nil {
		out.MergeEventID = mergeReq.EventID
	}
	writeJSON(w, http.StatusAccepted, out)
}

// mergeRequest builds the MERGE request a confirmed merge suggestion
// makes: of the two customers' survivors (each followed through its
// merges), the greater into the smaller; nil when they are already one.
// Its ID is derived from the suggestion's, so a retried confirmation
// requests the same merge.
func (s *server) mergeRequest(ctx context.Context, c store.Conflict, agent string) (*events.CustomerEvent, error) {
	sg, ok := merge.SuggestionOf(c.Conflict)
	if !ok {
		return nil, nil
	}
	a, err := s.survivor(ctx, c.CustomerID)
	if err != nil {
		return nil, err
	}
	b, err := s.survivor(ctx, sg.CustomerID)
	if err != nil || a == b {
		return nil, err
	}
	survivor, absorbed := min(a, b), max(a, b)
	evidence := make([]events.Identity, 0, len(sg.Evidence))
	for _, e := range sg.Evidence {
		evidence = append(evidence, events.Identity(e))
	}
	now := s.cfg.Now().UTC()
	sum := sha256.Sum256([]byte("confirm\x00" + c.ID + "\x00" + absorbed + "\x00" + survivor))
	id, err := ksuid.FromParts(c.DetectedAt, sum[:16])
	if err != nil {
		return nil, err
	}
	return &events.CustomerEvent{
		EventID: id.String(), CustomerID: absorbed, Channel: events.ChannelAgent, Source: "api@" + s.cfg.Instance,
		Op: events.OpMerge, OccurredAt: now, IngestedAt: now,
		Merge: &events.Merge{SurvivorID: survivor, AbsorbedID: absorbed, Evidence: evidence, DecidedBy: agent},
	}, nil
}

// maxChain bounds the merges followed from one customer.
const maxChain = 64

// survivor follows a customer's merges to the end of the chain.
func (s *server) survivor(ctx context.Context, id string) (string, error) {
	for range maxChain {
		next, err := s.cfg.Store.Redirect(ctx, id)
		if err != nil || next == "" || next == id {
			return id, err
		}
		id = next
	}
	return id, nil
}

// normalizedValue checks a set_value value for field and brings phone
// numbers and e-mail addresses to the form the channels store them in, so
// key fields stay comparable.
func normalizedValue(field, value string) (*string, error) {
	var err error
	switch field {
	case "phone":
		value, err = normalize.Phone("value", value)
	case "email":
		value, err = normalize.Email("value", value)
	}
	if err != nil {
		return nil, err // names the field and the problem
	}
	if _, err := merge.ParseValue(field, &value); err != nil {
		return nil, fmt.Errorf("value: %w", err)
	}
	return &value, nil
}

func (s *server) syncStatus(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Status == nil {
		writeError(w, http.StatusNotFound, "not_found", "this server reports no sync status")
		return
	}
	writeJSON(w, http.StatusOK, s.cfg.Status.Report(r.Context()))
}

func (s *server) storeFailed(w http.ResponseWriter, err error) {
	if errors.Is(err, context.Canceled) {
		return // the caller went away
	}
	s.cfg.Logger.Error("store query failed", zap.Error(err))
	w.Header().Set("Retry-After", "5")
	writeError(w, http.StatusServiceUnavailable, "unavailable", "the store did not answer; retry")
}

func writeError(w http.ResponseWriter, code int, kind, reason string) {
	writeJSON(w, code, Error{Error: kind, Reason: reason})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
