-- The SQLite job store's named queries: thotto/engine/store/core.py loads them once; the Postgres
-- file has the same names but for the hot paths' (at the end). Parameters are numbered from 1
-- (the hot paths' plain ? are positional); times are INTEGER microseconds since the epoch. One
-- writer thread serialises every write, so nothing here locks rows (Postgres says FOR UPDATE
-- where this file does not).


-- === jobs ======================================================================================

-- name: get_job
SELECT id, queue, kind, payload, priority, run_at, state, attempt, max_attempts, dedupe_key,
       lease_owner, lease_until, created_at, finished_at, last_error
FROM jobs WHERE id = ?1

-- name: job_for_update
SELECT id, queue, kind, payload, priority, run_at, state, attempt, max_attempts, dedupe_key,
       lease_owner, lease_until, created_at, finished_at, last_error
FROM jobs WHERE id = ?1

-- name: cancel_job
UPDATE jobs SET state = 'cancelled', finished_at = ?2 WHERE id = ?1
RETURNING id, queue, kind, payload, priority, run_at, state, attempt, max_attempts, dedupe_key,
          lease_owner, lease_until, created_at, finished_at, last_error

-- name: reschedule_job
UPDATE jobs SET run_at = ?2 WHERE id = ?1
RETURNING id, queue, kind, payload, priority, run_at, state, attempt, max_attempts, dedupe_key,
          lease_owner, lease_until, created_at, finished_at, last_error

-- A dead job whose dedupe key a live job took meanwhile stays dead.
-- name: redrive_job
UPDATE jobs AS j SET state = 'pending', run_at = ?2, attempt = 0, lease_owner = NULL, lease_until = NULL,
                  started_at = NULL, finished_at = NULL, failure_cause = NULL
WHERE j.id = ?1 AND j.state = 'dead'
  AND (j.dedupe_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM jobs o WHERE o.queue = j.queue AND o.dedupe_key = j.dedupe_key
          AND o.state IN ('pending', 'processing')))

-- Finished jobs with their attempts (no foreign keys here: the attempts first; the row count is
-- the jobs').
-- name: purge
DELETE FROM job_attempts WHERE job_id IN (SELECT id FROM jobs WHERE finished_at < ?1
                                          AND state IN ('completed', 'dead', 'cancelled'));
DELETE FROM jobs WHERE state IN ('completed', 'dead', 'cancelled') AND finished_at < ?1

-- The operator's search: thotto/store/core.py adds WHERE, ORDER BY and LIMIT.
-- name: search_jobs
SELECT id, queue, kind, payload, priority, run_at, state, attempt, max_attempts, dedupe_key,
       lease_owner, lease_until, created_at, finished_at, last_error, failure_cause
FROM jobs

-- name: job_record
SELECT id, queue, kind, payload, priority, run_at, state, attempt, max_attempts, dedupe_key,
       lease_owner, lease_until, created_at, finished_at, last_error, failure_cause
FROM jobs WHERE id = ?1

-- name: pause_queue
INSERT INTO paused_queues (queue, paused_at) VALUES (?1, ?2) ON CONFLICT (queue) DO NOTHING

-- name: paused_at
SELECT paused_at FROM paused_queues WHERE queue = ?1

-- name: resume_queue
DELETE FROM paused_queues WHERE queue = ?1

-- name: paused_queues
SELECT queue, paused_at FROM paused_queues ORDER BY queue

-- name: counts
SELECT queue, state, count(*) FROM jobs GROUP BY queue, state ORDER BY queue, state

-- The queue monitor's snapshot (Store.queue_activity; names as activity_rows in base.py):
-- ?1 now, ?2 since.
-- name: activity
SELECT queue, CASE WHEN run_at <= ?1 THEN 'due' ELSE 'delayed' END, count(*)
  FROM jobs WHERE state = 'pending' GROUP BY 1, 2
UNION ALL
SELECT queue, state, count(*) FROM jobs
 WHERE finished_at >= ?2 AND state IN ('completed', 'dead') GROUP BY 1, 2
UNION ALL
SELECT j.queue, 'attempt_' || a.outcome, count(*) FROM job_attempts a JOIN jobs j ON j.id = a.job_id
 WHERE a.finished_at >= ?2 AND a.outcome IN ('retry', 'dead', 'expired') GROUP BY 1, 2
UNION ALL
SELECT j.queue, 'attempt_refused', count(*) FROM job_attempts a JOIN jobs j ON j.id = a.job_id
 WHERE a.finished_at >= ?2 AND a.outcome = 'dead' AND j.state = 'dead'
   AND j.failure_cause IN ('refused', 'account') GROUP BY 1

-- Run times in seconds of up to ?2 jobs completed since ?1, most recent first.
-- name: activity_durations
SELECT queue, (finished_at - started_at) / 1e6 FROM jobs
 WHERE finished_at >= ?1 AND state = 'completed' AND started_at IS NOT NULL
 ORDER BY finished_at DESC LIMIT ?2

-- name: current_attempt
SELECT state, attempt, lease_owner, started_at, finished_at FROM jobs WHERE id = ?1

-- name: attempt_history
SELECT attempt, owner, started_at, finished_at, outcome, error FROM job_attempts
WHERE job_id = ?1 ORDER BY id

-- === the schema's versions (core.migrate, in the writer's BEGIN IMMEDIATE) ====================

-- name: prepare_schema
CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)

-- name: schema_version
PRAGMA user_version

-- name: component_versions
SELECT component, version FROM schema_versions

-- name: set_component_version
INSERT OR REPLACE INTO schema_versions (component, version) VALUES (?1, ?2)

-- name: keep_component_version
INSERT OR IGNORE INTO schema_versions (component, version) VALUES (?1, ?2)

-- {version}: core.PER_COMPONENT, filled in by core.migrate (a PRAGMA takes no parameters).
-- name: set_schema_version
PRAGMA user_version = {version}

-- === the hot paths (thotto/store/sqlite.py fills the {templates}) =============================

-- name: insert_job
INSERT INTO jobs (queue, kind, payload, priority, run_at, max_attempts, dedupe_key, created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)

-- name: insert_job_deduped
INSERT INTO jobs (queue, kind, payload, priority, run_at, max_attempts, dedupe_key, created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING

-- name: live_job_by_key
SELECT id, run_at FROM jobs WHERE queue = ? AND dedupe_key = ? AND dedupe_key IS NOT NULL AND state
    IN ('pending', 'processing')

-- Bulk insert of jobs sharing queue, kind, priority and max_attempts: ?5 is a JSON array of
-- [payload as text, run_at, created_at], parsed by SQLite (~1.2 µs a job here, against ~2.3 µs for
-- multi-row VALUES and ~5 µs for executemany).
-- name: insert_json
INSERT INTO jobs (queue, kind, payload, priority, run_at, max_attempts, dedupe_key, created_at)
    SELECT ?1, ?2, CAST(json_extract(value, '$[0]') AS BLOB), ?3, json_extract(value, '$[1]'), ?4,
    NULL, json_extract(value, '$[2]') FROM json_each(?5)

-- The same when the jobs also share run_at (?5) and created_at (?6), as an enqueue_many batch
-- usually does: ?7 is a JSON array of payloads, nothing to build per job.
-- name: insert_json_same_times
INSERT INTO jobs (queue, kind, payload, priority, run_at, max_attempts, dedupe_key, created_at)
    SELECT ?1, ?2, CAST(value AS BLOB), ?3, ?5, ?4, NULL, ?6 FROM json_each(?7)

-- Claiming takes two statements of one row each, in the writer's transaction: claim_rows reads the
-- jobs to claim as one JSON document (in claim order, as claim leaves them), then claim marks the
-- same jobs (same query, same snapshot, nothing in between). The rows travel as one string because
-- every row a statement returns is one more step, and sqlite3 releases and retakes the GIL around
-- each step: with the Trio thread busy, each retake can wait for a switch interval (5 ms), which
-- made a RETURNING claim of 1,000 rows take up to 100x longer under load. The Trio side decodes
-- the document (sqlite._claimed_jobs). Parameters: ?1 owner, ?2 lease_until, ?3 now, ?4 due_by, ?5
-- limit, ?6... queues ({queues}: the queue filter sqlite.py fills).
-- name: claim_rows
SELECT json_group_array(json_array(id, queue, kind, hex(payload), priority, run_at, attempt + 1,
    max_attempts, dedupe_key, created_at, last_error)) FROM (SELECT * FROM jobs WHERE state =
    'pending' AND run_at <= ?4 {queues}ORDER BY run_at, priority DESC, id LIMIT ?5)

-- name: claim
UPDATE jobs SET state = 'processing', lease_owner = ?1, lease_until = ?2, attempt = attempt + 1,
    started_at = ?3 WHERE id IN (SELECT id FROM jobs WHERE state = 'pending' AND run_at <= ?4
    {queues}ORDER BY run_at, priority DESC, id LIMIT ?5)

-- name: heartbeat
UPDATE jobs SET lease_until = ? WHERE id IN (SELECT value FROM json_each(?)) AND state =
    'processing' AND lease_owner = ? RETURNING id

-- Completes a run of held jobs in one statement. ?2 is a JSON array of their keys id * 2**20 +
-- attempt, so each job matches only with its own attempt. All or nothing: rows change only if all
-- ?4 jobs are held by ?3 (the count is evaluated once, before any row changes), so the row count
-- tells the outcome without a row back per job (see claim_rows on why rows cost). Joining the keys
-- (rather than id IN) builds no temporary index.
-- name: complete_all
UPDATE jobs SET state = 'completed', finished_at = ?1, lease_until = NULL FROM (SELECT value >> 20
    AS id, value & 1048575 AS attempt FROM json_each(?2)) AS k WHERE (SELECT count(*) FROM (SELECT
    value >> 20 AS id, value & 1048575 AS attempt FROM json_each(?2)) AS k JOIN jobs ON jobs.id =
    k.id AND jobs.attempt = k.attempt AND state = 'processing' AND lease_owner = ?3) = ?4 AND
    jobs.id = k.id AND jobs.attempt = k.attempt AND state = 'processing' AND lease_owner = ?3

-- The same when some are not held: completes those that are, returning their ids.
-- name: complete_many
UPDATE jobs SET state = 'completed', finished_at = ?1, lease_until = NULL FROM (SELECT value >> 20
    AS id, value & 1048575 AS attempt FROM json_each(?2)) AS k WHERE jobs.id = k.id AND jobs.attempt
    = k.attempt AND state = 'processing' AND lease_owner = ?3 RETURNING jobs.id

-- name: to_completed
UPDATE jobs SET state = 'completed', finished_at = ?, lease_until = NULL WHERE id = ?

-- name: held_job
SELECT state, attempt, max_attempts, lease_owner, started_at FROM jobs WHERE id = ?

-- name: to_dead
UPDATE jobs SET state = 'dead', finished_at = ?, lease_until = NULL, last_error = ?, failure_cause =
    ? WHERE id = ?

-- name: to_pending
UPDATE jobs SET state = 'pending', run_at = ?, attempt = attempt - ?, lease_owner = NULL,
    lease_until = NULL, last_error = coalesce(?, last_error) WHERE id = ?

-- name: insert_attempt
INSERT INTO job_attempts (job_id, attempt, owner, started_at, finished_at, outcome, error) VALUES (?, ?,
    ?, ?, ?, ?, ?)

-- The outcomes an outcome may have recorded (a Retry: retry, or dead on the last attempt).
-- name: attempt_recorded
SELECT 1 FROM job_attempts WHERE job_id = ? AND attempt = ? AND owner = ? AND outcome IN (?, ?)

-- Records each expired lease's attempt, then hands its job back (dead on its last attempt):
-- ?1 now, ?2 the error (see core.EXPIRED_ERROR). Rows: (id, new state).
-- name: release_expired
INSERT INTO job_attempts (job_id, attempt, owner, started_at, finished_at, outcome, error)
    SELECT id, attempt, lease_owner, started_at, ?1, 'expired', CASE WHEN attempt >= max_attempts
    THEN ?2 || '; no attempts left' ELSE ?2 END FROM jobs WHERE state = 'processing' AND
    lease_until < ?1 ORDER BY id;
UPDATE jobs SET state = CASE WHEN attempt >= max_attempts THEN 'dead' ELSE 'pending' END,
    run_at = CASE WHEN attempt >= max_attempts THEN run_at ELSE ?1 END,
    lease_owner = CASE WHEN attempt >= max_attempts THEN lease_owner END, lease_until = NULL,
    finished_at = CASE WHEN attempt >= max_attempts THEN ?1 ELSE finished_at END,
    last_error = CASE WHEN attempt >= max_attempts THEN ?2 || '; no attempts left' ELSE ?2 END,
    failure_cause = CASE WHEN attempt >= max_attempts THEN 'system' ELSE failure_cause END
WHERE state = 'processing' AND lease_until < ?1 RETURNING id, state

-- {queues}: the queue filter, and the paused queues left out.
-- name: next_due
SELECT run_at FROM jobs WHERE state = 'pending' {queues}ORDER BY run_at, priority DESC LIMIT 1
