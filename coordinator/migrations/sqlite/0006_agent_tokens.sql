-- Per-agent credentials. Only the SHA-256 of each 256-bit secret is kept; the secret is shown once.
CREATE TABLE agent_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_name TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL,
    last_used_ms INTEGER,
    revoked_ms INTEGER
);
CREATE INDEX agent_tokens_agent ON agent_tokens (agent_name);
