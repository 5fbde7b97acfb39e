-- Thotto SQLite schema, version 1. Applied by thotto/store/sqlite.py inside one transaction.
-- Times are INTEGER microseconds since the Unix epoch, UTC.

-- AUTOINCREMENT: a purged job's id is never handed out again (plain rowids reuse the highest
-- id once it is deleted). It costs about 0.7 µs per single-row insert here.
CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    queue        TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    payload      BLOB    NOT NULL,
    priority     INTEGER NOT NULL DEFAULT 0,
    run_at       INTEGER NOT NULL,
    -- pending | processing | completed | dead | cancelled; no CHECK constraint: it doubled the
    -- cost of an insert here, and only the adapter writes this column.
    state        TEXT    NOT NULL DEFAULT 'pending',
    attempt      INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    dedupe_key   TEXT,
    lease_owner  TEXT,
    lease_until  INTEGER,
    created_at   INTEGER NOT NULL,
    started_at   INTEGER,
    finished_at  INTEGER,
    last_error   TEXT
);

-- Claiming: due pending jobs in claim order (run_at, priority high first, id = rowid, implicit).
CREATE INDEX jobs_due ON jobs (run_at, priority DESC) WHERE state = 'pending';

-- A dedupe key is unique among the live jobs of a queue; finished jobs free it.
CREATE UNIQUE INDEX jobs_dedupe ON jobs (queue, dedupe_key)
    WHERE dedupe_key IS NOT NULL AND state IN ('pending', 'processing');

-- Releasing expired leases.
CREATE INDEX jobs_lease ON jobs (lease_until) WHERE state = 'processing';

-- Purging finished jobs.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- Attempt history: only attempts that did not complete (the happy path writes no row here).
-- Refunded attempts (deferred, released) can repeat an attempt number, hence a surrogate key.
CREATE TABLE attempts (
    id          INTEGER PRIMARY KEY,
    job_id      INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    owner       TEXT,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    outcome     TEXT    NOT NULL,
    error       TEXT
);
CREATE INDEX attempts_job ON attempts (job_id, attempt);

CREATE TABLE users (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    tier       TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
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

-- A post's status is not stored: it is derived from its job's state (join on job_id).
CREATE TABLE posts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,  -- purged with their jobs: never reuse ids
    user_id       INTEGER NOT NULL REFERENCES users (id),
    account_id    INTEGER NOT NULL REFERENCES accounts (id),
    job_id        INTEGER NOT NULL UNIQUE REFERENCES jobs (id),
    subreddit     TEXT    NOT NULL COLLATE NOCASE,
    title_key     TEXT    NOT NULL,  -- the title case-folded, for duplicate detection
    content       BLOB    NOT NULL,  -- PostContent as msgspec JSON
    scheduled_for INTEGER NOT NULL,
    recurrence    BLOB,              -- Recurrence as msgspec JSON, or NULL
    reddit_id     TEXT,
    reddit_url    TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX posts_user_schedule ON posts (user_id, scheduled_for, id);
CREATE INDEX posts_account_title ON posts (account_id, title_key);
