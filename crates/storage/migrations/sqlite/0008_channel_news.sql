-- What institutions say, as channel profiles read it (SQLite).
-- status_url: where a NONBLOCK_PULL_REST institution said to ask (its 202's Location).
-- news_values: values from its answers that later filings use (JSON object of text).
-- news_at: unix milliseconds of the last news from the institution (answer, callback, poll);
--          a delivery silent past its channel's deadline is marked no_news.
-- polls: status requests so far for this revision (the pace backs off with it).
ALTER TABLE deliveries ADD COLUMN status_url TEXT;
ALTER TABLE deliveries ADD COLUMN news_values TEXT NOT NULL DEFAULT '{}';
ALTER TABLE deliveries ADD COLUMN news_at INTEGER;
ALTER TABLE deliveries ADD COLUMN polls INTEGER NOT NULL DEFAULT 0;
UPDATE deliveries SET news_at = COALESCE(CAST(strftime('%s', updated_at) AS INTEGER) * 1000,
                                         CAST(strftime('%s', 'now') AS INTEGER) * 1000)
 WHERE state IN ('delivered', 'taken_in_charge');
CREATE INDEX deliveries_waiting ON deliveries (institution, state, news_at);
