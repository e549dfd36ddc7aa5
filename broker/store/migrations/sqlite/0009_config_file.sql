-- The config file applied last: processes sharing the store apply a file only when it
-- is not the one in effect (and, at start-up, not older than it): broker/config/manager.py.
CREATE TABLE config_file (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    digest     TEXT NOT NULL,
    revision   TEXT NOT NULL,
    applied_by TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    version    INTEGER NOT NULL
);
