-- omnisync's PostgreSQL store, schema version 1. The same tables and meaning
-- as the SQLite store. Times are timestamptz holding millisecond instants
-- (the precision of Avro's timestamp-millis and of merge records). IDs sort
-- bytewise (COLLATE "C"), like Go strings and merge.Stamp. Documents are
-- json, not jsonb: json keeps the canonical text byte for byte (Load hands
-- back exactly what was written, \u0000 included) and ->/->> query it.
CREATE TABLE customers (
  customer_id          text COLLATE "C" PRIMARY KEY,
  version              bigint NOT NULL,
  needs_review         boolean NOT NULL,
  deleted              boolean NOT NULL,
  tombstone_at         timestamptz,
  tombstone_event_id   text COLLATE "C",
  last_contact_at      timestamptz,
  last_contact_channel text NOT NULL,
  updated_at           timestamptz NOT NULL,
  policy_hash          text NOT NULL,
  name                 text, -- the string values of the searchable fields, NULL when unset or cleared
  phone                text,
  email                text,
  record               json NOT NULL -- the merge.Record, from which Load rebuilds it
);
CREATE INDEX customers_recent ON customers (updated_at DESC, customer_id) WHERE NOT deleted;
CREATE TABLE customer_fields (
  customer_id text COLLATE "C" NOT NULL,
  field       text NOT NULL,
  value       json NOT NULL,
  occurred_at timestamptz NOT NULL,
  event_id    text COLLATE "C" NOT NULL,
  channel     text NOT NULL,
  source      text NOT NULL,
  PRIMARY KEY (customer_id, field)
);
CREATE TABLE conflicts (
  id                 text COLLATE "C" PRIMARY KEY,
  customer_id        text COLLATE "C" NOT NULL,
  field              text NOT NULL,
  current_json       text NOT NULL,
  candidate_json     text NOT NULL,
  candidate_event_id text COLLATE "C" NOT NULL,
  candidate_channel  text NOT NULL,
  candidate_source   text NOT NULL,
  detected_at        timestamptz NOT NULL,
  status             text NOT NULL,
  resolved_by        text NOT NULL,
  resolved_at        timestamptz
);
CREATE INDEX conflicts_queue ON conflicts (detected_at, id);
CREATE INDEX conflicts_by_status ON conflicts (status, detected_at, id);
CREATE INDEX conflicts_by_customer ON conflicts (customer_id);
CREATE TABLE messages (
  message_id      text COLLATE "C" PRIMARY KEY,
  customer_id     text COLLATE "C" NOT NULL,
  conversation_id text NOT NULL,
  channel         text NOT NULL,
  direction       text NOT NULL,
  sender_type     text NOT NULL,
  sender_id       text NOT NULL,
  content_type    text NOT NULL,
  text            text,
  occurred_at     timestamptz NOT NULL,
  ingested_at     timestamptz NOT NULL,
  source          text NOT NULL,
  event           json NOT NULL -- the whole MessageEvent
);
CREATE INDEX messages_timeline ON messages (customer_id, occurred_at, message_id);
CREATE TABLE identities (
  kind        text NOT NULL,
  scope       text NOT NULL,
  value       text NOT NULL,
  customer_id text COLLATE "C" NOT NULL,
  PRIMARY KEY (kind, scope, value)
);
CREATE INDEX identities_by_customer ON identities (customer_id);
CREATE INDEX identities_by_value ON identities (value);
CREATE TABLE consumer_offsets (
  group_id    text NOT NULL,
  topic       text NOT NULL,
  partition   integer NOT NULL,
  next_offset bigint NOT NULL,
  PRIMARY KEY (group_id, topic, partition)
);
CREATE TABLE store_meta (
  key   text PRIMARY KEY,
  value text NOT NULL
);
