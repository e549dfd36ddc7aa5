"""Event-log, target-hit and configuration statements on PostgreSQL (writes run in the
writer's transaction, reads on pooled connections)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from broker.lineage import RootUse
from broker.store.postgres import log as pglog
from broker.store.postgres.keys import link_key
from broker.store.records import AppendResult, ConfigObject, StoredEvent, TargetRecord

if TYPE_CHECKING:
    import asyncpg

    from broker.store.postgres.connection import Conn

EVENT_COLUMNS = "seq, recvtime, body, routes, root"
CONFIG_COLUMNS = "kind, name, spec, origin, version, updated_at"


def row_to_config(row: asyncpg.Record) -> ConfigObject:
    return ConfigObject(row["kind"], row["name"], orjson.loads(row["spec"]), row["origin"],
                        row["version"], row["updated_at"])


def _json(value: Any) -> str | None:
    return orjson.dumps(value).decode() if value else None


class EventWriteSql:
    """Event, target and configuration writes inside the transaction."""

    conn: Conn
    period_s: int

    async def append_event(
        self, event: dict[str, Any], raw: bytes, recvtime: str, digest: bytes, root: int = 0
    ) -> AppendResult:
        [result] = await pglog.append(self.conn, [pglog.NewEvent(event, raw, digest, root)],
                                      recvtime, self.period_s)
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

    async def append_events(
        self, items: Sequence[tuple[dict[str, Any], bytes, bytes]], recvtime: str
    ) -> list[AppendResult]:
        return await pglog.append(
            self.conn, [pglog.NewEvent(e, raw, digest) for e, raw, digest in items],
            recvtime, self.period_s)

    async def set_routes(self, seq: int, routes: Sequence[str]) -> None:
        await self.set_routes_many([(seq, routes)])

    async def set_routes_many(self, items: Sequence[tuple[int, Sequence[str]]]) -> None:
        if not items:
            return
        # One statement; the events are the newest, so the planner meets the current
        # partition first.
        await self.conn.execute(
            "UPDATE events e SET routes = r.routes FROM (SELECT u.seq, u.routes FROM"
            " unnest($1::bigint[], $2::text[]) AS u(seq, routes)) AS r"
            " WHERE e.seq = r.seq AND e.period >= (SELECT period FROM log_partitions"
            "  WHERE first_seq <= $3 ORDER BY period DESC LIMIT 1)",
            [seq for seq, _ in items],
            [orjson.dumps(list(routes)).decode() for _, routes in items],
            min(seq for seq, _ in items))

    async def add_targets(self, records: Sequence[TargetRecord]) -> None:
        if not records:
            return
        await self.conn.executemany(
            "INSERT INTO event_targets (seq, route, target, detail) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT DO NOTHING",
            [(r.seq, r.route, r.target, _json(r.detail)) for r in records])

    async def put_config(
        self, kind: str, name: str, spec: dict[str, Any], origin: str, now: str
    ) -> ConfigObject:
        row = await self.conn.fetchrow(
            "WITH v AS (UPDATE counters SET value = value + 1 WHERE name = 'config_version'"
            "           RETURNING value)"
            " INSERT INTO config_objects (kind, name, spec, origin, version, updated_at)"
            " SELECT $1, $2, $3, $4, v.value, $5 FROM v"
            " ON CONFLICT (kind, name) DO UPDATE SET spec = excluded.spec,"
            " origin = excluded.origin, version = excluded.version,"
            f" updated_at = excluded.updated_at RETURNING {CONFIG_COLUMNS}",
            kind, name, orjson.dumps(spec).decode(), origin, now)
        assert row is not None  # the counter row always exists
        await self.conn.execute(
            "SELECT pg_notify('opsbus_config.' || current_schema(), $1)", str(row["version"]))
        return row_to_config(row)

    async def delete_config(self, kind: str, name: str) -> bool:
        deleted = await self.conn.fetchval(
            "WITH d AS (DELETE FROM config_objects WHERE kind = $1 AND name = $2 RETURNING 1),"
            " v AS (UPDATE counters SET value = value + 1 WHERE name = 'config_version'"
            "       AND EXISTS (SELECT 1 FROM d) RETURNING value)"
            " SELECT (SELECT value FROM v)", kind, name)
        if deleted is not None:
            await self.conn.execute(
                "SELECT pg_notify('opsbus_config.' || current_schema(), $1)", str(deleted))
        return deleted is not None


class EventReadSql:
    """Event, target and configuration reads on the pool."""

    pool: asyncpg.Pool

    async def last_seq(self) -> int:
        return await pglog.committed_head(self.pool)

    async def get_event(self, seq: int) -> StoredEvent | None:
        row = await self.pool.fetchrow(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE seq = $1", seq)
        return pglog.row_to_event(row) if row else None

    async def find_event(self, source: str, id: str) -> StoredEvent | None:
        from broker.store.postgres.keys import identity_key

        row = await self.pool.fetchrow(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE idhash = $1 AND source = $2"
            " AND id = $3 ORDER BY seq DESC LIMIT 1", identity_key(source, id), source, id)
        return pglog.row_to_event(row) if row else None

    async def find_by_id(self, id: str) -> list[StoredEvent]:
        rows = await self.pool.fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE id = $1 ORDER BY seq", id)
        return [pglog.row_to_event(r) for r in rows]

    async def read_events(
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
        for column, value in (("type", type), ("source", source), ("subject", subject),
                              ("id", id)):
            if value is not None:
                clauses.append(f"{column} = {bind(value)}")
        for column, key, value in (("correlationid", "corrkey", correlationid),
                                   ("causationid", "causekey", causationid)):
            if value is not None:
                clauses.append(f"{key} = {bind(link_key(value))}")
                clauses.append(f"{column} = {bind(value)}")
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

    async def count_events(self) -> int:
        return int(await self.pool.fetchval("SELECT count(*) FROM events"))

    async def targets_of(self, seq: int) -> list[TargetRecord]:
        rows = await self.pool.fetch(
            "SELECT seq, route, target, detail FROM event_targets WHERE seq = $1"
            " ORDER BY route, target", seq)
        return [TargetRecord(r["seq"], r["route"], r["target"],
                             orjson.loads(r["detail"]) if r["detail"] else {}) for r in rows]

    async def list_config(self, kind: str | None = None) -> list[ConfigObject]:
        if kind is None:
            rows = await self.pool.fetch(
                f"SELECT {CONFIG_COLUMNS} FROM config_objects ORDER BY kind, name")
        else:
            rows = await self.pool.fetch(
                f"SELECT {CONFIG_COLUMNS} FROM config_objects WHERE kind = $1 ORDER BY name",
                kind)
        return [row_to_config(r) for r in rows]

    async def get_config(self, kind: str, name: str) -> ConfigObject | None:
        row = await self.pool.fetchrow(
            f"SELECT {CONFIG_COLUMNS} FROM config_objects WHERE kind = $1 AND name = $2",
            kind, name)
        return row_to_config(row) if row else None

    async def config_version(self) -> int:
        return int(await self.pool.fetchval(
            "SELECT value FROM counters WHERE name = 'config_version'") or 0)
