-- Search (PostgreSQL): the business's codice fiscale and name as stored generated columns
-- read from the practice data, and indexes for every exact search key. Names are matched as
-- substrings, within one owner's practices (bounded by practices_by_owner).
ALTER TABLE practices ADD COLUMN business_cf TEXT
    GENERATED ALWAYS AS (upper(data ->> 'business.tax_code')) STORED;
ALTER TABLE practices ADD COLUMN business_name TEXT
    GENERATED ALWAYS AS (lower(data ->> 'business.name')) STORED;
CREATE INDEX practices_by_business ON practices (owner_cf, business_cf);
CREATE INDEX practices_by_submission ON practices (owner_cf, submitted_at);
CREATE INDEX practices_by_service ON practices (owner_cf, service_id, updated_at);
CREATE INDEX practices_by_update ON practices (owner_cf, updated_at);
CREATE INDEX deliveries_by_protocol ON deliveries (protocol_number);
