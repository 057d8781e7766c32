-- What institutions say, as channel profiles read it (PostgreSQL).
-- status_url: where a NONBLOCK_PULL_REST institution said to ask (its 202's Location).
-- news_values: values from its answers that later filings use (JSON object of text).
-- news_at: unix milliseconds of the last news from the institution (answer, callback, poll);
--          a delivery silent past its channel's deadline is marked no_news.
-- polls: status requests so far for this revision (the pace backs off with it).
ALTER TABLE deliveries
    ADD COLUMN status_url TEXT,
    ADD COLUMN news_values TEXT NOT NULL DEFAULT '{}',
    ADD COLUMN news_at BIGINT,
    ADD COLUMN polls INTEGER NOT NULL DEFAULT 0;
UPDATE deliveries SET news_at = (EXTRACT(EPOCH FROM updated_at) * 1000)::bigint
 WHERE state IN ('delivered', 'taken_in_charge');
CREATE INDEX deliveries_waiting ON deliveries (institution, state, news_at);
