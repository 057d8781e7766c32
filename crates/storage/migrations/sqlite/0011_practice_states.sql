-- A sent practice says when it needs the user: "to_correct" (an institution rejected its
-- filing) and "to_resend" (a filing failed or is without news) join the states (SQLite).
-- SQLite cannot change a CHECK constraint, so the table is rebuilt (the runner turns foreign
-- keys off around this migration and checks them before it commits).
CREATE TABLE practices_new (
    id            TEXT PRIMARY KEY,
    owner_cf      TEXT NOT NULL,
    service_id    TEXT NOT NULL,
    state         TEXT NOT NULL
        CHECK (state IN ('draft', 'in_progress', 'to_correct', 'to_resend', 'completed', 'archived')),
    data          TEXT NOT NULL,
    reference     TEXT UNIQUE,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    submitted_at  TEXT,
    needs_resend  INTEGER NOT NULL DEFAULT 0,
    business_cf   TEXT GENERATED ALWAYS AS (upper(json_extract(data, '$."business.tax_code"'))) VIRTUAL,
    business_name TEXT GENERATED ALWAYS AS (lower(json_extract(data, '$."business.name"'))) VIRTUAL,
    actor_cf      TEXT
) STRICT;

INSERT INTO practices_new (id, owner_cf, service_id, state, data, reference, created_at, updated_at,
                           submitted_at, needs_resend, actor_cf)
SELECT id, owner_cf, service_id, state, data, reference, created_at, updated_at, submitted_at, needs_resend,
       actor_cf
FROM practices;

DROP TABLE practices;
ALTER TABLE practices_new RENAME TO practices;

CREATE INDEX practices_by_owner ON practices (owner_cf, state, updated_at);
CREATE INDEX practices_by_business ON practices (owner_cf, business_cf);
CREATE INDEX practices_by_submission ON practices (owner_cf, submitted_at);
CREATE INDEX practices_by_service ON practices (owner_cf, service_id, updated_at);
CREATE INDEX practices_by_update ON practices (owner_cf, updated_at);

-- Sent practices that were called "completed" or "in progress" with a rejection or a failure.
UPDATE practices SET state = 'to_correct'
WHERE state IN ('in_progress', 'completed')
  AND EXISTS (SELECT 1 FROM deliveries d WHERE d.practice_id = practices.id AND d.state = 'rejected');
UPDATE practices SET state = 'to_resend'
WHERE state IN ('in_progress', 'completed')
  AND EXISTS (SELECT 1 FROM deliveries d WHERE d.practice_id = practices.id AND d.state IN ('failed', 'no_news'));
