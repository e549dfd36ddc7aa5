-- The log's random text indexes become 64-bit hashes (docs/storage.md): `idhash` of
-- (source, id), `corrkey` and `causekey` of the correlation and causation ids. Dedupe is
-- decided by the writer within the dedupe window, so the identity index is not unique:
-- a repeat outside the window is a new event. `opsbus_key64` is registered by the store
-- on the migrating connection (the same function the writer uses).
--
-- Retention deletes events that resolved items, settled deliveries and finished jobs
-- still name, so those references stop being foreign keys (the tables are rebuilt, as
-- SQLite requires to drop a constraint); `log_retention` records how far it has gone.
ALTER TABLE events ADD COLUMN idhash INTEGER;
ALTER TABLE events ADD COLUMN corrkey INTEGER;
ALTER TABLE events ADD COLUMN causekey INTEGER;
UPDATE events SET idhash = opsbus_key64(source, id), corrkey = opsbus_key64(correlationid),
                  causekey = opsbus_key64(causationid);
DROP INDEX events_identity;
DROP INDEX events_id;
DROP INDEX events_correlation;
DROP INDEX events_causation;
CREATE INDEX events_idhash ON events (idhash);
CREATE INDEX events_corrkey ON events (corrkey) WHERE corrkey IS NOT NULL;
CREATE INDEX events_causekey ON events (causekey) WHERE causekey IS NOT NULL;

CREATE TABLE event_targets_new (
    seq    INTEGER NOT NULL,
    route  TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT,
    PRIMARY KEY (seq, route, target)
) WITHOUT ROWID;
INSERT INTO event_targets_new SELECT seq, route, target, detail FROM event_targets;
DROP TABLE event_targets;
ALTER TABLE event_targets_new RENAME TO event_targets;

CREATE TABLE todo_events_new (
    todo_id INTEGER NOT NULL REFERENCES todos (id),
    seq     INTEGER NOT NULL,
    PRIMARY KEY (todo_id, seq)
) WITHOUT ROWID;
INSERT INTO todo_events_new SELECT todo_id, seq FROM todo_events;
DROP TABLE todo_events;
ALTER TABLE todo_events_new RENAME TO todo_events;

CREATE TABLE deliveries_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription    TEXT NOT NULL,
    seq             INTEGER NOT NULL,
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
INSERT INTO deliveries_new SELECT * FROM deliveries;
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
    seq        INTEGER NOT NULL,
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
INSERT INTO action_jobs_new SELECT * FROM action_jobs;
DROP TABLE action_jobs;
ALTER TABLE action_jobs_new RENAME TO action_jobs;
CREATE INDEX action_jobs_due ON action_jobs (next_at) WHERE state IN ('pending', 'running');
CREATE INDEX action_jobs_by_action ON action_jobs (action, id);

-- Retention's progress: every seq at or below `cut` has been examined, and those not
-- kept (open items, open deliveries, pending jobs, longer per-type policies) removed.
CREATE TABLE log_retention (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    cut     INTEGER NOT NULL,
    removed INTEGER NOT NULL
);
INSERT INTO log_retention (id, cut, removed) VALUES (1, 0, 0);
