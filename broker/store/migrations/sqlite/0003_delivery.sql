-- Deliveries to push and pull subscriptions with their attempts, operator controls of
-- subscriptions, and API action jobs.
--
-- `next_at` (epoch seconds) is when a row is next due: for `pending` rows the next
-- attempt, for `leased` rows the lease expiry (an expired lease is due again), so one
-- index serves push claims, pull receives and crash recovery alike.
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription    TEXT NOT NULL,
    seq             INTEGER NOT NULL REFERENCES events (seq),
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    attempts_before INTEGER NOT NULL DEFAULT 0,
    next_at         REAL NOT NULL,
    lease           TEXT,
    last_status     INTEGER,
    last_error      TEXT,
    first_at        REAL NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE UNIQUE INDEX deliveries_identity ON deliveries (subscription, seq);
CREATE INDEX deliveries_open_by_seq ON deliveries (subscription, seq)
    WHERE state IN ('pending', 'leased');
CREATE INDEX deliveries_open_by_due ON deliveries (subscription, next_at)
    WHERE state IN ('pending', 'leased');
CREATE INDEX deliveries_by_state ON deliveries (subscription, state, id);

CREATE TABLE delivery_attempts (
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id),
    n           INTEGER NOT NULL,
    lease       TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    status      INTEGER,
    latency_ms  REAL,
    error       TEXT,
    PRIMARY KEY (delivery_id, n)
) WITHOUT ROWID;

CREATE TABLE subscription_controls (
    name       TEXT PRIMARY KEY,
    paused     INTEGER NOT NULL,
    paused_by  TEXT,
    updated_at TEXT NOT NULL
);

CREATE TABLE action_jobs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    action     TEXT NOT NULL,
    seq        INTEGER NOT NULL REFERENCES events (seq),
    state      TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_at    REAL NOT NULL,
    lease      TEXT,
    params     TEXT,
    todo_id    INTEGER,
    operator   TEXT,
    result_seq INTEGER,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX action_jobs_due ON action_jobs (next_at) WHERE state IN ('pending', 'running');
CREATE INDEX action_jobs_by_action ON action_jobs (action, id);
