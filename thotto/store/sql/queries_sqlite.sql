-- The SQLite product store's named queries: thotto/store/core.py loads them once, over the job
-- store's (thotto/engine/store/sql); the Postgres file has the same names. Parameters are numbered
-- from 1; times are INTEGER microseconds since the epoch. One writer thread serialises every
-- write, so nothing here locks rows (Postgres says FOR UPDATE where this file does not).


-- === purge: the product's rows go with their finished jobs =====================================

-- Finished jobs with their attempts, posts and the posts' media links (no foreign keys here:
-- each table is emptied in turn, the jobs last; the row count is the jobs'). Replaces the job
-- store's purge.
-- name: purge
DELETE FROM job_attempts WHERE job_id IN (SELECT id FROM jobs WHERE finished_at < ?1
                                      AND state IN ('completed', 'dead', 'cancelled'));
DELETE FROM post_media WHERE post_id IN (SELECT p.id FROM posts p JOIN jobs j ON j.id = p.job_id
                                         WHERE j.finished_at < ?1
                                         AND j.state IN ('completed', 'dead', 'cancelled'));
DELETE FROM posts WHERE job_id IN (SELECT id FROM jobs WHERE finished_at < ?1
                                   AND state IN ('completed', 'dead', 'cancelled'));
DELETE FROM jobs WHERE state IN ('completed', 'dead', 'cancelled') AND finished_at < ?1

-- === users and API tokens ======================================================================

-- Removed users (see Store.remove_user) are skipped by every user look-up.
-- name: live_user
SELECT 1 FROM users WHERE id = ?1 AND removed_at IS NULL

-- name: insert_user
INSERT INTO users (name, tier, role, created_at) VALUES (?1, ?2, ?3, ?4)
RETURNING id, name, tier, role, created_at, time_zone

-- name: user_by_id
SELECT id, name, tier, role, created_at, time_zone FROM users WHERE id = ?1 AND removed_at IS NULL

-- name: user_by_name
SELECT id, name, tier, role, created_at, time_zone FROM users WHERE name = ?1 AND removed_at IS NULL

-- name: users
SELECT id, name, tier, role, created_at, time_zone FROM users WHERE removed_at IS NULL ORDER BY id

-- name: set_tier
UPDATE users SET tier = ?2 WHERE id = ?1 AND removed_at IS NULL
RETURNING id, name, tier, role, created_at, time_zone

-- name: insert_token
INSERT INTO api_tokens (user_id, name, token_hash, created_at) VALUES (?1, ?2, ?3, ?4)
RETURNING id, user_id, name, created_at, revoked_at

-- name: revoke_token
UPDATE api_tokens SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1
RETURNING id, user_id, name, created_at, revoked_at

-- name: tokens_of_user
SELECT id, user_id, name, created_at, revoked_at FROM api_tokens WHERE user_id = ?1 ORDER BY id

-- name: user_by_token
SELECT u.id, u.name, u.tier, u.role, u.created_at, u.time_zone FROM api_tokens t
JOIN users u ON u.id = t.user_id
WHERE t.token_hash = ?1 AND t.revoked_at IS NULL AND u.removed_at IS NULL

-- name: user_to_remove
SELECT id, name, tier, role, created_at, time_zone FROM users WHERE id = ?1 AND removed_at IS NULL

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
    needs_relink = 0, unlinked_at = NULL
RETURNING id, user_id, reddit_username, refresh_token_encrypted, scopes, needs_relink, created_at

-- name: account_by_id
SELECT id, user_id, reddit_username, refresh_token_encrypted, scopes, needs_relink, created_at
FROM accounts WHERE id = ?1

-- name: accounts_of_user
SELECT id, user_id, reddit_username, refresh_token_encrypted, scopes, needs_relink, created_at
FROM accounts WHERE user_id = ?1 AND unlinked_at IS NULL ORDER BY id

-- name: set_account_token
UPDATE accounts SET refresh_token_encrypted = ?2, needs_relink = 0 WHERE id = ?1
RETURNING id, user_id, reddit_username, refresh_token_encrypted, scopes, needs_relink, created_at

-- name: set_needs_relink
UPDATE accounts SET needs_relink = ?2 WHERE id = ?1
RETURNING id, user_id, reddit_username, refresh_token_encrypted, scopes, needs_relink, created_at

-- An unlinked account (see Store.unlink_account) is left out of the user's accounts; linking it
-- again (link_account) brings it back.
-- name: linked_account_of_user
SELECT id, user_id, reddit_username, refresh_token_encrypted, scopes, needs_relink, created_at
FROM accounts WHERE id = ?1 AND user_id = ?2 AND unlinked_at IS NULL

-- name: cancel_accounts_posts
UPDATE jobs SET state = 'cancelled', finished_at = ?2
WHERE state = 'pending' AND id IN (SELECT job_id FROM posts WHERE account_id = ?1)

-- name: unlink_account
UPDATE accounts SET refresh_token_encrypted = x'', needs_relink = 1, unlinked_at = ?2
WHERE id = ?1

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

-- === the web app: time zones, passwords, sessions, sign-in failures =============================

-- name: set_time_zone
UPDATE users SET time_zone = ?2 WHERE id = ?1 AND removed_at IS NULL
RETURNING id, name, tier, role, created_at, time_zone

-- name: password_hash
SELECT password_hash FROM users WHERE id = ?1 AND removed_at IS NULL

-- name: set_password_hash
UPDATE users SET password_hash = ?2 WHERE id = ?1 AND removed_at IS NULL

-- The user's row is locked while their links are replaced, so the newest link is the only one.
-- name: lock_live_user
SELECT 1 FROM users WHERE id = ?1 AND removed_at IS NULL

-- name: forget_old_password_links
DELETE FROM password_links WHERE expires_at < ?1

-- name: retire_password_links
DELETE FROM password_links WHERE user_id = ?1 AND used_at IS NULL

-- name: insert_password_link
INSERT INTO password_links (token_hash, user_id, created_at, expires_at)
VALUES (?1, ?2, ?3, ?4)
RETURNING token_hash, user_id, created_at, expires_at, used_at

-- name: password_link
SELECT token_hash, user_id, created_at, expires_at, used_at FROM password_links WHERE token_hash = ?1

-- One call wins: the link is spent in the statement that checks it.
-- name: use_password_link
UPDATE password_links SET used_at = ?2
WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2
  AND user_id IN (SELECT id FROM users WHERE removed_at IS NULL)
RETURNING user_id

-- name: forget_expired_sessions
DELETE FROM web_sessions WHERE expires_at < ?1

-- name: insert_session
INSERT INTO web_sessions (id_hash, user_id, csrf_token, created_at, last_seen_at, expires_at)
VALUES (?1, ?2, ?3, ?4, ?4, ?5)

-- A session and its user, as get_user sees them (none once the user is removed).
-- name: session
SELECT s.id_hash, s.csrf_token, s.created_at, s.last_seen_at, s.expires_at,
       u.id, u.name, u.tier, u.role, u.created_at, u.time_zone
FROM web_sessions s JOIN users u ON u.id = s.user_id
WHERE s.id_hash = ?1 AND u.removed_at IS NULL

-- name: touch_session
UPDATE web_sessions SET last_seen_at = ?2 WHERE id_hash = ?1

-- name: delete_session
DELETE FROM web_sessions WHERE id_hash = ?1

-- name: delete_user_sessions
DELETE FROM web_sessions WHERE user_id = ?1

-- name: forget_old_sign_in_failures
DELETE FROM sign_in_failures WHERE failed_at < ?1

-- name: insert_sign_in_failure
INSERT INTO sign_in_failures (key, failed_at) VALUES (?1, ?2)

-- name: sign_in_failures
SELECT failed_at FROM sign_in_failures WHERE key = ?1 AND failed_at >= ?2 ORDER BY failed_at

-- name: clear_sign_in_failures
DELETE FROM sign_in_failures WHERE key = ?1

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
