-- Practices, their per-recipient deliveries and the reference-number counter (SQLite).
CREATE TABLE practices (
    id           TEXT PRIMARY KEY,
    owner_cf     TEXT NOT NULL,
    service_id   TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('draft', 'in_progress', 'completed', 'archived')),
    data         TEXT NOT NULL,
    reference    TEXT UNIQUE,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    submitted_at TEXT
) STRICT;

CREATE INDEX practices_by_owner ON practices (owner_cf, state, updated_at);

CREATE TABLE deliveries (
    practice_id  TEXT NOT NULL REFERENCES practices (id),
    institution  TEXT NOT NULL,
    position     INTEGER NOT NULL,
    filing_kind  TEXT NOT NULL,
    state        TEXT NOT NULL,
    payload      TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (practice_id, institution)
) STRICT;

CREATE INDEX deliveries_by_state ON deliveries (state, updated_at);

CREATE TABLE reference_counters (
    year INTEGER PRIMARY KEY,
    last INTEGER NOT NULL
) STRICT;
