-- The product's tables on SQLite, version 1 of the "product" component (what the single-track
-- migrations 1-11 in sql/legacy had made of them); applied after the job tables
-- (thotto/engine/store/sql), in the same transaction. Times are INTEGER microseconds since the
-- Unix epoch, UTC. No foreign key is enforced (SQLite's are off): the store checks references.

-- removed_at: a removed user's row stays (their published posts refer to it); every user
-- look-up skips removed users.
CREATE TABLE users (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    tier       TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    removed_at INTEGER
);

CREATE TABLE api_tokens (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    name       TEXT    NOT NULL,
    token_hash TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- Reddit usernames are case-insensitive: re-linking "Alice" finds "alice".
CREATE TABLE accounts (
    id                      INTEGER PRIMARY KEY,
    user_id                 INTEGER NOT NULL REFERENCES users (id),
    reddit_username         TEXT    NOT NULL COLLATE NOCASE,
    refresh_token_encrypted BLOB    NOT NULL,
    scopes                  TEXT    NOT NULL DEFAULT '',
    needs_relink            INTEGER NOT NULL DEFAULT 0,
    created_at              INTEGER NOT NULL,
    UNIQUE (user_id, reddit_username)
);

-- A post's status is not stored: it is derived from its job's state (join on job_id) and its
-- publishing marks (thotto/store/lifecycle.py).
CREATE TABLE posts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,  -- purged with their jobs: never reuse ids
    user_id         INTEGER NOT NULL REFERENCES users (id),
    account_id      INTEGER NOT NULL REFERENCES accounts (id),
    job_id          INTEGER NOT NULL UNIQUE REFERENCES jobs (id),
    subreddit       TEXT    NOT NULL COLLATE NOCASE,
    -- thotto.messages.title_key of the title (NFKC, case folding, whitespace collapsed), for
    -- duplicate detection.
    title_key       TEXT    NOT NULL,
    content         BLOB    NOT NULL,  -- PostContent as msgspec JSON
    scheduled_for   INTEGER NOT NULL,
    recurrence      BLOB,              -- Recurrence as msgspec JSON, or NULL
    reddit_id       TEXT,
    reddit_url      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    -- When the first attempt that may have reached Reddit began.
    armed_at        INTEGER,
    -- The latest engagement reading: Reddit's score and comment count, and when they were read.
    score           INTEGER,
    comments        INTEGER,
    engagement_at   INTEGER,
    -- The occurrence of a recurring post that this post is the next one of (no foreign key: the
    -- previous post may be purged before its follow-up), and the series' anchor (NULL for the
    -- first occurrence, whose own scheduled_for is the anchor).
    follows_post_id INTEGER,
    series_start    INTEGER
);
CREATE INDEX posts_user_schedule ON posts (user_id, scheduled_for, id);
CREATE INDEX posts_account_title ON posts (account_id, title_key);
-- A post has at most one follow-up: scheduling the next occurrence is exactly-once.
CREATE UNIQUE INDEX posts_follows ON posts (follows_post_id) WHERE follows_post_id IS NOT NULL;
-- A subreddit's published posts with engagement (subreddit is COLLATE NOCASE).
CREATE INDEX posts_engagement ON posts (subreddit) WHERE engagement_at IS NOT NULL;

-- What Thotto knows of each subreddit's rules: a msgspec-encoded SubredditRules.
CREATE TABLE subreddits (
    name       TEXT PRIMARY KEY,  -- lower-cased
    rules      BLOB NOT NULL,
    synced_at  INTEGER NOT NULL
);

-- Starts of account linking: each OAuth state works once, before it expires, for whoever holds
-- the binding secret. Only hashes of the state and the secret are kept. held_code is Reddit's
-- code, encrypted, kept for an API client to complete with the verification code whose hash is
-- verifier_hash.
CREATE TABLE link_requests (
    state_hash    TEXT PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    secret_hash   TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    used_at       INTEGER,
    held_code     BLOB,
    verifier_hash TEXT
);
CREATE INDEX link_requests_expiry ON link_requests (expires_at);

-- The media library, stored in the database so that every process reads the same bytes. An
-- upload is written chunk by chunk and becomes visible (ready = 1) only when complete.
-- AUTOINCREMENT: posts refer to media by id, so a deleted id is never handed out again.
CREATE TABLE media (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    kind       TEXT    NOT NULL,            -- png | jpeg | gif | webp, told from the bytes
    width      INTEGER NOT NULL,
    height     INTEGER NOT NULL,
    bytes      INTEGER NOT NULL DEFAULT 0,  -- counted by the store as the chunks arrive
    sha256     TEXT    NOT NULL DEFAULT '', -- of the stored bytes
    removed    TEXT    NOT NULL DEFAULT '[]', -- JSON list: the metadata removed before storing
    ready      INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX media_user ON media (user_id, id) WHERE ready = 1;
CREATE INDEX media_created ON media (created_at);

-- The bytes, in chunks of at most 1 MB (seq 0, 1, ...).
CREATE TABLE media_chunks (
    media_id INTEGER NOT NULL REFERENCES media (id),
    seq      INTEGER NOT NULL,
    data     BLOB    NOT NULL,
    PRIMARY KEY (media_id, seq)
);

-- Which posts use which media: a medium linked to a post that is not finished cannot be
-- deleted; one no post links is removed by retention.
CREATE TABLE post_media (
    post_id  INTEGER NOT NULL REFERENCES posts (id),
    media_id INTEGER NOT NULL REFERENCES media (id),
    position INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (post_id, media_id)
);
CREATE INDEX post_media_media ON post_media (media_id);
