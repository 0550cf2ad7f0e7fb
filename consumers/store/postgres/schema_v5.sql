-- Version 5: a conflict's ID is unique per customer, not across the store: a
-- survivor carries the conflicts of each customer it absorbed with their
-- IDs, while the absorbed customer keeps its own copy for an unmerge. The
-- review queue shows the copy of the customer that is not merged away.
ALTER TABLE conflicts DROP CONSTRAINT conflicts_pkey;
ALTER TABLE conflicts ADD PRIMARY KEY (customer_id, id);
CREATE INDEX conflicts_by_id ON conflicts (id);
