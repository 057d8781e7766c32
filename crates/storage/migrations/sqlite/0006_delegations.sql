-- Sub-delegations and who acted (SQLite). Times are unix milliseconds.
ALTER TABLE practices ADD COLUMN actor_cf TEXT;
ALTER TABLE deliveries ADD COLUMN actor_cf TEXT;

CREATE TABLE delegations (
    id          TEXT PRIMARY KEY,
    grantor_cf  TEXT NOT NULL,
    delegate_cf TEXT NOT NULL,
    scope       TEXT NOT NULL,
    valid_from  INTEGER NOT NULL,
    valid_until INTEGER NOT NULL,
    note        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    ended       TEXT CHECK (ended IN ('revoked', 'renounced')),
    ended_at    INTEGER
) STRICT;
CREATE INDEX delegations_by_grantor ON delegations (grantor_cf, created_at);
CREATE INDEX delegations_by_delegate ON delegations (delegate_cf, created_at);

-- Per institution: its answer, and what must still be told to it (notice: grant / revoke).
CREATE TABLE delegation_institutions (
    delegation_id   TEXT NOT NULL REFERENCES delegations (id),
    institution     TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'active', 'refused', 'revoked')),
    reference       TEXT,
    reason          TEXT,
    notice          TEXT CHECK (notice IN ('grant', 'revoke')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    lease_until     INTEGER,
    PRIMARY KEY (delegation_id, institution)
) STRICT;
CREATE INDEX delegation_notices_due ON delegation_institutions (notice, next_attempt_at);
