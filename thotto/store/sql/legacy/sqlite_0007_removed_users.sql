-- Removing a user (issue #13): the row stays (their published posts refer to it), marked with
-- when it was removed (microseconds since the epoch); every user look-up skips removed users.
-- Numbered 0007: 0005 and 0006 are other changes of the same issue.
ALTER TABLE users ADD COLUMN removed_at INTEGER;
