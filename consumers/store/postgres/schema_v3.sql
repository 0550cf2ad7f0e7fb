-- Version 3: the customer merge. merged_into is the survivor a customer is
-- merged into (NULL when none): the redirect. absorptions lists the
-- customers absorbed into each survivor (customer_id), so a survivor's
-- timeline includes their messages. Both are written from the record; the
-- backfill reads them from records written before.
ALTER TABLE customers ADD COLUMN merged_into text COLLATE "C";
CREATE TABLE absorptions (
  customer_id text COLLATE "C" NOT NULL,
  absorbed_id text COLLATE "C" NOT NULL,
  merge_id    text COLLATE "C" NOT NULL,
  PRIMARY KEY (customer_id, absorbed_id)
);
UPDATE customers SET merged_into = record->'merged_into'->>'customer_id' WHERE record->'merged_into' IS NOT NULL;
INSERT INTO absorptions (customer_id, absorbed_id, merge_id)
  SELECT c.customer_id, a->>'customer_id', a->>'merge_id'
  FROM customers c, json_array_elements(c.record->'absorbed') a
  WHERE json_typeof(c.record->'absorbed') = 'array';
