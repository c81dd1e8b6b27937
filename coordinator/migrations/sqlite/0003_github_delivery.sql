-- What has been delivered to GitHub for a run, next to the verdict and report the run already
-- stores (the report is written first; delivery may lag, retry, or be given up). One row per run.
-- `kind`: pr | nightly. `stage`: submitted (the in-progress check run) | verdict (the completed
-- check run and the PR comment, or the nightly issue). `status`: pending | delivered | given_up.
-- `delivery_json` is the serde form of `phasegate_github::Delivery`, passed back on each attempt.
CREATE TABLE github_deliveries (
    run_id INTEGER PRIMARY KEY REFERENCES runs (id),
    kind TEXT NOT NULL,
    stage TEXT NOT NULL,
    status TEXT NOT NULL,
    delivery_json TEXT NOT NULL DEFAULT '{}',
    last_error TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX github_deliveries_due ON github_deliveries (next_attempt_ms) WHERE status = 'pending';
CREATE INDEX github_deliveries_stage ON github_deliveries (stage, run_id);
CREATE INDEX runs_pr ON runs (repo, pr, id) WHERE pr IS NOT NULL;
