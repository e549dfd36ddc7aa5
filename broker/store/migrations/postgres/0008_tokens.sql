-- Named API tokens, shared by every replica: only the sha256 of each secret is kept.
CREATE TABLE api_tokens (
    name       text PRIMARY KEY,
    digest     text NOT NULL UNIQUE,
    scopes     jsonb NOT NULL,
    sources    jsonb NOT NULL,
    created_at text NOT NULL,
    created_by text NOT NULL
);
