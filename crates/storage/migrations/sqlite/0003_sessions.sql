-- Browser sessions (SQLite). Only a hash of the session id is stored.
CREATE TABLE sessions (
    id_hash      TEXT PRIMARY KEY,
    holder_cf    TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    csrf_token   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
) STRICT;
CREATE INDEX sessions_by_holder ON sessions (holder_cf);
