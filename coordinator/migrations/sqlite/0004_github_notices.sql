-- What phasegate shows on a pull request head that has no run: a fork PR waiting for its label, or
-- a webhook event that could not start a run (tarball, phase spec). Stored before delivery and
-- retried like github_deliveries, so a restart or a GitHub outage loses none.
-- `kind`: waiting_for_label | start_failed. `notice_json` is the serde form of
-- `phasegate_github::Notice`. `status`: pending | delivered | given_up | superseded (a newer notice
-- or a run of the same PR and experiment came first, so this one is not shown).
-- Also from this version on, github_deliveries.stage takes `ended`: a PR run that ended without a
-- verdict (failed, cancelled, superseded), whose check run is completed to say so.
CREATE TABLE github_notices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    repo TEXT NOT NULL,
    pr INTEGER NOT NULL,
    sha TEXT NOT NULL,
    experiment TEXT NOT NULL,
    kind TEXT NOT NULL,
    notice_json TEXT NOT NULL,
    status TEXT NOT NULL,
    delivery_json TEXT NOT NULL DEFAULT '{}',
    last_error TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX github_notices_due ON github_notices (next_attempt_ms) WHERE status = 'pending';
CREATE INDEX github_notices_pr ON github_notices (repo, pr, experiment, id);
