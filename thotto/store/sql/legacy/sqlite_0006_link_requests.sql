-- Starts of account linking: each OAuth state works once, before it expires, for whoever holds
-- the binding secret. Only hashes of the state and the secret are kept. held_code is Reddit's
-- code, encrypted, kept for an API client to complete with the verification code whose hash is
-- verifier_hash. Times are microseconds since the epoch.
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
