-- The creator's web app (issue #17): passwords, one-time set-password links, server-side
-- sessions and the sign-in failures that rate-limit guessing: version 2 of the "product"
-- component. A single-track database at version 10 already has all of it (this was its
-- migration 10), so it is taken to be at product version 2 (LEGACY in ../postgres.py).

-- An argon2 hash (NULL: no password set yet, the user signs in only with API tokens) and the
-- IANA time zone the user's pages show times in.
ALTER TABLE users ADD COLUMN password_hash text;
ALTER TABLE users ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC';

-- An account its user unlinked: hidden from their accounts, credentials erased; linking the
-- same Reddit account again brings it back.
ALTER TABLE accounts ADD COLUMN unlinked_at timestamptz;

-- A set-password link works once, before it expires; only the SHA-256 of its secret is kept.
CREATE TABLE password_links (
    token_hash text        PRIMARY KEY,
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX password_links_user ON password_links (user_id);

-- A signed-in browser. id_hash is the SHA-256 of the cookie's value (a leaked database signs
-- nobody in); csrf_token is the value every change made with this session must carry.
CREATE TABLE web_sessions (
    id_hash      text        PRIMARY KEY,
    user_id      bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token   text        NOT NULL,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);

-- One row per failed sign-in, under each key it counts against ("user:<name>", "address:<ip>"),
-- kept in the store so that every process counts the same attempts.
CREATE TABLE sign_in_failures (
    key       text        NOT NULL,
    failed_at timestamptz NOT NULL
);
CREATE INDEX sign_in_failures_key ON sign_in_failures (key, failed_at);
