-- One name for each thing in both stores (issue #14): the attempt history is job_attempts, as on
-- Postgres (jobs.lease_owner already had the Postgres store's new name). SQLite cannot rename an
-- index: it is made again under the new table's name.
ALTER TABLE attempts RENAME TO job_attempts;
DROP INDEX IF EXISTS attempts_job;
CREATE INDEX IF NOT EXISTS job_attempts_job ON job_attempts (job_id, attempt);
