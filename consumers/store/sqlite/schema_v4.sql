-- Version 4: the customer merge. merged_into is the survivor a customer is
-- merged into (NULL when none): the redirect. absorptions lists the
-- customers absorbed into each survivor (customer_id), so a survivor's
-- timeline includes their messages. Both are written from the record;
-- records of stores built before hold no merge, which the backfill checks.
ALTER TABLE customers ADD COLUMN merged_into TEXT;
CREATE TABLE absorptions (
  customer_id TEXT NOT NULL,
  absorbed_id TEXT NOT NULL,
  merge_id    TEXT NOT NULL,
  PRIMARY KEY (customer_id, absorbed_id)
);
UPDATE customers SET merged_into = json_extract(record, '$.merged_into.customer_id')
  WHERE json_extract(record, '$.merged_into') IS NOT NULL;
INSERT INTO absorptions (customer_id, absorbed_id, merge_id)
  SELECT c.customer_id, json_extract(a.value, '$.customer_id'), json_extract(a.value, '$.merge_id')
  FROM customers c, json_each(c.record, '$.absorbed') a;
