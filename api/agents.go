package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"time"

	"github.com/segmentio/ksuid"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/pkg/events"
)

// Agent is an account as the API shows it.
type Agent struct {
	Name        string    `json:"name"`
	Role        string    `json:"role"`
	Disabled    bool      `json:"disabled"`
	HasPassword bool      `json:"has_password"`
	CreatedAt   time.Time `json:"created_at"`
}

// NewAgent is the body of POST /api/v1/agents.
type NewAgent struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// Password is optional: without one the account signs in with its
	// token only (scripts).
	Password string `json:"password,omitempty"`
}

// AgentCreated answers POST /api/v1/agents: Token is shown this once.
type AgentCreated struct {
	Name    string `json:"name"`
	Role    string `json:"role"`
	Token   string `json:"token"`
	TokenID string `json:"token_id"`
}

// TokenCreated answers POST /api/v1/agents/{name}/tokens.
type TokenCreated struct {
	Name    string `json:"name"`
	Token   string `json:"token"`
	TokenID string `json:"token_id"`
}

// Token describes an API token (never its secret).
type Token struct {
	Name      string     `json:"name"`
	TokenID   string     `json:"token_id"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at"`
}

// SignIn is the body of POST /api/v1/session.
type SignIn struct {
	Name     string `json:"name"`
	Password string `json:"password"`
}

// Session describes the caller (GET and POST /api/v1/session).
type Session struct {
	Name string `json:"name"`
	Role string `json:"role"`
	Via  string `json:"via"`
	// CSRFToken is set when a session starts: the console sends it in
	// X-CSRF-Token with every state-changing call (it is also in the
	// omnisync_csrf cookie).
	CSRFToken string `json:"csrf_token,omitempty"`
}

// Password is the body of PUT /api/v1/agents/{name}/password.
type Password struct {
	Password string `json:"password"`
}

var accountName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

func agentOf(a store.Account) Agent {
	return Agent{Name: a.Name, Role: a.Role, Disabled: a.Disabled, HasPassword: a.PasswordHash != "", CreatedAt: ms(a.CreatedAt)}
}

// decodeBody reads a small JSON body into v, refusing unknown fields.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 8<<10))
	if err == nil {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		err = dec.Decode(v)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "body: "+err.Error())
		return false
	}
	return true
}

// needAccounts answers 404 when the server keeps no accounts.
func (s *server) needAccounts(w http.ResponseWriter) bool {
	if s.cfg.Accounts == nil || s.cfg.Recorder == nil {
		writeError(w, http.StatusNotFound, "not_found", "this server keeps no accounts")
		return false
	}
	return true
}

// auditEvent is an audit event of the caller p.
func (s *server) auditEvent(p Principal, action, customer, target string, details map[string]string) *events.AuditEvent {
	if details == nil {
		details = map[string]string{}
	}
	return &events.AuditEvent{
		EventID: ksuid.New().String(), OccurredAt: s.cfg.Now().UTC(), Actor: p.Name, ActorRole: p.Role, Action: action,
		CustomerID: customer, Target: target, Details: details, Source: "api@" + s.cfg.Instance,
	}
}

// record puts an audit event in the log before the change it records
// takes effect; false (answered 503) when Kafka did not acknowledge it.
func (s *server) record(w http.ResponseWriter, r *http.Request, action, target string, details map[string]string) bool {
	p, _ := PrincipalOf(r.Context())
	if err := s.cfg.Recorder.Record(r.Context(), s.auditEvent(p, action, "", target, details)); err != nil {
		s.cfg.Logger.Warn("audit event not published", zap.String("action", action), zap.String("target", target), zap.Error(err))
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "unavailable", "Kafka did not acknowledge the audit record; nothing changed, retry")
		return false
	}
	return true
}

func (s *server) signIn(w http.ResponseWriter, r *http.Request) {
	if !s.needAccounts(w) {
		return
	}
	var req SignIn
	if !decodeBody(w, r, &req) {
		return
	}
	now := s.cfg.Now()
	addr, account := clientAddr(r), "account:"+req.Name
	if wait, blocked := s.fails.blocked(now, addr); blocked {
		s.tooManyFailures(w, wait)
		return
	}
	if wait, blocked := s.accountFails.blocked(now, account); blocked {
		s.tooManyFailures(w, wait)
		return
	}
	a, ok, err := s.cfg.Accounts.Account(r.Context(), req.Name)
	if err != nil {
		s.storeFailed(w, err)
		return
	}
	hash := dummyHash
	if ok && a.PasswordHash != "" {
		hash = []byte(a.PasswordHash)
	}
	// Always one bcrypt comparison, so a wrong name, a disabled account and
	// a wrong password take as long.
	wrong := bcrypt.CompareHashAndPassword(hash, []byte(req.Password)) != nil
	if wrong || !ok || a.Disabled || a.PasswordHash == "" {
		s.fails.failed(now, addr)
		s.accountFails.failed(now, account)
		s.cfg.Logger.Info("sign-in refused", zap.String("name", req.Name), zap.String("addr", addr))
		writeError(w, http.StatusUnauthorized, "unauthorized", errBadCredentials.Error())
		return
	}
	p := Principal{Name: a.Name, Role: a.Role, Via: string(store.KindSession)}
	r = r.WithContext(withPrincipal(r.Context(), p))
	c, cookie := newCredential(sessionPrefix, store.KindSession, a.Name, now)
	c.ExpiresAt = now.Add(s.cfg.SessionTTL)
	csrf := randomSecret()
	c.CSRFHash = hashSecret(csrf)
	if !s.record(w, r, "session.create", a.Name, map[string]string{"session_id": c.ID}) {
		return
	}
	if err := s.cfg.Accounts.AddCredential(r.Context(), c); err != nil {
		s.storeFailed(w, err)
		return
	}
	secure := r.TLS != nil || s.cfg.SecureCookies
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: cookie, Path: "/", Expires: c.ExpiresAt, HttpOnly: true, Secure: secure, SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: CSRFCookie, Value: csrf, Path: "/", Expires: c.ExpiresAt, Secure: secure, SameSite: http.SameSiteStrictMode})
	writeJSON(w, http.StatusCreated, Session{Name: a.Name, Role: a.Role, Via: p.Via, CSRFToken: csrf})
}

func (s *server) whoami(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalOf(r.Context())
	writeJSON(w, http.StatusOK, Session{Name: p.Name, Role: p.Role, Via: p.Via})
}

func (s *server) signOut(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalOf(r.Context())
	if p.Via != string(store.KindSession) {
		writeError(w, http.StatusBadRequest, "invalid_request", "not signed in with a session: there is nothing to sign out of (revoke a token with DELETE /api/v1/agents/{name}/tokens/{id})")
		return
	}
	if !s.record(w, r, "session.delete", p.Name, map[string]string{"session_id": p.Credential}) {
		return
	}
	if err := s.cfg.Accounts.RevokeCredential(r.Context(), p.Credential, s.cfg.Now()); err != nil {
		s.storeFailed(w, err)
		return
	}
	for _, name := range []string{SessionCookie, CSRFCookie} {
		http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, HttpOnly: name == SessionCookie, SameSite: http.SameSiteStrictMode})
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) listAgents(w http.ResponseWriter, r *http.Request) {
	if !s.needAccounts(w) {
		return
	}
	list, err := s.cfg.Accounts.ListAccounts(r.Context())
	if err != nil {
		s.storeFailed(w, err)
		return
	}
	out := Page[Agent]{Items: make([]Agent, 0, len(list))}
	for _, a := range list {
		out.Items = append(out.Items, agentOf(a))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) addAgent(w http.ResponseWriter, r *http.Request) {
	if !s.needAccounts(w) {
		return
	}
	var req NewAgent
	if !decodeBody(w, r, &req) {
		return
	}
	var hash string
	var err error
	switch {
	case !accountName.MatchString(req.Name) || req.Name == BootstrapAdmin:
		writeError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("name: want 1 to 64 of a-z, 0-9, '.', '_', '-' starting with a letter or digit, not %s; got %q", BootstrapAdmin, req.Name))
		return
	case rank[req.Role] == 0:
		writeError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("role: want viewer, agent or admin, got %q", req.Role))
		return
	case req.Password != "":
		if hash, err = HashPassword(req.Password); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
			return
		}
	}
	switch _, ok, err := s.cfg.Accounts.Account(r.Context(), req.Name); {
	case err != nil:
		s.storeFailed(w, err)
		return
	case ok:
		writeError(w, http.StatusConflict, "exists", "an account "+req.Name+" exists (disabled accounts keep their name)")
		return
	}
	now := s.cfg.Now()
	c, token := newCredential(tokenPrefix, store.KindToken, req.Name, now)
	if !s.record(w, r, "agent.create", req.Name, map[string]string{"role": req.Role, "token_id": c.ID, "password": fmt.Sprint(hash != "")}) {
		return
	}
	err = s.cfg.Accounts.CreateAccount(r.Context(), store.Account{Name: req.Name, Role: req.Role, PasswordHash: hash, CreatedAt: now})
	if errors.Is(err, store.ErrAccountExists) {
		writeError(w, http.StatusConflict, "exists", "an account "+req.Name+" exists")
		return
	}
	if err == nil {
		err = s.cfg.Accounts.AddCredential(r.Context(), c)
	}
	if err != nil {
		s.storeFailed(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, AgentCreated{Name: req.Name, Role: req.Role, Token: token, TokenID: c.ID})
}

// account loads the account of the path's {name}; false when answered.
func (s *server) account(w http.ResponseWriter, r *http.Request) (store.Account, bool) {
	if !s.needAccounts(w) {
		return store.Account{}, false
	}
	a, ok, err := s.cfg.Accounts.Account(r.Context(), r.PathValue("name"))
	switch {
	case err != nil:
		s.storeFailed(w, err)
	case !ok:
		writeError(w, http.StatusNotFound, "not_found", "no account "+r.PathValue("name"))
	}
	return a, err == nil && ok
}

func (s *server) disableAgent(w http.ResponseWriter, r *http.Request) {
	a, ok := s.account(w, r)
	if !ok || !s.record(w, r, "agent.disable", a.Name, nil) {
		return
	}
	a.Disabled = true
	if err := s.cfg.Accounts.UpdateAccount(r.Context(), a); err != nil {
		s.storeFailed(w, err)
		return
	}
	writeJSON(w, http.StatusOK, agentOf(a))
}

func (s *server) setPassword(w http.ResponseWriter, r *http.Request) {
	a, ok := s.account(w, r)
	if !ok {
		return
	}
	var req Password
	if !decodeBody(w, r, &req) {
		return
	}
	hash, err := HashPassword(req.Password)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if !s.record(w, r, "agent.password", a.Name, nil) {
		return
	}
	a.PasswordHash = hash
	if err := s.cfg.Accounts.UpdateAccount(r.Context(), a); err != nil {
		s.storeFailed(w, err)
		return
	}
	writeJSON(w, http.StatusOK, agentOf(a))
}

func (s *server) addToken(w http.ResponseWriter, r *http.Request) {
	a, ok := s.account(w, r)
	if !ok {
		return
	}
	c, token := newCredential(tokenPrefix, store.KindToken, a.Name, s.cfg.Now())
	if !s.record(w, r, "token.create", a.Name, map[string]string{"token_id": c.ID}) {
		return
	}
	if err := s.cfg.Accounts.AddCredential(r.Context(), c); err != nil {
		s.storeFailed(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, TokenCreated{Name: a.Name, Token: token, TokenID: c.ID})
}

func (s *server) revokeToken(w http.ResponseWriter, r *http.Request) {
	a, ok := s.account(w, r)
	if !ok {
		return
	}
	c, ok, err := s.cfg.Accounts.Credential(r.Context(), r.PathValue("id"))
	switch {
	case err != nil:
		s.storeFailed(w, err)
		return
	case !ok || c.Account != a.Name || c.Kind != store.KindToken:
		writeError(w, http.StatusNotFound, "not_found", "no token "+r.PathValue("id")+" of "+a.Name)
		return
	}
	if !s.record(w, r, "token.revoke", a.Name, map[string]string{"token_id": c.ID}) {
		return
	}
	now := s.cfg.Now()
	if err := s.cfg.Accounts.RevokeCredential(r.Context(), c.ID, now); err != nil {
		s.storeFailed(w, err)
		return
	}
	if c.RevokedAt.IsZero() {
		c.RevokedAt = now
	}
	writeJSON(w, http.StatusOK, Token{Name: a.Name, TokenID: c.ID, CreatedAt: ms(c.CreatedAt), RevokedAt: optTime(c.RevokedAt)})
}
