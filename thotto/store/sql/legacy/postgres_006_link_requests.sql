-- Starts of account linking: each OAuth state works once, before it expires, for whoever holds
-- the binding secret. Only hashes of the state and the secret are kept. held_code is Reddit's
-- code, encrypted, kept for an API client to complete with the verification code whose hash is
-- verifier_hash.
CREATE TABLE link_requests (
    state_hash    text PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    secret_hash   text NOT NULL,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz,
    held_code     bytea,
    verifier_hash text
);
CREATE INDEX link_requests_expiry ON link_requests (expires_at);
