-- One time encoding: `next_at` and `first_at` of deliveries and action jobs become
-- stamps (RFC 3339 UTC with microseconds and Z, like every other time column) instead
-- of epoch seconds. Tables are rebuilt so the declared types say what they hold.
CREATE TABLE deliveries_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription    TEXT NOT NULL,
    seq             INTEGER NOT NULL REFERENCES events (seq),
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    attempts_before INTEGER NOT NULL DEFAULT 0,
    next_at         TEXT NOT NULL,
    lease           TEXT,
    last_status     INTEGER,
    last_error      TEXT,
    first_at        TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
INSERT INTO deliveries_new
SELECT id, subscription, seq, state, attempts, attempts_before,
       strftime('%Y-%m-%dT%H:%M:%S', next_at, 'unixepoch')
           || printf('.%06dZ', CAST(round((next_at - CAST(next_at AS INTEGER)) * 1000000) AS INTEGER) % 1000000),
       lease, last_status, last_error,
       strftime('%Y-%m-%dT%H:%M:%S', first_at, 'unixepoch')
           || printf('.%06dZ', CAST(round((first_at - CAST(first_at AS INTEGER)) * 1000000) AS INTEGER) % 1000000),
       created_at, updated_at
FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_new RENAME TO deliveries;
CREATE UNIQUE INDEX deliveries_identity ON deliveries (subscription, seq);
CREATE INDEX deliveries_open_by_seq ON deliveries (subscription, seq)
    WHERE state IN ('pending', 'leased');
CREATE INDEX deliveries_open_by_due ON deliveries (subscription, next_at)
    WHERE state IN ('pending', 'leased');
CREATE INDEX deliveries_by_state ON deliveries (subscription, state, id);

CREATE TABLE action_jobs_new (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    action     TEXT NOT NULL,
    seq        INTEGER NOT NULL REFERENCES events (seq),
    state      TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_at    TEXT NOT NULL,
    lease      TEXT,
    params     TEXT,
    todo_id    INTEGER,
    operator   TEXT,
    result_seq INTEGER,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
INSERT INTO action_jobs_new
SELECT id, action, seq, state, attempts,
       strftime('%Y-%m-%dT%H:%M:%S', next_at, 'unixepoch')
           || printf('.%06dZ', CAST(round((next_at - CAST(next_at AS INTEGER)) * 1000000) AS INTEGER) % 1000000),
       lease, params, todo_id, operator, result_seq, last_error, created_at, updated_at
FROM action_jobs;
DROP TABLE action_jobs;
ALTER TABLE action_jobs_new RENAME TO action_jobs;
CREATE INDEX action_jobs_due ON action_jobs (next_at) WHERE state IN ('pending', 'running');
CREATE INDEX action_jobs_by_action ON action_jobs (action, id);
