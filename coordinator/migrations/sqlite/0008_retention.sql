-- Retention (`phasegate gc`): when a run's job logs, metric points and job artifact rows were
-- removed, with the blobs no kept run references. The run and job rows, verdict, report and phase
-- stay; NULL: nothing was removed.
ALTER TABLE runs ADD COLUMN pruned_ms INTEGER;
-- What gc asks: is a blob still referenced by a job artifact, or by the bundle of a kept run?
CREATE INDEX job_artifacts_sha256 ON job_artifacts (sha256);
CREATE INDEX runs_bundle_kept ON runs (bundle_sha256) WHERE pruned_ms IS NULL;
