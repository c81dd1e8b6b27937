-- The gate's phase history: one row per (experiment, label), imported or produced by a run's gate
-- stage. `phase_json` is the serde form of `gate_rules::Phase`; the `accepted` column is the source
-- of truth for acceptance (the flag inside the JSON is overwritten on read).
CREATE TABLE phases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    experiment TEXT NOT NULL,
    label TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    accepted INTEGER NOT NULL DEFAULT 0,
    run_id INTEGER REFERENCES runs (id),
    phase_json TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    UNIQUE (experiment, label)
);
CREATE INDEX phases_run ON phases (run_id) WHERE run_id IS NOT NULL;
