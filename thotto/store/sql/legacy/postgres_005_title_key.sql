-- Duplicate detection compares titles as a person would (thotto.messages.title_key: NFKC, case
-- folding, whitespace collapsed), not with lower(). The key is computed in Python: the migration
-- fills it for existing rows after this script (thotto.store.postgres.BACKFILLS), then makes
-- it NOT NULL.
ALTER TABLE posts ADD COLUMN title_key text;
DROP INDEX IF EXISTS posts_account_title;
CREATE INDEX posts_account_title_key ON posts (account_id, lower(subreddit), title_key);
