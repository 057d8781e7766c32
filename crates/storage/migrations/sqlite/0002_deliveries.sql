-- Delivery worker state, outcomes and the per-delivery timeline (SQLite).
-- next_attempt_at and lease_until are unix milliseconds (NULL: due now / no lease).
ALTER TABLE deliveries ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN next_attempt_at INTEGER;
ALTER TABLE deliveries ADD COLUMN lease_until INTEGER;
ALTER TABLE deliveries ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN protocol_number TEXT;
ALTER TABLE deliveries ADD COLUMN rejection TEXT;
ALTER TABLE deliveries ADD COLUMN last_error TEXT;
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at);

ALTER TABLE practices ADD COLUMN needs_resend INTEGER NOT NULL DEFAULT 0;

CREATE TABLE delivery_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    practice_id  TEXT NOT NULL,
    institution  TEXT NOT NULL,
    at           TEXT NOT NULL,
    kind         TEXT NOT NULL,
    state        TEXT NOT NULL,
    detail       TEXT NOT NULL,
    message_id   TEXT UNIQUE,
    FOREIGN KEY (practice_id, institution) REFERENCES deliveries (practice_id, institution)
) STRICT;
CREATE INDEX delivery_events_by_practice ON delivery_events (practice_id, id);
