"""Event-log and target-hit statements on PostgreSQL (writes run in the writer's
transaction, reads on pooled connections)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from broker.bus.lineage import RootUse
from broker.bus.log import (
    AppendResult,
    EventItem,
    EventLog,
    EventWrites,
    RoutedRow,
    StoredEvent,
    TargetRecord,
    digest_of,
)
from broker.filters.narrow import NARROW_ATTRIBUTES, Narrowing
from broker.store.keys import link_key
from broker.store.postgres import log as pglog
from broker.store.postgres.transaction import PoolSource, transaction_of
from broker.store.targets import by_event, encoded, merged
from broker.store.transaction import Transaction

if TYPE_CHECKING:
    import asyncpg

    from broker.store.postgres.connection import Conn

EVENT_COLUMNS = "seq, recvtime, body, routes, root"


class PgEventWrites(EventWrites):
    """Event and target writes inside the transaction."""

    def __init__(self, conn: Conn, period_s: int, window: int) -> None:
        self.conn = conn
        self.period_s = period_s
        self.window = window

    async def append(
        self, event: dict[str, Any], raw: bytes, recvtime: str, digest: bytes | None,
        root: int = 0
    ) -> AppendResult:
        new = pglog.NewEvent(event, raw, digest_of(raw) if digest is None else digest, root)
        [result] = await pglog.append(self.conn, [new],
                                      recvtime, self.period_s, self.window)
        return result

    async def root_use(self, root: int) -> RootUse:
        row = await self.conn.fetchrow(
            "SELECT descendants, noticed FROM event_lineage WHERE root = $1", root)
        return RootUse(row["descendants"], row["noticed"]) if row else RootUse()

    async def add_root_use(self, changes: Sequence[tuple[int, int, bool]]) -> None:
        if not changes:
            return
        await self.conn.executemany(
            "INSERT INTO event_lineage (root, descendants, noticed) VALUES ($1, $2, $3)"
            " ON CONFLICT (root) DO UPDATE SET descendants = event_lineage.descendants"
            " + excluded.descendants, noticed = event_lineage.noticed OR excluded.noticed",
            [(root, added, noticed) for root, added, noticed in changes])

    async def append_many(self, items: Sequence[EventItem], recvtime: str,
                          roots: Sequence[int] | None = None) -> list[AppendResult]:
        new = [pglog.NewEvent(e, raw, digest_of(raw) if digest is None else digest, root)
               for (e, raw, digest), root in zip(items, roots or [0] * len(items),
                                                 strict=True)]
        return await pglog.append(self.conn, new, recvtime, self.period_s, self.window)

    async def set_routes(self, items: Sequence[RoutedRow]) -> None:
        if not items:
            return
        # One statement; the events are the newest, so the planner meets the current
        # partition first.
        await self.conn.execute(
            "UPDATE events e SET routes = r.routes, targets = r.targets::jsonb FROM"
            " (SELECT u.seq, u.routes, u.targets FROM"
            "  unnest($1::bigint[], $2::text[], $3::text[]) AS u(seq, routes, targets)) AS r"
            " WHERE e.seq = r.seq AND e.period >= (SELECT period FROM log_partitions"
            "  WHERE first_seq <= $4 ORDER BY period DESC LIMIT 1)",
            [seq for seq, _, _ in items],
            [orjson.dumps(list(routes)).decode() for _, routes, _ in items],
            [encoded(hits).decode() if hits else None for _, _, hits in items],
            min(seq for seq, _, _ in items))

    async def add_targets(self, records: Sequence[TargetRecord]) -> None:
        # Rare (a hand-over after routing): each event's hits merged with what it holds.
        for seq, hits in by_event(records).items():
            stored = await self.conn.fetchval(
                "SELECT targets FROM events WHERE seq = $1 FOR UPDATE", seq)
            value = merged(stored, hits)
            if value is not None:
                await self.conn.execute("UPDATE events SET targets = $2::jsonb WHERE seq = $1",
                                        seq, value.decode())


class PgEventLog(EventLog):
    """The partitioned event log; reads on the pool."""

    def __init__(self, source: PoolSource) -> None:
        self._source = source

    @property
    def pool(self) -> asyncpg.Pool:
        return self._source.pool

    def writes(self, tx: Transaction) -> PgEventWrites:
        pg = transaction_of(tx)
        return PgEventWrites(pg.conn, pg.period_s, pg.window)

    async def last_seq(self) -> int:
        return await pglog.committed_head(self.pool)

    async def first_seq(self) -> int:
        return int(await self.pool.fetchval("SELECT coalesce(min(seq), 0) FROM events"))

    async def retained_from(self) -> int:
        return int(await self.pool.fetchval("SELECT cut FROM log_retention WHERE id = 1")
                   or 0) + 1

    async def get(self, seq: int) -> StoredEvent | None:
        row = await self.pool.fetchrow(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE seq = $1", seq)
        return pglog.row_to_event(row) if row else None

    async def find(self, source: str, id: str) -> StoredEvent | None:
        from broker.store.keys import identity_key

        row = await self.pool.fetchrow(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE idhash = $1 AND source = $2"
            " AND id = $3 ORDER BY seq DESC LIMIT 1", identity_key(source, id), source, id)
        return pglog.row_to_event(row) if row else None

    async def read(
        self,
        after: int = 0,
        limit: int = 100,
        *,
        type: str | None = None,
        source: str | None = None,
        subject: str | None = None,
        since: str | None = None,
        until: str | None = None,
        correlationid: str | None = None,
        causationid: str | None = None,
        id: str | None = None,
        descending: bool = False,
        scan_to: int | None = None,
        narrow: Narrowing = (),
    ) -> list[StoredEvent]:
        clauses: list[str] = []
        params: list[Any] = []

        def bind(value: Any) -> str:
            params.append(value)
            return f"${len(params)}"

        if descending:
            if after > 0:
                clauses.append(f"seq < {bind(after)}")
        else:
            clauses.append(f"seq > {bind(after)}")
        if scan_to is not None:
            clauses.append(f"seq {'>=' if descending else '<='} {bind(scan_to)}")
        for column, value in (("type", type), ("source", source), ("subject", subject),
                              ("id", id)):
            if value is not None:
                clauses.append(f"{column} = {bind(value)}")
        for column, key, value in (("correlationid", "corrkey", correlationid),
                                   ("causationid", "causekey", causationid)):
            if value is not None:
                clauses.append(f"{key} = {bind(link_key(value))}")
                clauses.append(f"{column} = {bind(value)}")
        for n in narrow:
            if n.attribute not in NARROW_ATTRIBUTES:
                raise ValueError(f"no column to narrow by {n.attribute!r}")
            terms = []
            if n.exact:
                terms.append(f"{n.attribute} = ANY({bind(sorted(n.exact))}::text[])")
            for pattern in sorted(n.patterns):
                # Backslash is LIKE's default escape character in PostgreSQL.
                terms.append(f"{n.attribute} LIKE {bind(pattern)}")
            clauses.append("(" + " OR ".join(terms or ["false"]) + ")")
        if since is not None:
            clauses.append(f"recvtime >= {bind(since)}")
        if until is not None:
            clauses.append(f"recvtime < {bind(until)}")
        where = " AND ".join(clauses) or "true"
        order = "DESC" if descending else "ASC"
        rows = await self.pool.fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE {where} ORDER BY seq {order}"
            f" LIMIT {bind(limit)}", *params)
        return [pglog.row_to_event(r) for r in rows]

    async def count(self) -> int:
        return int(await self.pool.fetchval("SELECT count(*) FROM events"))

    async def targets_of(self, seq: int) -> list[TargetRecord]:
        # Ordered here, not in Python: by the database's collation, as listings are.
        rows = await self.pool.fetch(
            "SELECT t.hit ->> 0 AS route, t.hit ->> 1 AS target, t.hit -> 2 AS detail"
            " FROM events e CROSS JOIN jsonb_array_elements(e.targets) AS t(hit)"
            " WHERE e.seq = $1 ORDER BY 1, 2", seq)
        return [TargetRecord(seq, r["route"], r["target"],
                             orjson.loads(r["detail"]) if r["detail"] else {}) for r in rows]
