-- Queue operations and lasting failures (issue #18).

-- Queues an operator paused: no job of theirs is claimed, by any process, until the row is
-- deleted (resumed). Claims read it in the statement that claims.
CREATE TABLE paused_queues (
    queue      text PRIMARY KEY,
    paused_at  timestamptz NOT NULL
);

-- Why a dead job died: 'system' (an outage, a timeout, a crash, an expired lease: a retry may
-- succeed), 'refused' (the job can never succeed as it is, e.g. Reddit refused the post's
-- content) or 'account' (its Reddit account must be linked again). NULL unless dead.
ALTER TABLE jobs ADD COLUMN failure_cause text;

-- The failures list (dead jobs, newest first). Partial, so only a job's death writes to it: an
-- index over every state would be written by every claim and completion (it cost the drain
-- 10-20% here). Other searches walk the ids newest first and stop at a page.
CREATE INDEX jobs_dead ON jobs (id) WHERE state = 'dead';
