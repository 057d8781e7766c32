-- ModI tokens (jti) of institutions' callbacks, kept until a replay would fail the time
-- checks anyway, so that every portal process on this database refuses a replay.
CREATE TABLE used_tokens (
    scope TEXT NOT NULL,
    jti TEXT NOT NULL,
    until_ms INTEGER NOT NULL,
    PRIMARY KEY (scope, jti)
);
CREATE INDEX used_tokens_until ON used_tokens (until_ms);
