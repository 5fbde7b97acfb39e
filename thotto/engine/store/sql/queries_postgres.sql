-- The Postgres job store's named queries: thotto/engine/store/core.py loads them once; the SQLite
-- file has the same names but for the hot paths' (at the end). Parameters are numbered from 1;
-- times are timestamptz.


-- === jobs ======================================================================================

-- name: get_job
SELECT id, queue, kind, payload, priority, run_at, state, attempt, max_attempts, dedupe_key,
       lease_owner, lease_until, created_at, finished_at, last_error
FROM jobs WHERE id = $1

-- name: job_for_update
SELECT id, queue, kind, payload, priority, run_at, state, attempt, max_attempts, dedupe_key,
       lease_owner, lease_until, created_at, finished_at, last_error
FROM jobs WHERE id = $1 FOR UPDATE

-- name: cancel_job
UPDATE jobs SET state = 'cancelled', finished_at = $2 WHERE id = $1
RETURNING id, queue, kind, payload, priority, run_at, state, attempt, max_attempts, dedupe_key,
          lease_owner, lease_until, created_at, finished_at, last_error

-- name: reschedule_job
UPDATE jobs SET run_at = $2 WHERE id = $1
RETURNING id, queue, kind, payload, priority, run_at, state, attempt, max_attempts, dedupe_key,
          lease_owner, lease_until, created_at, finished_at, last_error

-- A dead job whose dedupe key a live job took meanwhile stays dead.
-- name: redrive_job
UPDATE jobs j SET state = 'pending', run_at = $2, attempt = 0, lease_owner = NULL, lease_until = NULL,
                  started_at = NULL, finished_at = NULL, failure_cause = NULL
WHERE j.id = $1 AND j.state = 'dead'
  AND (j.dedupe_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM jobs o WHERE o.queue = j.queue AND o.dedupe_key = j.dedupe_key
          AND o.state IN ('pending', 'processing')))

-- Attempts go with their jobs (ON DELETE CASCADE), and so do the rows of tables that refer to
-- them that way (the product's posts).
-- name: purge
DELETE FROM jobs WHERE state IN ('completed', 'dead', 'cancelled') AND finished_at < $1

-- The operator's search: thotto/store/core.py adds WHERE, ORDER BY and LIMIT.
-- name: search_jobs
SELECT id, queue, kind, payload, priority, run_at, state, attempt, max_attempts, dedupe_key,
       lease_owner, lease_until, created_at, finished_at, last_error, failure_cause
FROM jobs

-- name: job_record
SELECT id, queue, kind, payload, priority, run_at, state, attempt, max_attempts, dedupe_key,
       lease_owner, lease_until, created_at, finished_at, last_error, failure_cause
FROM jobs WHERE id = $1

-- name: pause_queue
INSERT INTO paused_queues (queue, paused_at) VALUES ($1, $2) ON CONFLICT (queue) DO NOTHING

-- name: paused_at
SELECT paused_at FROM paused_queues WHERE queue = $1

-- name: resume_queue
DELETE FROM paused_queues WHERE queue = $1

-- name: paused_queues
SELECT queue, paused_at FROM paused_queues ORDER BY queue

-- name: counts
SELECT queue, state, count(*) FROM jobs GROUP BY queue, state ORDER BY queue, state

-- The queue monitor's snapshot (Store.queue_activity; names as activity_rows in base.py):
-- $1 now, $2 since.
-- name: activity
SELECT queue, CASE WHEN run_at <= $1 THEN 'due' ELSE 'delayed' END, count(*)
  FROM jobs WHERE state = 'pending' GROUP BY 1, 2
UNION ALL
SELECT queue, state, count(*) FROM jobs
 WHERE finished_at >= $2 AND state IN ('completed', 'dead') GROUP BY 1, 2
UNION ALL
SELECT j.queue, 'attempt_' || a.outcome, count(*) FROM job_attempts a JOIN jobs j ON j.id = a.job_id
 WHERE a.finished_at >= $2 AND a.outcome IN ('retry', 'dead', 'expired') GROUP BY 1, 2
UNION ALL
SELECT j.queue, 'attempt_refused', count(*) FROM job_attempts a JOIN jobs j ON j.id = a.job_id
 WHERE a.finished_at >= $2 AND a.outcome = 'dead' AND j.state = 'dead'
   AND j.failure_cause IN ('refused', 'account') GROUP BY 1

-- Run times in seconds of up to $2 jobs completed since $1, most recent first.
-- name: activity_durations
SELECT queue, extract(epoch FROM finished_at - started_at)::float8 FROM jobs
 WHERE finished_at >= $1 AND state = 'completed' AND started_at IS NOT NULL
 ORDER BY finished_at DESC LIMIT $2

-- name: current_attempt
SELECT state, attempt, lease_owner, started_at, finished_at FROM jobs WHERE id = $1

-- name: attempt_history
SELECT attempt, owner, started_at, finished_at, outcome, error FROM job_attempts
WHERE job_id = $1 ORDER BY id

-- === the schema's versions (core.migrate, in one transaction) ================================

-- Processes starting at once apply each migration exactly once: the transaction-level advisory
-- lock (key 0x7407_7000_5C4E_3A01, "thotto" in hex-ish) serialises them.
-- name: prepare_schema
SELECT pg_advisory_xact_lock(8360774380087556609);
CREATE TABLE IF NOT EXISTS thotto_schema (id integer PRIMARY KEY CHECK (id = 1),
    version integer NOT NULL, migrated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS thotto_schema_versions (component text PRIMARY KEY,
    version integer NOT NULL, migrated_at timestamptz NOT NULL DEFAULT now())

-- name: schema_version
SELECT version FROM thotto_schema WHERE id = 1

-- name: component_versions
SELECT component, version FROM thotto_schema_versions

-- name: set_component_version
INSERT INTO thotto_schema_versions (component, version) VALUES ($1, $2)
ON CONFLICT (component) DO UPDATE SET version = $2, migrated_at = now()

-- name: keep_component_version
INSERT INTO thotto_schema_versions (component, version) VALUES ($1, $2)
ON CONFLICT (component) DO NOTHING

-- {version}: core.PER_COMPONENT, filled in by core.migrate.
-- name: set_schema_version
INSERT INTO thotto_schema (id, version) VALUES (1, {version})
ON CONFLICT (id) DO UPDATE SET version = {version}, migrated_at = now()

-- === the hot paths (thotto/store/postgres.py fills the {templates}) ===========================

-- name: notify
SELECT pg_notify('thotto_wakeup', $1::text)

-- Enqueue with dedupe keys: ids are drawn up front so every input row can be matched to its
-- outcome. Rows are inserted in input order, so within the batch the first job with a key wins
-- and later ones conflict with it. The lateral join finds pre-existing live jobs (the
-- statement's snapshot does not see rows the statement itself inserted: those are resolved in
-- Python). $9 is the wake-up's NOTIFY payload (see postgres._notify_cte).
-- name: insert_jobs_dedupe
WITH n AS MATERIALIZED (SELECT pg_notify('thotto_wakeup', $9::text)), u AS MATERIALIZED (
    SELECT nextval('jobs_id_seq'::regclass) AS id, t.*
    FROM unnest($1::text[], $2::text[], $3::bytea[], $4::int[], $5::timestamptz[], $6::int[],
                $7::text[], $8::timestamptz[])
         WITH ORDINALITY AS t(queue, kind, payload, priority, run_at, max_attempts, dedupe_key,
                              created_at, ord)
         CROSS JOIN n
), ins AS (
    INSERT INTO jobs (id, queue, kind, payload, priority, run_at, max_attempts, dedupe_key,
                      created_at)
    SELECT id, queue, kind, payload, priority, run_at, max_attempts, dedupe_key, created_at
    FROM u ORDER BY ord
    ON CONFLICT (queue, dedupe_key)
        WHERE state IN ('pending', 'processing') AND dedupe_key IS NOT NULL
        DO NOTHING
    RETURNING id
)
SELECT u.id, u.run_at, ins.id IS NOT NULL AS created, e.id AS existing_id,
       e.run_at AS existing_run_at
FROM u
LEFT JOIN ins ON ins.id = u.id
LEFT JOIN LATERAL (
    SELECT j.id, j.run_at FROM jobs j
    WHERE ins.id IS NULL AND j.queue = u.queue AND j.dedupe_key = u.dedupe_key
      AND j.state IN ('pending', 'processing')
    LIMIT 1
) e ON true
ORDER BY u.ord

-- name: find_live_by_key
SELECT id, run_at FROM jobs
WHERE queue = $1 AND dedupe_key = $2 AND state IN ('pending', 'processing')

-- Jobs of paused queues are never due nor claimed: the statement reads paused_queues itself, so
-- a pause committed in any process holds for every claim that starts after it. The list is an
-- InitPlan, read once per statement; with nothing paused, each row is compared with an empty
-- array. Written as the claim index's own order with LIMIT 1, so the plan is an index scan
-- whatever the statistics said when asyncpg prepared it.
-- name: next_due
SELECT run_at FROM jobs
WHERE state = 'pending' AND queue <> ALL(ARRAY(SELECT queue FROM paused_queues)) {queues}
ORDER BY run_at, priority DESC, id LIMIT 1

-- The ids go through ARRAY(...) so the update finds its rows by primary key whatever the planner
-- believes about the table (a join with a CTE may hash-join against a full scan). The rows are
-- locked by the inner SELECT (which rechecks its WHERE on the newest row version), so the outer
-- UPDATE needs no state condition of its own. The claimed jobs come back as one row of arrays,
-- one per column, in claim order: a row per job cost ~3 µs a job of this process's CPU to decode
-- into records and Jobs on the sidecar, against ~1 µs for the arrays (zipped into Jobs on the
-- Trio side, postgres._claimed_jobs). A JSON document instead cost the server more than it saved.
-- name: claim
WITH claimed AS (
    UPDATE jobs j
    SET state = 'processing', attempt = j.attempt + 1, lease_owner = $3, lease_until = $4,
        started_at = $5
    WHERE j.id = ANY(ARRAY(
        SELECT id FROM jobs
        WHERE state = 'pending' AND run_at <= $1
          AND queue <> ALL(ARRAY(SELECT queue FROM paused_queues)) {queues}
        ORDER BY run_at, priority DESC, id
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    ))
    RETURNING j.id, j.queue, j.kind, j.payload, j.priority, j.run_at, j.attempt,
              j.max_attempts, j.dedupe_key, j.created_at, j.last_error
)
SELECT array_agg(id), array_agg(queue), array_agg(kind), array_agg(payload), array_agg(priority),
       array_agg(run_at), array_agg(attempt), array_agg(max_attempts), array_agg(dedupe_key),
       array_agg(created_at), array_agg(last_error)
FROM (SELECT * FROM claimed ORDER BY run_at, priority DESC, id) c

-- name: heartbeat
UPDATE jobs SET lease_until = $3
WHERE id = ANY($2::bigint[]) AND state = 'processing' AND lease_owner = $1
RETURNING id

-- One statement settles a whole batch of outcomes. Kinds: completed, retry, dead, deferred,
-- released. Only outcomes matching (processing, owner, attempt) apply; the rest are checked for
-- an identical earlier record (ALREADY) against the statement's snapshot, i.e. before this
-- update. {notify} and {join} add the wake-up's NOTIFY ($9) when outcomes make jobs due.
-- name: settle
WITH {notify} u AS (
    SELECT u.* FROM unnest($3::bigint[], $4::int[], $5::text[], $6::timestamptz[], $7::text[],
                           $8::text[])
        WITH ORDINALITY AS u(id, attempt, kind, run_at, error, cause, ord) {join}
), upd AS (
    UPDATE jobs j SET
        state = CASE
            WHEN u.kind IN ('completed', 'dead') THEN u.kind
            WHEN u.kind = 'retry' AND j.attempt >= j.max_attempts THEN 'dead'
            ELSE 'pending' END,
        attempt = CASE WHEN u.kind IN ('deferred', 'released') THEN j.attempt - 1
                       ELSE j.attempt END,
        run_at = CASE WHEN u.kind IN ('retry', 'deferred') THEN u.run_at
                      WHEN u.kind = 'released' THEN $2
                      ELSE j.run_at END,
        lease_until = NULL,
        finished_at = CASE
            WHEN u.kind IN ('completed', 'dead') THEN $2
            WHEN u.kind = 'retry' AND j.attempt >= j.max_attempts THEN $2
            END,
        last_error = CASE WHEN u.kind IN ('retry', 'dead') THEN u.error ELSE j.last_error END,
        failure_cause = CASE
            WHEN u.kind = 'dead' THEN u.cause
            WHEN u.kind = 'retry' AND j.attempt >= j.max_attempts THEN 'system'
            END
    FROM u
    WHERE j.id = u.id AND j.attempt = u.attempt AND j.state = 'processing' AND j.lease_owner = $1
    RETURNING u.ord, u.kind, u.error, j.id, j.state, j.attempt AS new_attempt, j.run_at,
              j.started_at
), hist AS (
    INSERT INTO job_attempts (job_id, attempt, owner, started_at, finished_at, outcome, error)
    SELECT upd.id, u.attempt, $1, upd.started_at, $2,
           CASE WHEN upd.kind = 'retry' AND upd.state = 'dead' THEN 'dead' ELSE upd.kind END,
           upd.error
    FROM upd JOIN u ON u.ord = upd.ord
    WHERE upd.kind <> 'completed'
)
SELECT ord, 'ok' AS status, CASE WHEN state = 'pending' THEN run_at END AS wake FROM upd
UNION ALL
SELECT u.ord,
       CASE WHEN
           (u.kind = 'completed' AND EXISTS (
               SELECT 1 FROM jobs j
               WHERE j.id = u.id AND j.state = 'completed' AND j.attempt = u.attempt
                 AND j.lease_owner = $1))
           OR (u.kind <> 'completed' AND EXISTS (
               SELECT 1 FROM job_attempts h
               WHERE h.job_id = u.id AND h.attempt = u.attempt AND h.owner = $1
                 AND (h.outcome = u.kind OR (u.kind = 'retry' AND h.outcome = 'dead'))))
       THEN 'already' ELSE 'lease_lost' END,
       NULL
FROM u WHERE u.ord NOT IN (SELECT ord FROM upd)

-- A batch of Completed outcomes only, one row back: how many applied and, only if not all did,
-- the ids that did (the rest are sorted into ALREADY and LEASE_LOST by completed_already,
-- rarely). $4 holds each job's key id * 2^20 + attempt. The rows are found through the primary
-- key: with state = 'processing' written plainly the planner may pick the small partial index
-- jobs_lease instead, and scan it whole (dead entries included, so more with every batch until a
-- vacuum) for each batch; once the table was analysed that plan made a batch of 1,000 take
-- ~140 ms. The state is compared to an InitPlan value, which the planner cannot match to the
-- index predicate.
-- name: complete
WITH done AS (
    UPDATE jobs j SET state = 'completed', lease_until = NULL, finished_at = $2
    WHERE j.id = ANY($3::bigint[]) AND j.state = (SELECT 'processing'::text)
      AND j.lease_owner = $1 AND j.id * 1048576 + j.attempt = ANY($4::bigint[])
    RETURNING j.id
)
SELECT count(*), CASE WHEN count(*) < cardinality($3::bigint[]) THEN array_agg(id) END
FROM done

-- name: completed_already
SELECT u.ord FROM unnest($2::bigint[], $3::int[]) WITH ORDINALITY AS u(id, attempt, ord)
JOIN jobs j ON j.id = u.id
WHERE j.state = 'completed' AND j.attempt = u.attempt AND j.lease_owner = $1

-- The rare settle path, one outcome at a time (core.settle_in_order): a batch naming a job twice.
-- name: held_job
SELECT state, attempt, max_attempts, lease_owner, started_at FROM jobs WHERE id = $1 FOR UPDATE

-- name: to_completed
UPDATE jobs SET state = 'completed', finished_at = $1, lease_until = NULL WHERE id = $2

-- name: to_dead
UPDATE jobs SET state = 'dead', finished_at = $1, lease_until = NULL, last_error = $2,
    failure_cause = $3 WHERE id = $4

-- name: to_pending
UPDATE jobs SET state = 'pending', run_at = $1, attempt = attempt - $2, lease_owner = NULL,
    lease_until = NULL, last_error = coalesce($3, last_error) WHERE id = $4

-- name: insert_attempt
INSERT INTO job_attempts (job_id, attempt, owner, started_at, finished_at, outcome, error)
VALUES ($1, $2, $3, $4, $5, $6, $7)

-- The outcomes an outcome may have recorded (a Retry: retry, or dead on the last attempt).
-- name: attempt_recorded
SELECT 1 FROM job_attempts WHERE job_id = $1 AND attempt = $2 AND owner = $3
    AND outcome IN ($4, $5)

-- name: release_expired
WITH upd AS (
    UPDATE jobs j SET
        state = CASE WHEN j.attempt >= j.max_attempts THEN 'dead' ELSE 'pending' END,
        run_at = CASE WHEN j.attempt >= j.max_attempts THEN j.run_at ELSE $1 END,
        lease_until = NULL,
        finished_at = CASE WHEN j.attempt >= j.max_attempts THEN $1 END,
        last_error = CASE WHEN j.attempt >= j.max_attempts THEN $2 || '; no attempts left'
                          ELSE $2 END,
        failure_cause = CASE WHEN j.attempt >= j.max_attempts THEN 'system' END
    WHERE j.id = ANY(ARRAY(
        SELECT id FROM jobs
        WHERE state = 'processing' AND lease_until < $1
        FOR UPDATE SKIP LOCKED
    ))
    RETURNING j.id, j.state, j.attempt, j.lease_owner AS owner, j.started_at
), hist AS (
    INSERT INTO job_attempts (job_id, attempt, owner, started_at, finished_at, outcome, error)
    SELECT id, attempt, owner, started_at, $1, 'expired',
           CASE WHEN state = 'dead' THEN $2 || '; no attempts left' ELSE $2 END FROM upd
)
SELECT id, state FROM upd ORDER BY id
