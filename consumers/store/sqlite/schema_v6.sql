-- Version 6: a conflict's ID is unique per customer, not across the store: a
-- survivor carries the conflicts of each customer it absorbed with their
-- IDs, while the absorbed customer keeps its own copy for an unmerge. The
-- review queue shows the copy of the customer that is not merged away.
CREATE TABLE conflicts_v6 (
  id                 TEXT NOT NULL,
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
  resolved_at        INTEGER,
  PRIMARY KEY (customer_id, id)
);
INSERT INTO conflicts_v6 (id, customer_id, field, current_json, candidate_json, candidate_event_id, candidate_channel,
    candidate_source, detected_at, status, resolved_by, resolved_at)
  SELECT id, customer_id, field, current_json, candidate_json, candidate_event_id, candidate_channel,
    candidate_source, detected_at, status, resolved_by, resolved_at FROM conflicts;
DROP TABLE conflicts;
ALTER TABLE conflicts_v6 RENAME TO conflicts;
CREATE INDEX conflicts_by_status ON conflicts (status, detected_at);
CREATE INDEX conflicts_by_id ON conflicts (id);
