package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/ksuid"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"

	"github.com/omnisync/omnisync/consumers/store"
	"github.com/omnisync/omnisync/pkg/httpauth"
)

// Roles, each allowed what the ones before it are.
const (
	RoleViewer = "viewer" // reads
	RoleAgent  = "agent"  // also resolves conflicts
	RoleAdmin  = "admin"  // also manages accounts and tokens, reads the audit trail
)

// rank orders the roles; a route needing a role admits every role of at
// least its rank. The empty role (public) has rank 0.
var rank = map[string]int{"": 0, RoleViewer: 1, RoleAgent: 2, RoleAdmin: 3}

// BootstrapAdmin is the principal of the admin token (Config.AdminToken).
const BootstrapAdmin = "bootstrap-admin"

// Principal is who makes a request.
type Principal struct {
	Name string
	Role string
	// Via is admin_token, token or session.
	Via string
	// Credential is the ID of the token or session; "" for the admin token.
	Credential string
	csrfHash   string
}

type principalKey struct{}

// PrincipalOf returns the principal the API authenticated for r.
func PrincipalOf(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Credentials: an API token is "osk_<id>_<secret>", a session cookie
// "oss_<id>_<secret>"; the store keeps the SHA-256 of the secret.
const (
	tokenPrefix   = "osk_"
	sessionPrefix = "oss_"
	// SessionCookie holds the browser session (HttpOnly); CSRFCookie the
	// CSRF token the console echoes in the X-CSRF-Token header of every
	// state-changing call (readable by the console's script only, as
	// SameSite=Strict and the same-origin policy keep it from other sites).
	SessionCookie = "omnisync_session"
	CSRFCookie    = "omnisync_csrf"
	CSRFHeader    = "X-CSRF-Token"
	// DefaultSessionTTL is how long a browser session lasts.
	DefaultSessionTTL = 12 * time.Hour
)

func hashSecret(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func randomSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// newCredential makes a credential of kind for account and returns it
// with the text the holder presents (shown once, never stored).
func newCredential(prefix string, kind store.CredentialKind, account string, now time.Time) (store.Credential, string) {
	id, secret := ksuid.New().String(), randomSecret()
	return store.Credential{ID: id, Account: account, Kind: kind, SecretHash: hashSecret(secret), CreatedAt: now}, prefix + id + "_" + secret
}

// parseCredential splits "<prefix><id>_<secret>".
func parseCredential(prefix, text string) (id, secret string, ok bool) {
	rest, ok := strings.CutPrefix(text, prefix)
	if !ok {
		return "", "", false
	}
	id, secret, ok = strings.Cut(rest, "_")
	return id, secret, ok && id != "" && secret != ""
}

// HashPassword returns the bcrypt hash of a password; it refuses one
// shorter than 12 characters.
func HashPassword(password string) (string, error) {
	if n := len([]rune(password)); n < 12 {
		return "", fmt.Errorf("password: want at least 12 characters, got %d", n)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("password: %w", err)
	}
	return string(h), nil
}

// dummyHash is compared against when the account does not exist, so a
// wrong name costs as long as a wrong password.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("omnisync-no-such-account"), bcrypt.DefaultCost)

var errBadCredentials = fmt.Errorf("%w: wrong name, password or token, or the account is disabled", httpauth.ErrUnauthorized)

// authenticate returns the principal of r's credentials: the admin token
// or an API token (Authorization: Bearer), else a session cookie.
func (s *server) authenticate(r *http.Request) (Principal, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		text, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return Principal{}, fmt.Errorf("%w: Authorization is not Bearer", httpauth.ErrUnauthorized)
		}
		if id, secret, ok := parseCredential(tokenPrefix, text); ok && s.cfg.Accounts != nil {
			return s.credential(r.Context(), store.KindToken, id, secret)
		}
		if httpauth.CheckBearer(r, s.cfg.AdminToken) == nil {
			return Principal{Name: BootstrapAdmin, Role: RoleAdmin, Via: "admin_token"}, nil
		}
		return Principal{}, errBadCredentials
	}
	if c, err := r.Cookie(SessionCookie); err == nil && s.cfg.Accounts != nil {
		id, secret, ok := parseCredential(sessionPrefix, c.Value)
		if !ok {
			return Principal{}, errBadCredentials
		}
		return s.credential(r.Context(), store.KindSession, id, secret)
	}
	return Principal{}, fmt.Errorf("%w: no credentials", httpauth.ErrUnauthorized)
}

// credential checks a token or session against the store; the account
// must be enabled now, so disabling it stops its credentials at once.
func (s *server) credential(ctx context.Context, kind store.CredentialKind, id, secret string) (Principal, error) {
	c, ok, err := s.cfg.Accounts.Credential(ctx, id)
	if err != nil {
		return Principal{}, err
	}
	got := hashSecret(secret)
	if !ok {
		c.SecretHash = strings.Repeat("0", len(got))
	}
	match := subtle.ConstantTimeCompare([]byte(got), []byte(c.SecretHash)) == 1
	now := s.cfg.Now()
	if !ok || !match || c.Kind != kind || !c.RevokedAt.IsZero() || (!c.ExpiresAt.IsZero() && !now.Before(c.ExpiresAt)) {
		return Principal{}, errBadCredentials
	}
	a, ok, err := s.cfg.Accounts.Account(ctx, c.Account)
	if err != nil {
		return Principal{}, err
	}
	if !ok || a.Disabled {
		return Principal{}, errBadCredentials
	}
	return Principal{Name: a.Name, Role: a.Role, Via: string(kind), Credential: c.ID, csrfHash: c.CSRFHash}, nil
}

// checkCSRF refuses a state-changing call made with a session cookie
// unless it carries the session's CSRF token in X-CSRF-Token: another
// site's form or script cannot read the token (nor, with SameSite=Strict,
// send the cookie).
func checkCSRF(r *http.Request, p Principal) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	if p.Via != string(store.KindSession) {
		return nil
	}
	got := r.Header.Get(CSRFHeader)
	if got == "" || subtle.ConstantTimeCompare([]byte(hashSecret(got)), []byte(p.csrfHash)) != 1 {
		return errors.New("csrf: a state-changing call with a session cookie needs the X-CSRF-Token header the console sends")
	}
	return nil
}

// failures limits failed sign-ins and refused credentials per key (an
// account or a client address): a burst, then one every refill.
type failures struct {
	mu     sync.Mutex
	burst  int
	refill time.Duration
	keys   map[string]*rate.Limiter
}

func newFailures(burst int, refill time.Duration) *failures {
	return &failures{burst: burst, refill: refill, keys: map[string]*rate.Limiter{}}
}

// blocked reports whether any of keys has used its failures up, and how
// long until one more is allowed.
func (f *failures) blocked(now time.Time, keys ...string) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range keys {
		if l := f.keys[k]; l != nil && l.TokensAt(now) < 1 {
			return time.Duration((1 - l.TokensAt(now)) * float64(f.refill)), true
		}
	}
	return 0, false
}

// failed counts one failure against each of keys.
func (f *failures) failed(now time.Time, keys ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.keys) > 100_000 { // forget keys whose bucket is full again
		for k, l := range f.keys {
			if l.TokensAt(now) >= float64(f.burst) {
				delete(f.keys, k)
			}
		}
	}
	for _, k := range keys {
		l := f.keys[k]
		if l == nil {
			l = rate.NewLimiter(rate.Every(f.refill), f.burst)
			f.keys[k] = l
		}
		l.AllowN(now, 1)
	}
}

// clientAddr is the peer address of the connection (X-Forwarded-For is
// not trusted).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return "addr:" + r.RemoteAddr
	}
	return "addr:" + host
}

func (s *server) tooManyFailures(w http.ResponseWriter, wait time.Duration) {
	w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
	writeError(w, http.StatusTooManyRequests, "too_many_failures", "too many failed sign-ins or refused credentials from this address or for this account; wait and retry")
}

// guard authenticates the request and checks that its principal holds
// role (none for a public route) before the handler runs.
func (s *server) guard(role string, next func(*server, http.ResponseWriter, *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if role == "" {
			next(s, w, r)
			return
		}
		now := s.cfg.Now()
		addr := clientAddr(r)
		if wait, blocked := s.fails.blocked(now, addr); blocked {
			s.tooManyFailures(w, wait)
			return
		}
		p, err := s.authenticate(r)
		switch {
		case errors.Is(err, httpauth.ErrUnauthorized):
			s.fails.failed(now, addr)
			w.Header().Set("WWW-Authenticate", `Bearer realm="omnisync"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", err.Error()+" (send Authorization: Bearer <token>, or sign in)")
			return
		case err != nil:
			s.storeFailed(w, err)
			return
		}
		if rank[p.Role] < rank[role] {
			writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("%s is a %s; this call needs the role %s", p.Name, p.Role, role))
			return
		}
		if err := checkCSRF(r, p); err != nil {
			writeError(w, http.StatusForbidden, "csrf", err.Error())
			return
		}
		next(s, w, r.WithContext(withPrincipal(r.Context(), p)))
	}
}

func withPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// RouteRoles maps each route's pattern ("METHOD /path") to the least role
// it needs ("" for a public route).
func RouteRoles() map[string]string {
	out := make(map[string]string, len(routes))
	for _, rt := range routes {
		out[rt.pattern] = rt.role
	}
	return out
}
