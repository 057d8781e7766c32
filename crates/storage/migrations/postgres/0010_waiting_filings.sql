-- Filings that wait for another recipient's answer (its values go into their payload).
-- waits_for: the institution waited for; uses: [{target, institution, value}] taken from its answer.
ALTER TABLE deliveries ADD COLUMN waits_for TEXT;
ALTER TABLE deliveries ADD COLUMN uses TEXT NOT NULL DEFAULT '[]';
