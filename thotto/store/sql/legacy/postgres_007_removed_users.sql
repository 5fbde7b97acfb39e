-- Removing a user (issue #13): the row stays (their published posts refer to it), marked with
-- when it was removed; every user look-up skips removed users.
-- Numbered 007: 005 and 006 are other changes of the same issue.
ALTER TABLE users ADD COLUMN removed_at timestamptz;
