-- The event log, route target hits and configuration objects.
CREATE TABLE events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    source        TEXT NOT NULL,
    id            TEXT NOT NULL,
    type          TEXT NOT NULL,
    subject       TEXT,
    time          TEXT,
    recvtime      TEXT NOT NULL,
    correlationid TEXT,
    digest        BLOB NOT NULL,
    routes        TEXT,
    body          BLOB NOT NULL
);
CREATE UNIQUE INDEX events_identity ON events (source, id);
CREATE INDEX events_id ON events (id);
CREATE INDEX events_recvtime ON events (recvtime);
CREATE INDEX events_correlation ON events (correlationid) WHERE correlationid IS NOT NULL;

CREATE TABLE event_targets (
    seq    INTEGER NOT NULL REFERENCES events (seq),
    route  TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT,
    PRIMARY KEY (seq, route, target)
) WITHOUT ROWID;

CREATE TABLE config_objects (
    kind       TEXT NOT NULL,
    name       TEXT NOT NULL,
    spec       TEXT NOT NULL,
    origin     TEXT NOT NULL,
    version    INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('config_version', 0);
