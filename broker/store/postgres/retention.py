"""Retention on PostgreSQL: scans by seq and removal in batches (`DELETE` by seq; the
partitions' own autovacuum reclaims the space)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from broker.retention.policy import Candidate
from broker.retention.repository import LogUsage, Removal, RetentionRepository, RetentionWrites
from broker.store.postgres.transaction import PoolSource, transaction_of
from broker.store.transaction import Transaction

if TYPE_CHECKING:
    from broker.store.postgres.connection import Conn

NEEDED = """
SELECT te.seq FROM todos t JOIN todo_events te ON te.todo_id = t.id
 WHERE t.state <> 'resolved' AND te.seq = ANY ($1::bigint[])
UNION SELECT event_seq FROM todos WHERE state <> 'resolved' AND event_seq = ANY ($1::bigint[])
UNION SELECT first_event_seq FROM todos
 WHERE state <> 'resolved' AND first_event_seq = ANY ($1::bigint[])
UNION SELECT seq FROM deliveries
 WHERE state IN ('pending', 'leased') AND seq = ANY ($1::bigint[])
UNION SELECT seq FROM action_jobs
 WHERE state IN ('pending', 'running') AND seq = ANY ($1::bigint[])
"""


class PgRetentionWrites(RetentionWrites):
    """Removal inside the writer's transaction (which holds the log's lock)."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def remove(self, seqs: Sequence[int], cut: int | None = None) -> Removal:
        needed = 0
        removed = 0
        if seqs:
            wanted = list(seqs)
            held = {row[0] for row in await self.conn.fetch(NEEDED, wanted)}
            going = [s for s in wanted if s not in held]
            needed = len(wanted) - len(going)
            if going:
                status = await self.conn.execute(
                    "DELETE FROM events WHERE seq = ANY ($1::bigint[])", going)
                removed = int(status.split()[-1])
                await self.conn.execute(
                    "DELETE FROM event_lineage WHERE root = ANY ($1::bigint[])", going)
        await self.conn.execute(
            "UPDATE log_retention SET removed = removed + $1, cut = greatest(cut, $2)"
            " WHERE id = 1", removed, cut or 0)
        return Removal(removed, needed)

    async def reclaim(self, pages: int) -> int:
        return 0  # autovacuum returns the space of deleted rows to each partition


class PgRetention(RetentionRepository):
    """Retention reads on the pool."""

    def __init__(self, source: PoolSource) -> None:
        self._source = source

    def writes(self, tx: Transaction) -> PgRetentionWrites:
        return PgRetentionWrites(transaction_of(tx).conn)

    async def cut(self) -> int:
        return int(await self._source.pool.fetchval(
            "SELECT cut FROM log_retention WHERE id = 1") or 0)

    async def scan(self, after: int, limit: int, upto: int | None = None
                   ) -> list[Candidate]:
        rows = await self._source.pool.fetch(
            "SELECT seq, type, recvtime FROM events WHERE seq > $1 AND seq <= $2"
            " ORDER BY seq LIMIT $3", after, upto if upto is not None else 2**63 - 1, limit)
        return [Candidate(r["seq"], r["type"], r["recvtime"]) for r in rows]

    async def usage(self, count: bool, size: bool) -> LogUsage:
        pool = self._source.pool
        events = int(await pool.fetchval("SELECT count(*) FROM events")) if count else 0
        used = int(await pool.fetchval(
            "SELECT coalesce(sum(pg_total_relation_size(relid)), 0)"
            " FROM pg_partition_tree('events')") or 0) if size else 0
        return LogUsage(events, used)
