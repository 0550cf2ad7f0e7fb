package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/omnisync/omnisync/consumers/store"
)

var _ store.Accounts = (*Store)(nil)

// CreateAccount implements store.Accounts.
func (s *Store) CreateAccount(ctx context.Context, a store.Account) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO accounts (name, role, disabled, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)`,
		a.Name, a.Role, a.Disabled, a.PasswordHash, millis(a.CreatedAt))
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return fmt.Errorf("account %s: %w", a.Name, store.ErrAccountExists)
	}
	return err
}

// UpdateAccount implements store.Accounts.
func (s *Store) UpdateAccount(ctx context.Context, a store.Account) error {
	tag, err := s.pool.Exec(ctx, `UPDATE accounts SET role = $1, disabled = $2, password_hash = $3 WHERE name = $4`,
		a.Role, a.Disabled, a.PasswordHash, a.Name)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("account %s: %w", a.Name, store.ErrNoAccount)
	}
	return nil
}

const accountColumns = `name, role, disabled, password_hash, created_at`

func scanAccount(row pgx.Row) (store.Account, error) {
	var a store.Account
	err := row.Scan(&a.Name, &a.Role, &a.Disabled, &a.PasswordHash, &a.CreatedAt)
	a.CreatedAt = a.CreatedAt.UTC()
	return a, err
}

// Account implements store.Accounts.
func (s *Store) Account(ctx context.Context, name string) (store.Account, bool, error) {
	a, err := scanAccount(s.pool.QueryRow(ctx, `SELECT `+accountColumns+` FROM accounts WHERE name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Account{}, false, nil
	}
	return a, err == nil, err
}

// ListAccounts implements store.Accounts.
func (s *Store) ListAccounts(ctx context.Context) ([]store.Account, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+accountColumns+` FROM accounts ORDER BY name COLLATE "C"`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Account, error) { return scanAccount(r) })
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = millis(t)
	return &t
}

// AddCredential implements store.Accounts.
func (s *Store) AddCredential(ctx context.Context, c store.Credential) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO credentials (id, account, kind, secret_hash, csrf_hash, created_at, expires_at, revoked_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, c.ID, c.Account, string(c.Kind), c.SecretHash, c.CSRFHash, millis(c.CreatedAt),
		optTime(c.ExpiresAt), optTime(c.RevokedAt))
	return err
}

const credentialColumns = `id, account, kind, secret_hash, csrf_hash, created_at, expires_at, revoked_at`

func scanCredential(row pgx.Row) (store.Credential, error) {
	var c store.Credential
	var expires, revoked *time.Time
	err := row.Scan(&c.ID, &c.Account, &c.Kind, &c.SecretHash, &c.CSRFHash, &c.CreatedAt, &expires, &revoked)
	c.CreatedAt = c.CreatedAt.UTC()
	if expires != nil {
		c.ExpiresAt = expires.UTC()
	}
	if revoked != nil {
		c.RevokedAt = revoked.UTC()
	}
	return c, err
}

// Credential implements store.Accounts.
func (s *Store) Credential(ctx context.Context, id string) (store.Credential, bool, error) {
	c, err := scanCredential(s.pool.QueryRow(ctx, `SELECT `+credentialColumns+` FROM credentials WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Credential{}, false, nil
	}
	return c, err == nil, err
}

// RevokeCredential implements store.Accounts.
func (s *Store) RevokeCredential(ctx context.Context, id string, at time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE credentials SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2`, millis(at), id)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("credential %s: %w", id, store.ErrNoCredential)
	}
	return nil
}

// Credentials implements store.Accounts.
func (s *Store) Credentials(ctx context.Context, account string, kind store.CredentialKind) ([]store.Credential, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+credentialColumns+` FROM credentials WHERE account = $1 AND kind = $2
		ORDER BY created_at DESC, id DESC`, account, string(kind))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Credential, error) { return scanCredential(r) })
}
