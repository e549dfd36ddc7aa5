-- The event log: the counter row that orders every append, the period catalogue, the
-- log partitioned by period, and the one server-side call that appends a batch.
-- (docs/postgres.md, sections 1 and 2)

-- The head of the log. Its row lock is the append lock: taken by opsbus_append after
-- its pre-work and held until COMMIT, so seqs are commit-ordered and gapless.
CREATE TABLE log_head (
    id         int PRIMARY KEY CHECK (id = 1),
    last_seq   bigint NOT NULL,
    period     bigint NOT NULL,   -- start (epoch seconds) of the current partition
    period_end bigint NOT NULL    -- end of the current partition's range (exclusive)
);
INSERT INTO log_head (id, last_seq, period, period_end) VALUES (1, 0, 0, 0);

-- One row per partition: which seqs it holds (contiguous; last_seq NULL while current).
CREATE TABLE log_partitions (
    name       text PRIMARY KEY,
    period     bigint NOT NULL UNIQUE,
    period_end bigint NOT NULL,
    first_seq  bigint,
    last_seq   bigint
);

CREATE TABLE events (
    seq           bigint NOT NULL,
    period        bigint NOT NULL,
    recvtime      text NOT NULL,
    idhash        bigint NOT NULL,    -- 64-bit blake2b of source NUL id
    source        text NOT NULL,
    id            text NOT NULL,
    type          text NOT NULL,
    subject       text,
    time          text,
    correlationid text,
    causationid   text,
    corrkey       bigint,             -- 64-bit hash of correlationid
    causekey      bigint,             -- 64-bit hash of causationid
    digest        bytea NOT NULL,
    routes        text,              -- JSON array of the routes it matched
    root          bigint NOT NULL DEFAULT 0,
    body          bytea NOT NULL,
    PRIMARY KEY (seq, period)
) PARTITION BY RANGE (period);
-- Partitioned indexes: every partition gets its own, bounded by the partition's size.
-- The identity index is not unique: dedupe is decided under the append lock (below).
CREATE INDEX events_identity ON events (idhash);
CREATE INDEX events_corr ON events (corrkey) WHERE corrkey IS NOT NULL;
CREATE INDEX events_cause ON events (causekey) WHERE causekey IS NOT NULL;

-- The partition that holds `target` (a period start), created if missing; its range
-- ends at `target + period_s` or at the next existing partition, whichever is first.
-- Callers hold the log_head row lock, so two callers never create the same partition.
CREATE FUNCTION opsbus_partition_for(target bigint, period_s bigint)
    RETURNS log_partitions
    LANGUAGE plpgsql AS $$
DECLARE
    part log_partitions;
    range_end bigint;
BEGIN
    SELECT * INTO part FROM log_partitions
        WHERE period <= target AND target < period_end;
    IF FOUND THEN
        RETURN part;
    END IF;
    range_end := least(target + period_s,
                       coalesce((SELECT min(period) FROM log_partitions WHERE period > target),
                                target + period_s));
    part.name := 'events_' || to_char(to_timestamp(target) AT TIME ZONE 'UTC',
                                       'YYYYMMDD"_"HH24MISS');
    part.period := target;
    part.period_end := range_end;
    EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%s) TO (%s)',
                   part.name, target, range_end);
    INSERT INTO log_partitions (name, period, period_end) VALUES (part.name, target, range_end);
    RETURN part;
END;
$$;

-- Ahead-of-need creation (a maintenance task calls it for the current and next period),
-- serialised with appends by the same row lock.
CREATE FUNCTION opsbus_ensure_partition(target bigint, period_s bigint)
    RETURNS text
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM log_head WHERE id = 1 FOR UPDATE;
    RETURN (opsbus_partition_for(target, period_s)).name;
END;
$$;

-- Append a batch (arrays of equal length, one element per event, no identity repeated
-- inside the batch). Returns one row per element, in order: its seq, whether it was
-- already stored (within the current and previous partition) and whether the stored
-- content differs. Steps: lock the counter row; probe identities (a new snapshot: every
-- earlier append has committed); insert the new events with consecutive seqs; move the
-- head; notify listeners with the new head. The caller commits.
CREATE FUNCTION opsbus_append(
    p_period bigint, p_period_s bigint, p_recvtime text,
    p_idhash bigint[], p_source text[], p_id text[], p_type text[], p_subject text[],
    p_time text[], p_corr text[], p_cause text[], p_corrkey bigint[], p_causekey bigint[],
    p_digest bytea[], p_root bigint[], p_body bytea[]
)
    RETURNS TABLE (seq bigint, duplicate boolean, conflict boolean)
    LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    head log_head;
    part log_partitions;
    previous bigint;
    total int := coalesce(array_length(p_idhash, 1), 0);
    found_ord bigint[];
    found_seq bigint[];
    found_conflict boolean[];
    fresh int;
BEGIN
    SELECT * INTO head FROM log_head WHERE id = 1 FOR UPDATE;
    IF greatest(p_period, head.period) >= head.period_end THEN
        part := opsbus_partition_for(greatest(p_period, head.period), p_period_s);
        UPDATE log_partitions SET last_seq = head.last_seq WHERE period = head.period;
        UPDATE log_partitions SET first_seq = head.last_seq + 1 WHERE period = part.period;
        head.period := part.period;
        head.period_end := part.period_end;
    END IF;
    previous := (SELECT max(lp.period) FROM log_partitions lp WHERE lp.period < head.period);

    SELECT coalesce(array_agg(f.ord ORDER BY f.ord), '{}'),
           coalesce(array_agg(f.seq ORDER BY f.ord), '{}'),
           coalesce(array_agg(f.conflict ORDER BY f.ord), '{}')
        INTO found_ord, found_seq, found_conflict
        FROM (SELECT DISTINCT ON (b.ord) b.ord, e.seq, e.digest <> b.digest AS conflict
              FROM unnest(p_idhash, p_source, p_id, p_digest) WITH ORDINALITY
                   AS b(idhash, source, id, digest, ord)
              JOIN events e ON e.idhash = b.idhash AND e.source = b.source AND e.id = b.id
              WHERE e.period = ANY (ARRAY[head.period, previous])
              ORDER BY b.ord, e.seq) AS f;
    fresh := total - coalesce(array_length(found_ord, 1), 0);

    IF fresh > 0 THEN
        INSERT INTO events (seq, period, recvtime, idhash, source, id, type, subject, time,
                            correlationid, causationid, corrkey, causekey, digest, root, body)
        SELECT head.last_seq + row_number() OVER (ORDER BY b.ord), head.period, p_recvtime,
               b.idhash, b.source, b.id, b.type, b.subject, b.time, b.corr, b.cause,
               b.corrkey, b.causekey, b.digest, b.root, b.body
        FROM unnest(p_idhash, p_source, p_id, p_type, p_subject, p_time, p_corr, p_cause,
                    p_corrkey, p_causekey, p_digest, p_root, p_body) WITH ORDINALITY
             AS b(idhash, source, id, type, subject, time, corr, cause, corrkey, causekey,
                  digest, root, body, ord)
        WHERE b.ord <> ALL (found_ord)
        ORDER BY b.ord;
    END IF;
    IF fresh > 0 OR head.period <> (SELECT h.period FROM log_head h WHERE h.id = 1) THEN
        UPDATE log_head SET last_seq = head.last_seq + fresh, period = head.period,
                            period_end = head.period_end
            WHERE id = 1;
    END IF;
    IF fresh > 0 THEN
        -- Channels are per database: the schema's name keeps installations that share
        -- a database (one schema each) from waking each other.
        PERFORM pg_notify('opsbus_head.' || current_schema(), (head.last_seq + fresh)::text);
    END IF;

    RETURN QUERY
        SELECT coalesce(f.seq, n.seq), f.seq IS NOT NULL, coalesce(f.conflict, false)
        FROM generate_series(1, total) AS b(ord)
        LEFT JOIN unnest(found_ord, found_seq, found_conflict) AS f(ord, seq, conflict)
               ON f.ord = b.ord
        LEFT JOIN (SELECT g.ord, head.last_seq + row_number() OVER (ORDER BY g.ord) AS seq
                   FROM generate_series(1, total) AS g(ord)
                   WHERE g.ord <> ALL (found_ord)) AS n ON n.ord = b.ord
        ORDER BY b.ord;
END;
$$;
