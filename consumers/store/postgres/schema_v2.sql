-- Version 2: the channels a customer's messages came on (the agents'
-- customer list shows every channel a customer used) from the index alone.
CREATE INDEX messages_channels ON messages (customer_id, channel);
