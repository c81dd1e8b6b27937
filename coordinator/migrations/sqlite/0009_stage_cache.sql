-- Result caching by digest. `cache_key`: the digest of everything a job's result depends on
-- (NULL: the stage is never cached, the gate). `cached_from`: the succeeded job whose metrics,
-- artifacts and result this job reuses instead of running (NULL: it ran, or will).
ALTER TABLE jobs ADD COLUMN cache_key TEXT;
ALTER TABLE jobs ADD COLUMN cached_from INTEGER;
-- What a submission asks: the newest succeeded job with this key.
CREATE INDEX jobs_cache_key ON jobs (cache_key, id) WHERE state = 'succeeded' AND cache_key IS NOT NULL;
