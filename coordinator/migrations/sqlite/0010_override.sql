-- `phasegate override RUN --reason TEXT`: a maintainer merged over the run's verdict. Who, why
-- and when; the verdict itself stays. NULL: not overridden.
ALTER TABLE runs ADD COLUMN override_by TEXT;
ALTER TABLE runs ADD COLUMN override_reason TEXT;
ALTER TABLE runs ADD COLUMN override_ms INTEGER;
