-- The Postgres store's named queries (thotto/store/core.py loads them once; the SQLite file has
-- the same names). Parameters are numbered from 1; times are timestamptz. The hot paths (claim,
-- settle, enqueue, wake-ups) keep their statements in thotto/store/postgres.py.

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

-- Attempts, posts and their media links go with their jobs (ON DELETE CASCADE).
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

-- === users and API tokens ======================================================================

-- Removed users (see Store.remove_user) are skipped by every user look-up.
-- name: live_user
SELECT 1 FROM users WHERE id = $1 AND removed_at IS NULL

-- name: insert_user
INSERT INTO users (name, tier, role, created_at) VALUES ($1, $2, $3, $4)
RETURNING id, name, tier, role, created_at

-- name: user_by_id
SELECT id, name, tier, role, created_at FROM users WHERE id = $1 AND removed_at IS NULL

-- name: user_by_name
SELECT id, name, tier, role, created_at FROM users WHERE name = $1 AND removed_at IS NULL

-- name: users
SELECT id, name, tier, role, created_at FROM users WHERE removed_at IS NULL ORDER BY id

-- name: set_tier
UPDATE users SET tier = $2 WHERE id = $1 AND removed_at IS NULL
RETURNING id, name, tier, role, created_at

-- name: insert_token
INSERT INTO api_tokens (user_id, name, token_hash, created_at) VALUES ($1, $2, $3, $4)
RETURNING id, user_id, name, created_at, revoked_at

-- name: revoke_token
UPDATE api_tokens SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1
RETURNING id, user_id, name, created_at, revoked_at

-- name: tokens_of_user
SELECT id, user_id, name, created_at, revoked_at FROM api_tokens WHERE user_id = $1 ORDER BY id

-- name: user_by_token
SELECT u.id, u.name, u.tier, u.role, u.created_at FROM api_tokens t
JOIN users u ON u.id = t.user_id
WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND u.removed_at IS NULL

-- name: user_to_remove
SELECT id, name, tier, role, created_at FROM users WHERE id = $1 AND removed_at IS NULL FOR UPDATE

-- Every other admin's row is locked, so two admins removing each other cannot both pass.
-- name: other_admins
SELECT count(*) FROM (SELECT id FROM users WHERE role = 'admin' AND removed_at IS NULL
                      AND id <> $1 ORDER BY id FOR UPDATE) AS admins

-- name: cancel_users_posts
UPDATE jobs SET state = 'cancelled', finished_at = $2
WHERE state = 'pending' AND id IN (SELECT job_id FROM posts WHERE user_id = $1)

-- name: revoke_users_tokens
UPDATE api_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL

-- name: unlink_users_accounts
UPDATE accounts SET refresh_token_encrypted = '', needs_relink = true WHERE user_id = $1

-- name: mark_user_removed
UPDATE users SET removed_at = $2, name = name || '#' || id WHERE id = $1

-- === Reddit accounts and link requests =========================================================

-- name: link_account
INSERT INTO accounts (user_id, reddit_username, refresh_token_encrypted, scopes, needs_relink,
                      created_at)
VALUES ($1, $2, $3, $4, false, $5)
ON CONFLICT (user_id, reddit_username) DO UPDATE
SET refresh_token_encrypted = EXCLUDED.refresh_token_encrypted, scopes = EXCLUDED.scopes,
    needs_relink = false
RETURNING id, user_id, reddit_username, refresh_token_encrypted, scopes, needs_relink, created_at

-- name: account_by_id
SELECT id, user_id, reddit_username, refresh_token_encrypted, scopes, needs_relink, created_at
FROM accounts WHERE id = $1

-- name: accounts_of_user
SELECT id, user_id, reddit_username, refresh_token_encrypted, scopes, needs_relink, created_at
FROM accounts WHERE user_id = $1 ORDER BY id

-- name: set_account_token
UPDATE accounts SET refresh_token_encrypted = $2, needs_relink = false WHERE id = $1
RETURNING id, user_id, reddit_username, refresh_token_encrypted, scopes, needs_relink, created_at

-- name: set_needs_relink
UPDATE accounts SET needs_relink = $2 WHERE id = $1
RETURNING id, user_id, reddit_username, refresh_token_encrypted, scopes, needs_relink, created_at

-- name: forget_old_link_requests
DELETE FROM link_requests WHERE expires_at < $1

-- name: insert_link_request
INSERT INTO link_requests (state_hash, user_id, secret_hash, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5)
RETURNING state_hash, user_id, secret_hash, created_at, expires_at, used_at, held_code,
          verifier_hash

-- name: link_request
SELECT state_hash, user_id, secret_hash, created_at, expires_at, used_at, held_code, verifier_hash
FROM link_requests WHERE state_hash = $1

-- name: hold_link_code
UPDATE link_requests SET held_code = $2, verifier_hash = $3
WHERE state_hash = $1 AND held_code IS NULL AND used_at IS NULL AND expires_at > $4

-- name: use_link_request
UPDATE link_requests SET used_at = $2
WHERE state_hash = $1 AND used_at IS NULL AND expires_at > $2

-- === posts =====================================================================================

-- name: account_owner
SELECT user_id FROM accounts WHERE id = $1

-- A post's publishing job; its payload names the post once the post has its id.
-- name: insert_post_job
INSERT INTO jobs (queue, kind, payload, priority, run_at, max_attempts, created_at)
VALUES ($1, $2, $3, 0, $4, $5, $6) RETURNING id

-- name: insert_post
INSERT INTO posts (user_id, account_id, job_id, subreddit, title_key, content, title,
                   scheduled_for, recurrence, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, ($6::jsonb)->>'title', $7, $8::jsonb, $9, $9)
RETURNING id

-- name: set_job_payload
UPDATE jobs SET payload = $2 WHERE id = $1

-- A post with what its status is derived from (thotto/store/lifecycle.py); core.py reads the
-- columns by position.
-- name: post_select
SELECT p.id, p.user_id, p.account_id, p.content::text, p.scheduled_for, j.state, p.job_id,
       p.reddit_id, p.reddit_url, j.last_error, p.recurrence::text, p.created_at, p.updated_at,
       p.armed_at
FROM posts p JOIN jobs j ON j.id = p.job_id

-- name: post_by_id
SELECT p.id, p.user_id, p.account_id, p.content::text, p.scheduled_for, j.state, p.job_id,
       p.reddit_id, p.reddit_url, j.last_error, p.recurrence::text, p.created_at, p.updated_at,
       p.armed_at
FROM posts p JOIN jobs j ON j.id = p.job_id WHERE p.id = $1

-- name: post_for_update
SELECT p.id, p.user_id, p.account_id, p.content::text, p.scheduled_for, j.state, p.job_id,
       p.reddit_id, p.reddit_url, j.last_error, p.recurrence::text, p.created_at, p.updated_at,
       p.armed_at
FROM posts p JOIN jobs j ON j.id = p.job_id WHERE p.id = $1 FOR UPDATE

-- name: post_by_job
SELECT p.id, p.user_id, p.account_id, p.content::text, p.scheduled_for, j.state, p.job_id,
       p.reddit_id, p.reddit_url, j.last_error, p.recurrence::text, p.created_at, p.updated_at,
       p.armed_at
FROM posts p JOIN jobs j ON j.id = p.job_id WHERE p.job_id = $1

-- Duplicate detection: $1 account, $2 subreddit (any case), $3 title key, $4 since.
-- name: recent_posts
SELECT p.id, p.user_id, p.account_id, p.content::text, p.scheduled_for, j.state, p.job_id,
       p.reddit_id, p.reddit_url, j.last_error, p.recurrence::text, p.created_at, p.updated_at,
       p.armed_at
FROM posts p JOIN jobs j ON j.id = p.job_id
WHERE p.account_id = $1 AND lower(p.subreddit) = lower($2) AND p.title_key = $3
  AND (j.state IN ('pending', 'processing') OR (j.state = 'completed' AND j.finished_at >= $4))
ORDER BY p.id

-- name: set_post_content
UPDATE posts SET content = $2::jsonb, title = ($2::jsonb)->>'title', subreddit = $3,
                 title_key = $4
WHERE id = $1

-- name: set_post_schedule
UPDATE posts SET scheduled_for = $2 WHERE id = $1

-- name: set_job_run_at
UPDATE jobs SET run_at = $2 WHERE id = $1

-- name: set_post_updated
UPDATE posts SET updated_at = $2 WHERE id = $1

-- name: revive_job
UPDATE jobs SET state = 'pending', run_at = $2, attempt = 0, lease_owner = NULL, lease_until = NULL,
                started_at = NULL, finished_at = NULL, last_error = NULL, failure_cause = NULL
WHERE id = $1 AND state = 'dead'

-- name: cancel_post_job
UPDATE jobs SET state = 'cancelled', finished_at = $2 WHERE id = $1

-- name: set_publication
UPDATE posts SET reddit_id = $2, reddit_url = $3, updated_at = $4 WHERE id = $1

-- The earliest arming is kept, so a later reconciliation looks back far enough.
-- name: arm_post
UPDATE posts SET armed_at = coalesce(armed_at, $2) WHERE id = $1

-- name: disarm_post
UPDATE posts SET armed_at = NULL, updated_at = $2 WHERE id = $1 AND reddit_id IS NULL

-- name: post_of_removed_user
SELECT 1 FROM posts p JOIN users u ON u.id = p.user_id
WHERE p.id = $1 AND u.removed_at IS NOT NULL

-- name: unlink_post_media
DELETE FROM post_media WHERE post_id = $1

-- name: media_owner
SELECT user_id FROM media WHERE id = $1 AND ready

-- name: link_post_media
INSERT INTO post_media (post_id, media_id, position) VALUES ($1, $2, $3)

-- === recurring posts and engagement ============================================================

-- name: lock_post
SELECT id FROM posts WHERE id = $1 FOR UPDATE

-- name: follow_up_of
SELECT id FROM posts WHERE follows_post_id = $1

-- A follow-up carries its series' anchor: the previous post's, or the previous post's time.
-- name: set_follows
UPDATE posts SET follows_post_id = $2, series_start = (
    SELECT coalesce(series_start, scheduled_for) FROM posts WHERE id = $2)
WHERE id = $1

-- name: series_start
SELECT coalesce(series_start, scheduled_for) FROM posts WHERE id = $1

-- The latest read wins: an older reading (from a slower process) does not overwrite a newer.
-- name: set_engagement
UPDATE posts SET score = $2, comments = $3, engagement_at = $4
WHERE id = $1 AND reddit_id IS NOT NULL AND (engagement_at IS NULL OR engagement_at <= $4)

-- name: to_refresh
SELECT p.id, p.user_id, p.account_id, p.content::text, p.scheduled_for, j.state, p.job_id,
       p.reddit_id, p.reddit_url, j.last_error, p.recurrence::text, p.created_at, p.updated_at,
       p.armed_at
FROM posts p JOIN jobs j ON j.id = p.job_id
WHERE j.state = 'completed' AND j.finished_at >= $1 AND p.reddit_id IS NOT NULL
  AND (p.engagement_at IS NULL OR p.engagement_at < $2)
ORDER BY p.engagement_at NULLS FIRST, p.id LIMIT $3

-- name: subreddit_engagement
SELECT p.id, p.account_id, p.subreddit, p.scheduled_for, j.finished_at, p.score, p.comments,
       p.engagement_at
FROM posts p JOIN jobs j ON j.id = p.job_id
WHERE lower(p.subreddit) = lower($1) AND p.engagement_at IS NOT NULL
  AND j.state = 'completed' AND j.finished_at >= $2
ORDER BY j.finished_at, p.id

-- === community rules ===========================================================================

-- name: save_rules
INSERT INTO subreddits (name, rules, synced_at) VALUES ($1, $2::jsonb, $3)
ON CONFLICT (name) DO UPDATE SET rules = excluded.rules, synced_at = excluded.synced_at

-- name: rules_by_name
SELECT rules::text FROM subreddits WHERE name = $1

-- name: all_rules
SELECT rules::text FROM subreddits ORDER BY name

-- === media =====================================================================================

-- name: insert_media
INSERT INTO media (user_id, kind, width, height, removed, created_at)
VALUES ($1, $2, $3, $4, $5::jsonb, $6) RETURNING id

-- name: insert_media_chunk
INSERT INTO media_chunks (media_id, seq, data) VALUES ($1, $2, $3)

-- name: finish_media
UPDATE media SET ready = true, bytes = $2, sha256 = $3 WHERE id = $1
RETURNING id, user_id, kind, width, height, bytes, sha256, removed::text, created_at

-- name: media_by_id
SELECT id, user_id, kind, width, height, bytes, sha256, removed::text, created_at
FROM media WHERE id = $1 AND ready

-- name: media_of_user
SELECT id, user_id, kind, width, height, bytes, sha256, removed::text, created_at
FROM media WHERE id = $1 AND ready AND user_id = $2

-- name: media_of_user_for_update
SELECT id, user_id, kind, width, height, bytes, sha256, removed::text, created_at
FROM media WHERE id = $1 AND ready AND user_id = $2 FOR UPDATE

-- Newest first, ids below $2.
-- name: media_page
SELECT id, user_id, kind, width, height, bytes, sha256, removed::text, created_at
FROM media WHERE user_id = $1 AND ready AND id < $2 ORDER BY id DESC LIMIT $3

-- name: media_chunk
SELECT data FROM media_chunks WHERE media_id = $1 AND seq = $2

-- Posts not finished (their job pending or processing) that link the media.
-- name: media_live_posts
SELECT pm.post_id FROM post_media pm JOIN posts p ON p.id = pm.post_id
JOIN jobs j ON j.id = p.job_id
WHERE pm.media_id = $1 AND j.state IN ('pending', 'processing') ORDER BY pm.post_id

-- Chunks and links go with it (ON DELETE CASCADE).
-- name: delete_media
DELETE FROM media WHERE id = $1

-- Unused media created before $1 and unfinished uploads begun before $2, $3 at a time; SKIP
-- LOCKED lets processes purge together.
-- name: media_to_purge
SELECT m.id FROM media m
WHERE (m.ready AND m.created_at < $1
       AND NOT EXISTS (SELECT 1 FROM post_media pm WHERE pm.media_id = m.id))
   OR (NOT m.ready AND m.created_at < $2)
LIMIT $3 FOR UPDATE SKIP LOCKED

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
