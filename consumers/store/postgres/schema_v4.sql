-- Version 4: the agents' accounts and their credentials (API tokens and
-- browser sessions), kept by the API. Secrets are stored hashed.
CREATE TABLE accounts (
  name          text PRIMARY KEY,
  role          text NOT NULL,
  disabled      boolean NOT NULL,
  password_hash text NOT NULL,
  created_at    timestamptz NOT NULL
);
CREATE TABLE credentials (
  id          text PRIMARY KEY,
  account     text NOT NULL REFERENCES accounts (name),
  kind        text NOT NULL,
  secret_hash text NOT NULL,
  csrf_hash   text NOT NULL,
  created_at  timestamptz NOT NULL,
  expires_at  timestamptz,
  revoked_at  timestamptz
);
CREATE INDEX credentials_by_account ON credentials (account, kind, created_at);
