-- The event catalog: one row per (source, type) with when it was seen, how often, and
-- the inferred shape of its data (JSON: {"events": n, "truncated": b, "fields":
-- {path: [[types...], seen]}}). Written by the catalog's flushes, read at start.
CREATE TABLE catalog (
    source      TEXT NOT NULL,
    type        TEXT NOT NULL,
    first_seen  TEXT NOT NULL,
    last_seen   TEXT NOT NULL,
    count       INTEGER NOT NULL,
    arrivals    INTEGER NOT NULL,
    gap_s       REAL,
    rate        REAL NOT NULL,
    silent      INTEGER NOT NULL,
    shape       TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (source, type)
) WITHOUT ROWID;
