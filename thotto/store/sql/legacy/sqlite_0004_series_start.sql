-- Recurring posts keep their anchor: the scheduled time of the series' first occurrence
-- (microseconds since the epoch), copied to each follow-up, so that occurrences are computed
-- from it (a monthly series on the 31st comes back to the 31st after February). NULL for the
-- first occurrence itself, whose own scheduled_for is the anchor.
ALTER TABLE posts ADD COLUMN series_start INTEGER;
