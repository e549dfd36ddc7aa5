-- Per-queue counts kept by the writes instead of counted at read time. Several replicas
-- change items of the same queue at once, so a change does not update a shared counter
-- row (its lock would serialise their transactions until COMMIT): it inserts a +1/-1
-- delta row, the maintenance pass folds deltas into queue_counts, and readers add both.
CREATE TABLE queue_counts (
    queue text NOT NULL,
    state text NOT NULL,
    n     bigint NOT NULL,
    PRIMARY KEY (queue, state)
);
CREATE TABLE queue_counts_delta (
    id    bigserial PRIMARY KEY,
    queue text NOT NULL,
    state text NOT NULL,
    n     bigint NOT NULL
);
INSERT INTO queue_counts (queue, state, n)
SELECT queue, state, count(*) FROM todos GROUP BY queue, state;

CREATE FUNCTION opsbus_count_todo() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO queue_counts_delta (queue, state, n) VALUES (OLD.queue, OLD.state, -1);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        INSERT INTO queue_counts_delta (queue, state, n) VALUES (NEW.queue, NEW.state, 1);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER todos_counted_insert AFTER INSERT ON todos
    FOR EACH ROW EXECUTE FUNCTION opsbus_count_todo();
CREATE TRIGGER todos_counted_update AFTER UPDATE OF queue, state ON todos
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.queue IS DISTINCT FROM NEW.queue)
    EXECUTE FUNCTION opsbus_count_todo();
CREATE TRIGGER todos_counted_delete AFTER DELETE ON todos
    FOR EACH ROW EXECUTE FUNCTION opsbus_count_todo();

-- Folds the deltas into the counts; replicas folding at once each move distinct rows
-- (a deleted delta row is skipped by the other DELETE).
CREATE FUNCTION opsbus_fold_queue_counts() RETURNS void
    LANGUAGE sql AS $$
    WITH moved AS (
        DELETE FROM queue_counts_delta RETURNING queue, state, n
    ), summed AS (
        SELECT queue, state, sum(n) AS n FROM moved GROUP BY queue, state
    )
    INSERT INTO queue_counts (queue, state, n) SELECT queue, state, n FROM summed
    ON CONFLICT (queue, state) DO UPDATE SET n = queue_counts.n + excluded.n;
$$;
