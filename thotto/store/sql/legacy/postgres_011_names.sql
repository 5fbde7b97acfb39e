-- One name for each thing in both stores (issue #14): a job's lease holder is lease_owner, as on
-- SQLite and in the Job record (the attempt history was already job_attempts here).
ALTER TABLE jobs RENAME COLUMN owner TO lease_owner;
