-- Search by protocol number (SQLite): the text typed is matched as a prefix of the upper-cased
-- protocol number, so an index on that expression answers it with a range scan instead of a
-- pass over every delivery of every holder.
CREATE INDEX deliveries_by_protocol_upper ON deliveries (upper(protocol_number));
