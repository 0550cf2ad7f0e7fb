-- Version 2: the agents' customer list (most recently updated first) reads
-- an index instead of sorting the table.
CREATE INDEX customers_recent ON customers (updated_at DESC, customer_id) WHERE deleted = 0;
