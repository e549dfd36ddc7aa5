-- The log's random keys move out of the `events` table into one small key table per
-- period (docs/storage.md): `events` keeps only its seq order and the append-only
-- recvtime index, so no index of the log grows with its whole size. The store files the
-- keys of the events already stored by recvtime (`periods.file_existing`) in this same
-- transaction, after these statements; the writer opens each later period itself.

-- One row per period: the key table, the recvtimes it was opened for and the seqs it
-- covers (`last_seq` is NULL while it is the current one).
CREATE TABLE event_key_periods (
    name      TEXT PRIMARY KEY,
    starts_at TEXT NOT NULL,
    ends_at   TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq  INTEGER
);

-- Keys of the events retention kept after their period's table was dropped (events of
-- open items, pending deliveries and jobs, longer per-type rules).
CREATE TABLE event_keys_kept (
    key  INTEGER NOT NULL,
    kind INTEGER NOT NULL,   -- 0 identity, 1 correlation, 2 causation
    seq  INTEGER NOT NULL,
    PRIMARY KEY (key, kind, seq)
) WITHOUT ROWID;
CREATE INDEX event_keys_kept_seq ON event_keys_kept (seq);

-- Every key table as one relation; rebuilt whenever a period's table comes or goes.
CREATE VIEW event_keys AS SELECT key, kind, seq FROM event_keys_kept;

DROP INDEX events_idhash;
DROP INDEX events_corrkey;
DROP INDEX events_causekey;
