package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/omnisync/omnisync/consumers/store"
)

var _ store.Accounts = (*Store)(nil)

// CreateAccount implements store.Accounts.
func (s *Store) CreateAccount(ctx context.Context, a store.Account) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO accounts (name, role, disabled, password_hash, created_at) VALUES (?, ?, ?, ?, ?)`,
		a.Name, a.Role, a.Disabled, a.PasswordHash, millis(a.CreatedAt))
	if err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed") {
		return fmt.Errorf("account %s: %w", a.Name, store.ErrAccountExists)
	}
	return err
}

// UpdateAccount implements store.Accounts.
func (s *Store) UpdateAccount(ctx context.Context, a store.Account) error {
	res, err := s.db.ExecContext(ctx, `UPDATE accounts SET role = ?, disabled = ?, password_hash = ? WHERE name = ?`,
		a.Role, a.Disabled, a.PasswordHash, a.Name)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return errors.Join(err, fmt.Errorf("account %s: %w", a.Name, store.ErrNoAccount))
	}
	return nil
}

const accountColumns = `name, role, disabled, password_hash, created_at`

func scanAccount(row interface{ Scan(...any) error }) (store.Account, error) {
	var a store.Account
	var created int64
	err := row.Scan(&a.Name, &a.Role, &a.Disabled, &a.PasswordHash, &created)
	a.CreatedAt = time.UnixMilli(created).UTC()
	return a, err
}

// Account implements store.Accounts.
func (s *Store) Account(ctx context.Context, name string) (store.Account, bool, error) {
	a, err := scanAccount(s.db.QueryRowContext(ctx, `SELECT `+accountColumns+` FROM accounts WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Account{}, false, nil
	}
	return a, err == nil, err
}

// ListAccounts implements store.Accounts.
func (s *Store) ListAccounts(ctx context.Context) ([]store.Account, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+accountColumns+` FROM accounts ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Account
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

func optMillis(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// AddCredential implements store.Accounts.
func (s *Store) AddCredential(ctx context.Context, c store.Credential) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO credentials (id, account, kind, secret_hash, csrf_hash, created_at, expires_at, revoked_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, c.ID, c.Account, string(c.Kind), c.SecretHash, c.CSRFHash, millis(c.CreatedAt),
		optMillis(c.ExpiresAt), optMillis(c.RevokedAt))
	return err
}

const credentialColumns = `id, account, kind, secret_hash, csrf_hash, created_at, expires_at, revoked_at`

func scanCredential(row interface{ Scan(...any) error }) (store.Credential, error) {
	var c store.Credential
	var created int64
	var expires, revoked sql.NullInt64
	err := row.Scan(&c.ID, &c.Account, &c.Kind, &c.SecretHash, &c.CSRFHash, &created, &expires, &revoked)
	c.CreatedAt = time.UnixMilli(created).UTC()
	if expires.Valid {
		c.ExpiresAt = time.UnixMilli(expires.Int64).UTC()
	}
	if revoked.Valid {
		c.RevokedAt = time.UnixMilli(revoked.Int64).UTC()
	}
	return c, err
}

// Credential implements store.Accounts.
func (s *Store) Credential(ctx context.Context, id string) (store.Credential, bool, error) {
	c, err := scanCredential(s.db.QueryRowContext(ctx, `SELECT `+credentialColumns+` FROM credentials WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Credential{}, false, nil
	}
	return c, err == nil, err
}

// RevokeCredential implements store.Accounts.
func (s *Store) RevokeCredential(ctx context.Context, id string, at time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE credentials SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`, at.UnixMilli(), id)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return errors.Join(err, fmt.Errorf("credential %s: %w", id, store.ErrNoCredential))
	}
	return nil
}

// Credentials implements store.Accounts.
func (s *Store) Credentials(ctx context.Context, account string, kind store.CredentialKind) ([]store.Credential, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+credentialColumns+` FROM credentials WHERE account = ? AND kind = ?
		ORDER BY created_at DESC, id DESC`, account, string(kind))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Credential
	for rows.Next() {
		c, err := scanCredential(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
