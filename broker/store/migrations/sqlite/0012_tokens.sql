-- Named API tokens: only the sha256 of each secret is kept.
CREATE TABLE api_tokens (
    name       TEXT PRIMARY KEY,
    digest     TEXT NOT NULL UNIQUE,
    scopes     TEXT NOT NULL,   -- JSON array
    sources    TEXT NOT NULL,   -- JSON array of source patterns
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);
