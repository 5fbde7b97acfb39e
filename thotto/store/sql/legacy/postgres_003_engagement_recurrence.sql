-- Engagement analytics and recurring posts.

-- The latest engagement reading of a published post: Reddit's score and comment count, and when
-- they were read. NULL until the analytics job first reads it.
ALTER TABLE posts
    ADD COLUMN score integer,
    ADD COLUMN comments integer,
    ADD COLUMN engagement_at timestamptz,
    -- The occurrence of a recurring post that this post is the next one of (see the index).
    -- No foreign key: the previous post may be purged before its follow-up.
    ADD COLUMN follows_post_id bigint;

-- A post has at most one follow-up, so scheduling the next occurrence is exactly-once whatever
-- repeats it (a crash after publishing, a retried job, two processes).
CREATE UNIQUE INDEX posts_follows ON posts (follows_post_id) WHERE follows_post_id IS NOT NULL;

-- A subreddit's published posts with engagement, for optimal posting times.
CREATE INDEX posts_engagement ON posts (lower(subreddit)) WHERE engagement_at IS NOT NULL;
