-- Practices, their per-recipient deliveries and the reference-number counter (PostgreSQL).
CREATE TABLE practices (
    id           UUID PRIMARY KEY,
    owner_cf     TEXT NOT NULL,
    service_id   TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('draft', 'in_progress', 'completed', 'archived')),
    data         JSONB NOT NULL,
    reference    TEXT UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    submitted_at TIMESTAMPTZ
);

CREATE INDEX practices_by_owner ON practices (owner_cf, state, updated_at);

CREATE TABLE deliveries (
    practice_id  UUID NOT NULL REFERENCES practices (id),
    institution  TEXT NOT NULL,
    position     INTEGER NOT NULL,
    filing_kind  TEXT NOT NULL,
    state        TEXT NOT NULL,
    payload      JSONB NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (practice_id, institution)
);

CREATE INDEX deliveries_by_state ON deliveries (state, updated_at);

CREATE TABLE reference_counters (
    year INTEGER PRIMARY KEY,
    last BIGINT NOT NULL
);
