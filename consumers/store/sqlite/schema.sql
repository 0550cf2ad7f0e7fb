-- omnisync's SQLite store, version 1. Times are UTC milliseconds since the
-- Unix epoch (INTEGER); JSON columns hold canonical JSON text.
CREATE TABLE customers (
  customer_id          TEXT PRIMARY KEY,
  version              INTEGER NOT NULL,
  needs_review         INTEGER NOT NULL,
  deleted              INTEGER NOT NULL,
  tombstone_at         INTEGER,
  tombstone_event_id   TEXT,
  last_contact_at      INTEGER,
  last_contact_channel TEXT,
  updated_at           INTEGER NOT NULL,
  policy_hash          TEXT NOT NULL,
  record               TEXT NOT NULL -- the merge.Record, from which Load rebuilds it
);
CREATE TABLE customer_fields (
  customer_id TEXT NOT NULL,
  field       TEXT NOT NULL,
  value_json  TEXT NOT NULL,
  occurred_at INTEGER NOT NULL,
  event_id    TEXT NOT NULL,
  channel     TEXT NOT NULL,
  source      TEXT NOT NULL,
  PRIMARY KEY (customer_id, field)
);
CREATE TABLE conflicts (
  id                 TEXT PRIMARY KEY,
  customer_id        TEXT NOT NULL,
  field              TEXT NOT NULL,
  current_json       TEXT NOT NULL,
  candidate_json     TEXT NOT NULL,
  candidate_event_id TEXT NOT NULL,
  candidate_channel  TEXT NOT NULL,
  candidate_source   TEXT NOT NULL,
  detected_at        INTEGER NOT NULL,
  status             TEXT NOT NULL,
  resolved_by        TEXT NOT NULL,
  resolved_at        INTEGER
);
CREATE INDEX conflicts_by_status ON conflicts (status, detected_at);
CREATE INDEX conflicts_by_customer ON conflicts (customer_id);
CREATE TABLE messages (
  message_id      TEXT PRIMARY KEY,
  customer_id     TEXT NOT NULL,
  conversation_id TEXT NOT NULL,
  channel         TEXT NOT NULL,
  direction       TEXT NOT NULL,
  sender_type     TEXT NOT NULL,
  sender_id       TEXT NOT NULL,
  content_type    TEXT NOT NULL,
  text            TEXT,
  occurred_at     INTEGER NOT NULL,
  ingested_at     INTEGER NOT NULL,
  source          TEXT NOT NULL,
  event           TEXT NOT NULL -- the whole MessageEvent as JSON
);
CREATE INDEX messages_timeline ON messages (customer_id, occurred_at, message_id);
CREATE TABLE identities (
  kind        TEXT NOT NULL,
  scope       TEXT NOT NULL,
  value       TEXT NOT NULL,
  customer_id TEXT NOT NULL,
  PRIMARY KEY (kind, scope, value)
);
CREATE INDEX identities_by_customer ON identities (customer_id);
CREATE TABLE consumer_offsets (
  group_id    TEXT NOT NULL,
  topic       TEXT NOT NULL,
  partition   INTEGER NOT NULL,
  next_offset INTEGER NOT NULL,
  PRIMARY KEY (group_id, topic, partition)
);
CREATE TABLE store_meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
