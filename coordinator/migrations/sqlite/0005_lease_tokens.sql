-- The secret token of each job's current lease (hex), so a restarted coordinator still knows which
-- agent holds it. NULL while the job is not leased.
ALTER TABLE jobs ADD COLUMN lease_token TEXT;
