-- A sent practice says when it needs the user: "to_correct" (an institution rejected its
-- filing) and "to_resend" (a filing failed or is without news) join the states (PostgreSQL).
ALTER TABLE practices DROP CONSTRAINT practices_state_check;
ALTER TABLE practices ADD CONSTRAINT practices_state_check
    CHECK (state IN ('draft', 'in_progress', 'to_correct', 'to_resend', 'completed', 'archived'));

-- Sent practices that were called "completed" or "in progress" with a rejection or a failure.
UPDATE practices SET state = 'to_correct'
WHERE state IN ('in_progress', 'completed')
  AND EXISTS (SELECT 1 FROM deliveries d WHERE d.practice_id = practices.id AND d.state = 'rejected');
UPDATE practices SET state = 'to_resend'
WHERE state IN ('in_progress', 'completed')
  AND EXISTS (SELECT 1 FROM deliveries d WHERE d.practice_id = practices.id AND d.state IN ('failed', 'no_news'));
