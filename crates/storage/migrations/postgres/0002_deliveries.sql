-- Delivery worker state, outcomes and the per-delivery timeline (PostgreSQL).
ALTER TABLE deliveries
    ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at TIMESTAMPTZ,
    ADD COLUMN lease_until TIMESTAMPTZ,
    ADD COLUMN fence BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN revision INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN protocol_number TEXT,
    ADD COLUMN rejection JSONB,
    ADD COLUMN last_error TEXT;
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at);

ALTER TABLE practices ADD COLUMN needs_resend BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE delivery_events (
    id           BIGSERIAL PRIMARY KEY,
    practice_id  UUID NOT NULL,
    institution  TEXT NOT NULL,
    at           TIMESTAMPTZ NOT NULL,
    kind         TEXT NOT NULL,
    state        TEXT NOT NULL,
    detail       JSONB NOT NULL,
    message_id   TEXT UNIQUE,
    FOREIGN KEY (practice_id, institution) REFERENCES deliveries (practice_id, institution)
);
CREATE INDEX delivery_events_by_practice ON delivery_events (practice_id, id);
