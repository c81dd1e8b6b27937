-- When an operator drained the agent (`phasegate agents drain NAME`); NULL while it is not drained.
-- A drained agent is leased nothing new. Re-registrations keep it.
ALTER TABLE agents ADD COLUMN draining_ms INTEGER;
