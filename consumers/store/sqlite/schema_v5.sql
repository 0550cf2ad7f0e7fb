-- Version 5: the agents' accounts and their credentials (API tokens and
-- browser sessions), kept by the API. Secrets are stored hashed.
CREATE TABLE accounts (
  name          TEXT PRIMARY KEY,
  role          TEXT NOT NULL,
  disabled      INTEGER NOT NULL,
  password_hash TEXT NOT NULL,
  created_at    INTEGER NOT NULL
);
CREATE TABLE credentials (
  id          TEXT PRIMARY KEY,
  account     TEXT NOT NULL REFERENCES accounts (name),
  kind        TEXT NOT NULL,
  secret_hash TEXT NOT NULL,
  csrf_hash   TEXT NOT NULL,
  created_at  INTEGER NOT NULL,
  expires_at  INTEGER,
  revoked_at  INTEGER
);
CREATE INDEX credentials_by_account ON credentials (account, kind, created_at);
