-- Todo items (grouped events awaiting a person), their events and history, and silences.
CREATE TABLE todos (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    queue           TEXT NOT NULL,
    key             TEXT NOT NULL,
    title           TEXT NOT NULL,
    state           TEXT NOT NULL,
    priority        TEXT,
    owner           TEXT,
    lease_expires   TEXT,
    snoozed_until   TEXT,
    count           INTEGER NOT NULL,
    first_seen      TEXT NOT NULL,
    last_seen       TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    resolved_at     TEXT,
    resolution      TEXT,
    event_seq       INTEGER NOT NULL,
    first_event_seq INTEGER NOT NULL
);
-- At most one unresolved item per group key and queue: grouping relies on it.
CREATE UNIQUE INDEX todos_active_key ON todos (queue, key) WHERE state <> 'resolved';
CREATE INDEX todos_activity ON todos (updated_at, id);
CREATE INDEX todos_queue_state ON todos (queue, state);
CREATE INDEX todos_leases ON todos (lease_expires) WHERE state = 'claimed';
CREATE INDEX todos_snoozes ON todos (snoozed_until) WHERE snoozed_until IS NOT NULL;

CREATE TABLE todo_events (
    todo_id INTEGER NOT NULL REFERENCES todos (id),
    seq     INTEGER NOT NULL REFERENCES events (seq),
    PRIMARY KEY (todo_id, seq)
) WITHOUT ROWID;

CREATE TABLE todo_history (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    todo_id   INTEGER NOT NULL REFERENCES todos (id),
    at        TEXT NOT NULL,
    action    TEXT NOT NULL,
    operator  TEXT,
    note      TEXT,
    event_seq INTEGER,
    audit_seq INTEGER,
    detail    TEXT
);
CREATE INDEX todo_history_item ON todo_history (todo_id, id);

CREATE TABLE silences (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    matcher    TEXT NOT NULL,
    queue      TEXT,
    comment    TEXT NOT NULL,
    author     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    ends_at    TEXT NOT NULL,
    expired_by TEXT
);
CREATE INDEX silences_ends ON silences (ends_at);
