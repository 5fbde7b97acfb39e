-- The creator's web app (issue #17): passwords, one-time set-password links, server-side
-- sessions and the sign-in failures that rate-limit guessing: version 2 of the "product"
-- component. A single-track database at version 10 already has all of it (this was its
-- migration 10), so it is taken to be at product version 2 (LEGACY in ../sqlite.py).
-- Times are INTEGER microseconds since the epoch.

-- An argon2 hash (NULL: no password set yet, the user signs in only with API tokens) and the
-- IANA time zone the user's pages show times in.
ALTER TABLE users ADD COLUMN password_hash TEXT;
ALTER TABLE users ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';

-- An account its user unlinked: hidden from their accounts, credentials erased; linking the
-- same Reddit account again brings it back.
ALTER TABLE accounts ADD COLUMN unlinked_at INTEGER;

-- A set-password link works once, before it expires; only the SHA-256 of its secret is kept.
CREATE TABLE password_links (
    token_hash TEXT    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX password_links_user ON password_links (user_id);

-- A signed-in browser. id_hash is the SHA-256 of the cookie's value (a leaked database signs
-- nobody in); csrf_token is the value every change made with this session must carry.
CREATE TABLE web_sessions (
    id_hash      TEXT    PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);

-- One row per failed sign-in, under each key it counts against ("user:<name>", "address:<ip>"),
-- kept in the store so that every process counts the same attempts.
CREATE TABLE sign_in_failures (
    key       TEXT    NOT NULL,
    failed_at INTEGER NOT NULL
);
CREATE INDEX sign_in_failures_key ON sign_in_failures (key, failed_at);
