-- The job tables on SQLite, version 1 of the "jobs" component (what the single-track
-- migrations 1-11 of thotto/store/sql/legacy had made of them). Applied by thotto/engine/store/sqlite.py
-- in one transaction. Times are INTEGER microseconds since the Unix epoch, UTC.

-- AUTOINCREMENT: a purged job's id is never handed out again (plain rowids reuse the highest
-- id once it is deleted). It costs about 0.7 µs per single-row insert here.
CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    queue         TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    payload       BLOB    NOT NULL,
    priority      INTEGER NOT NULL DEFAULT 0,
    run_at        INTEGER NOT NULL,
    -- pending | processing | completed | dead | cancelled; no CHECK constraint: it doubled the
    -- cost of an insert here, and only the store writes this column.
    state         TEXT    NOT NULL DEFAULT 'pending',
    attempt       INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL,
    dedupe_key    TEXT,
    lease_owner   TEXT,
    lease_until   INTEGER,
    created_at    INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER,
    last_error    TEXT,
    failure_cause TEXT
);
-- failure_cause: why a dead job died: 'system' (an outage, a timeout, a crash, an expired lease:
-- a retry may succeed), 'refused' (the job can never succeed as it is) or 'account' (its account
-- must be linked again). NULL unless dead.

-- Claiming: due pending jobs in claim order (run_at, priority high first, id = rowid, implicit).
CREATE INDEX jobs_due ON jobs (run_at, priority DESC) WHERE state = 'pending';

-- A dedupe key is unique among the live jobs of a queue; finished jobs free it.
CREATE UNIQUE INDEX jobs_dedupe ON jobs (queue, dedupe_key)
    WHERE dedupe_key IS NOT NULL AND state IN ('pending', 'processing');

-- Releasing expired leases.
CREATE INDEX jobs_lease ON jobs (lease_until) WHERE state = 'processing';

-- Purging finished jobs.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- The failures list (dead jobs, newest first). Partial, so only a job's death writes to it: an
-- index over every state would be written by every claim and completion (it cost the drain
-- 10-20% here). Other searches walk the ids newest first and stop at a page.
CREATE INDEX jobs_dead ON jobs (id) WHERE state = 'dead';

-- Attempt history: only attempts that did not complete (the happy path writes no row here).
-- Refunded attempts (deferred, released) can repeat an attempt number, hence a surrogate key.
CREATE TABLE job_attempts (
    id          INTEGER PRIMARY KEY,
    job_id      INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    owner       TEXT,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    outcome     TEXT    NOT NULL,
    error       TEXT
);
CREATE INDEX job_attempts_job ON job_attempts (job_id, attempt);

-- Queues an operator paused: no job of theirs is claimed until the row is deleted (resumed).
CREATE TABLE paused_queues (
    queue     TEXT PRIMARY KEY,
    paused_at INTEGER NOT NULL
);
