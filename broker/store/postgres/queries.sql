-- Named statements of the PostgreSQL store. Each starts with a `-- name: <name>` line;
-- the comment lines after it say what it does. Loaded by queries.py.

-- name: append
-- Append a batch (docs/postgres.md, section 1): one call, the log's lock taken last.
SELECT seq, duplicate, conflict
FROM opsbus_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                    $17)

-- name: committed_head
-- The highest committed seq: every seq at or below it is committed and visible.
SELECT last_seq FROM log_head WHERE id = 1

-- name: read_after
-- A page of the log after a cursor, in seq order.
SELECT seq, recvtime, body, routes, root FROM events WHERE seq > $1 ORDER BY seq LIMIT $2

-- name: read_range
-- The events with after < seq <= upto, in seq order (a gap the live tail must fill).
SELECT seq, recvtime, body, routes, root FROM events
WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3

-- name: ensure_partition
-- Create the partition for a period ahead of need (serialised with appends).
SELECT opsbus_ensure_partition($1, $2)
