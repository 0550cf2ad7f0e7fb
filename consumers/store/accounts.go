package store

import (
	"context"
	"errors"
	"time"
)

// Accounts keeps the agents' accounts and their credentials (API tokens
// and browser sessions), for the API. Both stores implement it, in tables
// of their own beside the customer data. Secrets are never stored: a
// credential holds the SHA-256 of its secret, an account the bcrypt hash
// of its password.
type Accounts interface {
	// CreateAccount adds an account; ErrAccountExists when the name is
	// taken (by an enabled or a disabled account).
	CreateAccount(ctx context.Context, a Account) error
	// UpdateAccount writes a.Role, a.Disabled and a.PasswordHash of the
	// account a.Name; ErrNoAccount when there is none.
	UpdateAccount(ctx context.Context, a Account) error
	// Account returns one account; ok is false when there is none.
	Account(ctx context.Context, name string) (a Account, ok bool, err error)
	// ListAccounts returns every account by name.
	ListAccounts(ctx context.Context) ([]Account, error)
	// AddCredential stores a credential; its ID must be new.
	AddCredential(ctx context.Context, c Credential) error
	// Credential returns one credential by ID; ok is false when there is
	// none.
	Credential(ctx context.Context, id string) (c Credential, ok bool, err error)
	// RevokeCredential marks a credential revoked at the given time;
	// ErrNoCredential when there is none.
	RevokeCredential(ctx context.Context, id string, at time.Time) error
	// Credentials returns an account's credentials of a kind, newest
	// first.
	Credentials(ctx context.Context, account string, kind CredentialKind) ([]Credential, error)
}

// Account is an agent's account.
type Account struct {
	Name         string
	Role         string // viewer, agent or admin
	Disabled     bool
	PasswordHash string // bcrypt; "" when the account has no password (token only)
	CreatedAt    time.Time
}

// CredentialKind tells API tokens from browser sessions.
type CredentialKind string

// The kinds of credential.
const (
	KindToken   CredentialKind = "token"
	KindSession CredentialKind = "session"
)

// Credential is an API token or a browser session of an account.
type Credential struct {
	ID         string
	Account    string
	Kind       CredentialKind
	SecretHash string // hex SHA-256 of the secret
	CSRFHash   string // sessions: hex SHA-256 of the CSRF token
	CreatedAt  time.Time
	ExpiresAt  time.Time // zero: never (tokens)
	RevokedAt  time.Time // zero: not revoked
}

// Errors of Accounts.
var (
	ErrAccountExists = errors.New("an account of that name exists")
	ErrNoAccount     = errors.New("no such account")
	ErrNoCredential  = errors.New("no such credential")
)
