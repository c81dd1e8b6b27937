-- Runs, their jobs, job logs and metric points, artifacts and agents.
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    experiment TEXT NOT NULL,
    phase TEXT NOT NULL,
    description TEXT NOT NULL,
    priority TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    spec_toml TEXT NOT NULL,
    spec_path TEXT NOT NULL,
    bundle_sha256 TEXT NOT NULL,
    pr INTEGER,
    sha TEXT NOT NULL,
    branch TEXT NOT NULL,
    repo TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    finished_ms INTEGER,
    verdict TEXT NOT NULL DEFAULT '',
    report TEXT NOT NULL DEFAULT '',
    evaluation_json TEXT NOT NULL DEFAULT ''
);
CREATE INDEX runs_experiment ON runs (experiment, id);
CREATE INDEX runs_active ON runs (state) WHERE state IN ('queued', 'running');

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL REFERENCES runs (id),
    stage TEXT NOT NULL,
    depends_on TEXT NOT NULL,
    requires BLOB NOT NULL,
    work BLOB NOT NULL,
    state TEXT NOT NULL,
    epoch INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 0,
    agent TEXT,
    gpu_index INTEGER,
    error TEXT NOT NULL DEFAULT '',
    history TEXT NOT NULL DEFAULT '[]',
    metrics BLOB,
    result_json TEXT NOT NULL DEFAULT '',
    exit_code INTEGER,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX jobs_run ON jobs (run_id);

CREATE TABLE job_logs (
    job_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    stream TEXT NOT NULL,
    text TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;

CREATE TABLE job_metric_points (
    job_id INTEGER NOT NULL,
    batch_seq INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    point BLOB NOT NULL,
    PRIMARY KEY (job_id, batch_seq, idx)
) WITHOUT ROWID;

CREATE TABLE artifacts (
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE job_artifacts (
    job_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (job_id, name)
) WITHOUT ROWID;

CREATE TABLE agents (
    name TEXT PRIMARY KEY,
    capabilities BLOB NOT NULL,
    registered_ms INTEGER NOT NULL
) WITHOUT ROWID;
