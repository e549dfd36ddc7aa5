-- Configuration objects shared by every replica, route target hits, lineage budgets,
-- and the record of the config file last applied (docs/postgres.md, section 6).

CREATE TABLE config_objects (
    kind       text NOT NULL,
    name       text NOT NULL,
    spec       jsonb NOT NULL,
    origin     text NOT NULL,
    version    bigint NOT NULL,
    updated_at text NOT NULL,
    PRIMARY KEY (kind, name)
);

-- Named counters; `config_version` grows with every configuration change.
CREATE TABLE counters (
    name  text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO counters (name, value) VALUES ('config_version', 0);

-- The config file applied last, so that replicas holding the same file apply it once
-- and a replica with an older file does not roll a newer one back.
CREATE TABLE config_file (
    id         int PRIMARY KEY CHECK (id = 1),
    digest     bytea NOT NULL,
    revision   text NOT NULL,        -- [server] config_revision, or the file's mtime
    applied_by text NOT NULL,        -- the replica (host:port) that applied it
    applied_at text NOT NULL,
    version    bigint NOT NULL       -- config_version after the apply
);

-- Route target hits, recorded with the event in its transaction. No foreign key to
-- the partitioned log: retention drops partitions whole.
CREATE TABLE event_targets (
    seq    bigint NOT NULL,
    route  text NOT NULL,
    target text NOT NULL,
    detail jsonb,
    PRIMARY KEY (seq, route, target)
);

-- Descendants each root event has caused (bounded), and whether its loop notice went out.
CREATE TABLE event_lineage (
    root        bigint PRIMARY KEY,
    descendants bigint NOT NULL,
    noticed     boolean NOT NULL
);
