-- Engagement analytics and recurring posts.

-- The latest engagement reading of a published post: Reddit's score and comment count, and when
-- they were read (microseconds since the epoch). NULL until the analytics job first reads it.
ALTER TABLE posts ADD COLUMN score INTEGER;
ALTER TABLE posts ADD COLUMN comments INTEGER;
ALTER TABLE posts ADD COLUMN engagement_at INTEGER;

-- The occurrence of a recurring post that this post is the next one of. Unique: a post has at
-- most one follow-up, so scheduling the next occurrence is exactly-once whatever repeats it (a
-- crash after publishing, a retried job, two processes). No foreign key: the previous post may
-- be purged before its follow-up.
ALTER TABLE posts ADD COLUMN follows_post_id INTEGER;
CREATE UNIQUE INDEX posts_follows ON posts (follows_post_id) WHERE follows_post_id IS NOT NULL;

-- A subreddit's published posts with engagement, for optimal posting times (subreddit is
-- COLLATE NOCASE, so this serves case-insensitive look-ups).
CREATE INDEX posts_engagement ON posts (subreddit) WHERE engagement_at IS NOT NULL;
