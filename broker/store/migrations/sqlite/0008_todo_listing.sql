-- Reads of todo items stay flat with the number of items: one queue's items in one
-- state in index order, and per-queue counts kept by the writes instead of counted.
CREATE INDEX todos_listing ON todos (queue, state, updated_at, id);
DROP INDEX todos_queue_state;
-- The oldest open item of a queue without visiting the others.
CREATE INDEX todos_oldest_open ON todos (queue, first_seen) WHERE state = 'open';

-- Items per queue and state, kept by the triggers below in the transaction that
-- changes an item (whatever statement does it), so they cannot drift from the rows.
CREATE TABLE queue_counts (
    queue TEXT NOT NULL,
    state TEXT NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (queue, state)
) WITHOUT ROWID;
INSERT INTO queue_counts (queue, state, n)
SELECT queue, state, count(*) FROM todos GROUP BY queue, state;

CREATE TRIGGER todos_counted_insert AFTER INSERT ON todos
BEGIN
    INSERT INTO queue_counts (queue, state, n) VALUES (new.queue, new.state, 1)
    ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER todos_counted_update AFTER UPDATE OF queue, state ON todos
WHEN old.state IS NOT new.state OR old.queue IS NOT new.queue
BEGIN
    UPDATE queue_counts SET n = n - 1 WHERE queue = old.queue AND state = old.state;
    INSERT INTO queue_counts (queue, state, n) VALUES (new.queue, new.state, 1)
    ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER todos_counted_delete AFTER DELETE ON todos
BEGIN
    UPDATE queue_counts SET n = n - 1 WHERE queue = old.queue AND state = old.state;
END;
