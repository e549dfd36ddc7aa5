-- The event catalog: one row per (source, type) with when it was seen, how often, and
-- the inferred shape of its data (JSON: {"events": n, "truncated": b, "fields":
-- {path: [[types...], seen]}}). Each replica merges what it saw into the rows under a
-- row lock (SELECT ... FOR UPDATE), so the counts of several replicas add up.
CREATE TABLE catalog (
    source      text NOT NULL,
    type        text NOT NULL,
    first_seen  text NOT NULL,
    last_seen   text NOT NULL,
    count       bigint NOT NULL,
    arrivals    bigint NOT NULL,
    gap_s       double precision,
    rate        double precision NOT NULL,
    silent      boolean NOT NULL,
    shape       text NOT NULL,
    updated_at  text NOT NULL,
    PRIMARY KEY (source, type)
);
