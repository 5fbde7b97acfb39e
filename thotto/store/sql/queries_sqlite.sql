-- The SQLite store's named queries (thotto/store/core.py loads them once; the Postgres file has
-- the same names). Parameters are numbered from 1; times are INTEGER microseconds since the
-- epoch. One writer thread serialises every write, so nothing here locks rows (Postgres says
-- where this file does not). The hot paths (claim, settle, enqueue, wake-ups) keep
-- their statements in thotto/store/sqlite.py.

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

-- Finished jobs with their attempts, posts and the posts' media links (no foreign keys here:
-- each table is emptied in turn, the jobs last; the row count is the jobs').
-- name: purge
DELETE FROM job_attempts WHERE job_id IN (SELECT id FROM jobs WHERE finished_at < ?1
                                      AND state IN ('completed', 'dead', 'cancelled'));
DELETE FROM post_media WHERE post_id IN (SELECT p.id FROM posts p JOIN jobs j ON j.id = p.job_id
                                         WHERE j.finished_at < ?1
                                         AND j.state IN ('completed', 'dead', 'cancelled'));
DELETE FROM posts WHERE job_id IN (SELECT id FROM jobs WHERE finished_at < ?1
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

-- === users and API tokens ======================================================================

-- Removed users (see Store.remove_user) are skipped by every user look-up.
-- name: live_user
SELECT 1 FROM users WHERE id = ?1 AND removed_at IS NULL

-- name: insert_user
INSERT INTO users (name, tier, role, created_at) VALUES (?1, ?2, ?3, ?4)
RETURNING id, name, tier, role, created_at

-- name: user_by_id
SELECT id, name, tier, role, created_at FROM users WHERE id = ?1 AND removed_at IS NULL

-- name: user_by_name
SELECT id, name, tier, role, created_at FROM users WHERE name = ?1 AND removed_at IS NULL

-- name: users
SELECT id, name, tier, role, created_at FROM users WHERE removed_at IS NULL ORDER BY id

-- name: set_tier
UPDATE users SET tier = ?2 WHERE id = ?1 AND removed_at IS NULL
RETURNING id, name, tier, role, created_at

-- name: insert_token
INSERT INTO api_tokens (user_id, name, token_hash, created_at) VALUES (?1, ?2, ?3, ?4)
RETURNING id, user_id, name, created_at, revoked_at

-- name: revoke_token
UPDATE api_tokens SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1
RETURNING id, user_id, name, created_at, revoked_at

-- name: tokens_of_user
SELECT id, user_id, name, created_at, revoked_at FROM api_tokens WHERE user_id = ?1 ORDER BY id

-- name: user_by_token
SELECT u.id, u.name, u.tier, u.role, u.created_at FROM api_tokens t
JOIN users u ON u.id = t.user_id
WHERE t.token_hash = ?1 AND t.revoked_at IS NULL AND u.removed_at IS NULL

-- name: user_to_remove
SELECT id, name, tier, role, created_at FROM users WHERE id = ?1 AND removed_at IS NULL

-- name: other_admins
SELECT count(*) FROM users WHERE role = 'admin' AND removed_at IS NULL AND id <> ?1

-- name: cancel_users_posts
UPDATE jobs SET state = 'cancelled', finished_at = ?2
WHERE state = 'pending' AND id IN (SELECT job_id FROM posts WHERE user_id = ?1)

-- name: revoke_users_tokens
UPDATE api_tokens SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL

-- name: unlink_users_accounts
UPDATE accounts SET refresh_token_encrypted = x'', needs_relink = 1 WHERE user_id = ?1

-- name: mark_user_removed
UPDATE users SET removed_at = ?2, name = name || '#' || id WHERE id = ?1

-- === Reddit accounts and link requests =========================================================

-- name: link_account
INSERT INTO accounts (user_id, reddit_username, refresh_token_encrypted, scopes, needs_relink,
                      created_at)
VALUES (?1, ?2, ?3, ?4, 0, ?5)
ON CONFLICT (user_id, reddit_username) DO UPDATE
SET refresh_token_encrypted = EXCLUDED.refresh_token_encrypted, scopes = EXCLUDED.scopes,
    needs_relink = 0
RETURNING id, user_id, reddit_username, refresh_token_encrypted, scopes, needs_relink, created_at

-- name: account_by_id
SELECT id, user_id, reddit_username, refresh_token_encrypted, scopes, needs_relink, created_at
FROM accounts WHERE id = ?1

-- name: accounts_of_user
SELECT id, user_id, reddit_username, refresh_token_encrypted, scopes, needs_relink, created_at
FROM accounts WHERE user_id = ?1 ORDER BY id

-- name: set_account_token
UPDATE accounts SET refresh_token_encrypted = ?2, needs_relink = 0 WHERE id = ?1
RETURNING id, user_id, reddit_username, refresh_token_encrypted, scopes, needs_relink, created_at

-- name: set_needs_relink
UPDATE accounts SET needs_relink = ?2 WHERE id = ?1
RETURNING id, user_id, reddit_username, refresh_token_encrypted, scopes, needs_relink, created_at

-- name: forget_old_link_requests
DELETE FROM link_requests WHERE expires_at < ?1

-- name: insert_link_request
INSERT INTO link_requests (state_hash, user_id, secret_hash, created_at, expires_at)
VALUES (?1, ?2, ?3, ?4, ?5)
RETURNING state_hash, user_id, secret_hash, created_at, expires_at, used_at, held_code,
          verifier_hash

-- name: link_request
SELECT state_hash, user_id, secret_hash, created_at, expires_at, used_at, held_code, verifier_hash
FROM link_requests WHERE state_hash = ?1

-- name: hold_link_code
UPDATE link_requests SET held_code = ?2, verifier_hash = ?3
WHERE state_hash = ?1 AND held_code IS NULL AND used_at IS NULL AND expires_at > ?4

-- name: use_link_request
UPDATE link_requests SET used_at = ?2
WHERE state_hash = ?1 AND used_at IS NULL AND expires_at > ?2

-- === posts =====================================================================================

-- name: account_owner
SELECT user_id FROM accounts WHERE id = ?1

-- A post's publishing job; its payload names the post once the post has its id.
-- name: insert_post_job
INSERT INTO jobs (queue, kind, payload, priority, run_at, max_attempts, created_at)
VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6) RETURNING id

-- name: insert_post
INSERT INTO posts (user_id, account_id, job_id, subreddit, title_key, content, scheduled_for,
                   recurrence, created_at, updated_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)
RETURNING id

-- name: set_job_payload
UPDATE jobs SET payload = ?2 WHERE id = ?1

-- A post with what its status is derived from (thotto/store/lifecycle.py); core.py reads the
-- columns by position.
-- name: post_select
SELECT p.id, p.user_id, p.account_id, p.content, p.scheduled_for, j.state, p.job_id,
       p.reddit_id, p.reddit_url, j.last_error, p.recurrence, p.created_at, p.updated_at,
       p.armed_at
FROM posts p JOIN jobs j ON j.id = p.job_id

-- name: post_by_id
SELECT p.id, p.user_id, p.account_id, p.content, p.scheduled_for, j.state, p.job_id,
       p.reddit_id, p.reddit_url, j.last_error, p.recurrence, p.created_at, p.updated_at,
       p.armed_at
FROM posts p JOIN jobs j ON j.id = p.job_id WHERE p.id = ?1

-- name: post_for_update
SELECT p.id, p.user_id, p.account_id, p.content, p.scheduled_for, j.state, p.job_id,
       p.reddit_id, p.reddit_url, j.last_error, p.recurrence, p.created_at, p.updated_at,
       p.armed_at
FROM posts p JOIN jobs j ON j.id = p.job_id WHERE p.id = ?1

-- name: post_by_job
SELECT p.id, p.user_id, p.account_id, p.content, p.scheduled_for, j.state, p.job_id,
       p.reddit_id, p.reddit_url, j.last_error, p.recurrence, p.created_at, p.updated_at,
       p.armed_at
FROM posts p JOIN jobs j ON j.id = p.job_id WHERE p.job_id = ?1

-- Duplicate detection: ?1 account, ?2 subreddit (any case: the column is COLLATE NOCASE),
-- ?3 title key, ?4 since.
-- name: recent_posts
SELECT p.id, p.user_id, p.account_id, p.content, p.scheduled_for, j.state, p.job_id,
       p.reddit_id, p.reddit_url, j.last_error, p.recurrence, p.created_at, p.updated_at,
       p.armed_at
FROM posts p JOIN jobs j ON j.id = p.job_id
WHERE p.account_id = ?1 AND p.subreddit = ?2 AND p.title_key = ?3
  AND (j.state IN ('pending', 'processing') OR (j.state = 'completed' AND j.finished_at >= ?4))
ORDER BY p.id

-- name: set_post_content
UPDATE posts SET content = ?2, subreddit = ?3, title_key = ?4
WHERE id = ?1

-- name: set_post_schedule
UPDATE posts SET scheduled_for = ?2 WHERE id = ?1

-- name: set_job_run_at
UPDATE jobs SET run_at = ?2 WHERE id = ?1

-- name: set_post_updated
UPDATE posts SET updated_at = ?2 WHERE id = ?1

-- name: revive_job
UPDATE jobs SET state = 'pending', run_at = ?2, attempt = 0, lease_owner = NULL, lease_until = NULL,
                started_at = NULL, finished_at = NULL, last_error = NULL, failure_cause = NULL
WHERE id = ?1 AND state = 'dead'

-- name: cancel_post_job
UPDATE jobs SET state = 'cancelled', finished_at = ?2 WHERE id = ?1

-- name: set_publication
UPDATE posts SET reddit_id = ?2, reddit_url = ?3, updated_at = ?4 WHERE id = ?1

-- The earliest arming is kept, so a later reconciliation looks back far enough.
-- name: arm_post
UPDATE posts SET armed_at = coalesce(armed_at, ?2) WHERE id = ?1

-- name: disarm_post
UPDATE posts SET armed_at = NULL, updated_at = ?2 WHERE id = ?1 AND reddit_id IS NULL

-- name: post_of_removed_user
SELECT 1 FROM posts p JOIN users u ON u.id = p.user_id
WHERE p.id = ?1 AND u.removed_at IS NOT NULL

-- name: unlink_post_media
DELETE FROM post_media WHERE post_id = ?1

-- name: media_owner
SELECT user_id FROM media WHERE id = ?1 AND ready = 1

-- name: link_post_media
INSERT INTO post_media (post_id, media_id, position) VALUES (?1, ?2, ?3)

-- === recurring posts and engagement ============================================================

-- name: lock_post
SELECT id FROM posts WHERE id = ?1

-- name: follow_up_of
SELECT id FROM posts WHERE follows_post_id = ?1

-- A follow-up carries its series' anchor: the previous post's, or the previous post's time.
-- name: set_follows
UPDATE posts SET follows_post_id = ?2, series_start = (
    SELECT coalesce(series_start, scheduled_for) FROM posts WHERE id = ?2)
WHERE id = ?1

-- name: series_start
SELECT coalesce(series_start, scheduled_for) FROM posts WHERE id = ?1

-- The latest read wins: an older reading (from a slower process) does not overwrite a newer.
-- name: set_engagement
UPDATE posts SET score = ?2, comments = ?3, engagement_at = ?4
WHERE id = ?1 AND reddit_id IS NOT NULL AND (engagement_at IS NULL OR engagement_at <= ?4)

-- name: to_refresh
SELECT p.id, p.user_id, p.account_id, p.content, p.scheduled_for, j.state, p.job_id,
       p.reddit_id, p.reddit_url, j.last_error, p.recurrence, p.created_at, p.updated_at,
       p.armed_at
FROM posts p JOIN jobs j ON j.id = p.job_id
WHERE j.state = 'completed' AND j.finished_at >= ?1 AND p.reddit_id IS NOT NULL
  AND (p.engagement_at IS NULL OR p.engagement_at < ?2)
ORDER BY p.engagement_at NULLS FIRST, p.id LIMIT ?3

-- name: subreddit_engagement
SELECT p.id, p.account_id, p.subreddit, p.scheduled_for, j.finished_at, p.score, p.comments,
       p.engagement_at
FROM posts p JOIN jobs j ON j.id = p.job_id
WHERE p.subreddit = ?1 AND p.engagement_at IS NOT NULL
  AND j.state = 'completed' AND j.finished_at >= ?2
ORDER BY j.finished_at, p.id

-- === community rules ===========================================================================

-- name: save_rules
INSERT INTO subreddits (name, rules, synced_at) VALUES (?1, ?2, ?3)
ON CONFLICT (name) DO UPDATE SET rules = excluded.rules, synced_at = excluded.synced_at

-- name: rules_by_name
SELECT rules FROM subreddits WHERE name = ?1

-- name: all_rules
SELECT rules FROM subreddits ORDER BY name

-- === media =====================================================================================

-- name: insert_media
INSERT INTO media (user_id, kind, width, height, removed, created_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id

-- name: insert_media_chunk
INSERT INTO media_chunks (media_id, seq, data) VALUES (?1, ?2, ?3)

-- name: finish_media
UPDATE media SET ready = 1, bytes = ?2, sha256 = ?3 WHERE id = ?1
RETURNING id, user_id, kind, width, height, bytes, sha256, removed, created_at

-- name: media_by_id
SELECT id, user_id, kind, width, height, bytes, sha256, removed, created_at
FROM media WHERE id = ?1 AND ready = 1

-- name: media_of_user
SELECT id, user_id, kind, width, height, bytes, sha256, removed, created_at
FROM media WHERE id = ?1 AND ready = 1 AND user_id = ?2

-- name: media_of_user_for_update
SELECT id, user_id, kind, width, height, bytes, sha256, removed, created_at
FROM media WHERE id = ?1 AND ready = 1 AND user_id = ?2

-- Newest first, ids below ?2.
-- name: media_page
SELECT id, user_id, kind, width, height, bytes, sha256, removed, created_at
FROM media WHERE user_id = ?1 AND ready = 1 AND id < ?2 ORDER BY id DESC LIMIT ?3

-- name: media_chunk
SELECT data FROM media_chunks WHERE media_id = ?1 AND seq = ?2

-- Posts not finished (their job pending or processing) that link the media.
-- name: media_live_posts
SELECT pm.post_id FROM post_media pm JOIN posts p ON p.id = pm.post_id
JOIN jobs j ON j.id = p.job_id
WHERE pm.media_id = ?1 AND j.state IN ('pending', 'processing') ORDER BY pm.post_id

-- name: delete_media
DELETE FROM post_media WHERE media_id = ?1;
DELETE FROM media_chunks WHERE media_id = ?1;
DELETE FROM media WHERE id = ?1

-- Unused media created before ?1 (a link to a purged post is no use) and unfinished uploads
-- begun before ?2, ?3 at a time.
-- name: media_to_purge
SELECT m.id FROM media m
WHERE (m.ready = 1 AND m.created_at < ?1
       AND NOT EXISTS (SELECT 1 FROM post_media pm JOIN posts p ON p.id = pm.post_id
                       WHERE pm.media_id = m.id))
   OR (m.ready = 0 AND m.created_at < ?2)
LIMIT ?3

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

-- {}: the outcomes an outcome type may have recorded.
-- name: attempt_recorded
SELECT 1 FROM job_attempts WHERE job_id = ? AND attempt = ? AND owner = ? AND outcome IN ({})

-- name: expired
SELECT id, attempt, max_attempts, lease_owner, started_at FROM jobs WHERE state = 'processing' AND
    lease_until < ?

-- {queues}: the queue filter, and the paused queues left out.
-- name: next_due
SELECT run_at FROM jobs WHERE state = 'pending' {queues}ORDER BY run_at, priority DESC LIMIT 1
