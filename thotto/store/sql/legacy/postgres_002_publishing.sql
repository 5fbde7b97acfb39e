-- Effectively-once publishing and community rules (issue #4).

-- When the first attempt that may have reached Reddit began.
ALTER TABLE posts ADD COLUMN armed_at timestamptz;

-- What Thotto knows of each subreddit's rules: a msgspec-encoded SubredditRules.
CREATE TABLE subreddits (
    name       text PRIMARY KEY,  -- lower-cased
    rules      jsonb NOT NULL,
    synced_at  timestamptz NOT NULL
);
