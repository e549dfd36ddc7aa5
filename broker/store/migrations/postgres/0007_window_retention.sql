-- The dedupe window becomes a setting (`dedupe_window`, periods of `log_partition`; 0 is
-- forever): a repeat is recognised while its original lies in one of the newest
-- `p_window` periods (the default 2: the current and the previous, as before).
-- Retention's progress is recorded in `log_retention` (cut: every seq at or below it has
-- been examined and removed unless something still needed it).
DROP FUNCTION opsbus_append(bigint, bigint, text, bigint[], text[], text[], text[], text[],
                            text[], text[], text[], bigint[], bigint[], bytea[], bigint[],
                            bytea[]);

CREATE TABLE log_retention (
    id      int PRIMARY KEY CHECK (id = 1),
    cut     bigint NOT NULL,
    removed bigint NOT NULL
);
INSERT INTO log_retention (id, cut, removed) VALUES (1, 0, 0);

CREATE FUNCTION opsbus_append(
    p_period bigint, p_period_s bigint, p_window int, p_recvtime text,
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

    SELECT coalesce(array_agg(f.ord ORDER BY f.ord), '{}'),
           coalesce(array_agg(f.seq ORDER BY f.ord), '{}'),
           coalesce(array_agg(f.conflict ORDER BY f.ord), '{}')
        INTO found_ord, found_seq, found_conflict
        FROM (SELECT DISTINCT ON (b.ord) b.ord, e.seq, e.digest <> b.digest AS conflict
              FROM unnest(p_idhash, p_source, p_id, p_digest) WITH ORDINALITY
                   AS b(idhash, source, id, digest, ord)
              JOIN events e ON e.idhash = b.idhash AND e.source = b.source AND e.id = b.id
              WHERE (p_window = 0 OR e.period > head.period - p_window * p_period_s)
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
