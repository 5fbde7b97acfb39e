-- Queue operations and lasting failures (issue #18).

-- Queues an operator paused: no job of theirs is claimed until the row is deleted (resumed).
CREATE TABLE paused_queues (
    queue     TEXT PRIMARY KEY,
    paused_at INTEGER NOT NULL
);

-- Why a dead job died: 'system' (an outage, a timeout, a crash, an expired lease: a retry may
-- succeed), 'refused' (the job can never succeed as it is, e.g. Reddit refused the post's
-- content) or 'account' (its Reddit account must be linked again). NULL unless dead.
ALTER TABLE jobs ADD COLUMN failure_cause TEXT;

-- The operator's job search: newest first within a queue and state.
CREATE INDEX jobs_search ON jobs (queue, state, id);
