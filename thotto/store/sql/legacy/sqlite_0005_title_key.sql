-- Duplicate detection compares titles as a person would (thotto.messages.title_key: NFKC, case
-- folding, whitespace collapsed). Keys written before were only case-folded: recompute them all.
-- thotto_title_key(content) is that Python function over the stored PostContent, registered on
-- the connection that migrates. The index posts_account_title (account_id, title_key) serves
-- the look-up.
UPDATE posts SET title_key = thotto_title_key(content);
