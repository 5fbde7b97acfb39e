-- Effectively-once publishing and community rules (issue #4).

-- When the first attempt that may have reached Reddit began (microseconds since the epoch).
ALTER TABLE posts ADD COLUMN armed_at INTEGER;

-- What Thotto knows of each subreddit's rules: a msgspec-encoded SubredditRules.
CREATE TABLE subreddits (
    name       TEXT PRIMARY KEY,  -- lower-cased
    rules      BLOB NOT NULL,
    synced_at  INTEGER NOT NULL
);
