"""Configuration-object statements on PostgreSQL; a change notifies the other replicas."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from broker.config.repository import AppliedFile, ConfigObject, ConfigRepository, ConfigWrites
from broker.store.postgres.transaction import PoolSource, transaction_of
from broker.store.transaction import Transaction

if TYPE_CHECKING:
    import asyncpg

    from broker.store.postgres.connection import Conn

CONFIG_COLUMNS = "kind, name, spec, origin, version, updated_at"
FILE_COLUMNS = "encode(digest, 'hex'), revision, applied_by, applied_at, version"


def row_to_config(row: asyncpg.Record) -> ConfigObject:
    return ConfigObject(row["kind"], row["name"], orjson.loads(row["spec"]), row["origin"],
                        row["version"], row["updated_at"])


def row_to_file(row: asyncpg.Record) -> AppliedFile:
    return AppliedFile(row[0], row[1], row[2], row[3], int(row[4]))


class PgConfigWrites(ConfigWrites):
    """Configuration writes inside the transaction."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def put(self, kind: str, name: str, spec: dict[str, Any], origin: str, now: str
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

    async def delete(self, kind: str, name: str) -> bool:
        deleted = await self.conn.fetchval(
            "WITH d AS (DELETE FROM config_objects WHERE kind = $1 AND name = $2 RETURNING 1),"
            " v AS (UPDATE counters SET value = value + 1 WHERE name = 'config_version'"
            "       AND EXISTS (SELECT 1 FROM d) RETURNING value)"
            " SELECT (SELECT value FROM v)", kind, name)
        if deleted is not None:
            await self.conn.execute(
                "SELECT pg_notify('opsbus_config.' || current_schema(), $1)", str(deleted))
        return deleted is not None

    async def applied_file(self) -> AppliedFile | None:
        # The transaction holds the log's lock (every replica's writes are serialised
        # by it): nothing can record another file between this read and the write.
        row = await self.conn.fetchrow(f"SELECT {FILE_COLUMNS} FROM config_file FOR UPDATE")
        return row_to_file(row) if row else None

    async def record_file(self, digest: str, revision: str, applied_by: str, now: str
                          ) -> AppliedFile:
        row = await self.conn.fetchrow(
            "INSERT INTO config_file (id, digest, revision, applied_by, applied_at, version)"
            " SELECT 1, decode($1, 'hex'), $2, $3, $4, value FROM counters"
            " WHERE name = 'config_version' ON CONFLICT (id) DO UPDATE SET"
            " digest = excluded.digest, revision = excluded.revision,"
            " applied_by = excluded.applied_by, applied_at = excluded.applied_at,"
            f" version = excluded.version RETURNING {FILE_COLUMNS}",
            digest, revision, applied_by, now)
        assert row is not None  # the counter row always exists
        return row_to_file(row)


class PgConfig(ConfigRepository):
    """Configuration objects; reads on the pool."""

    def __init__(self, source: PoolSource) -> None:
        self._source = source

    @property
    def pool(self) -> asyncpg.Pool:
        return self._source.pool

    def writes(self, tx: Transaction) -> PgConfigWrites:
        return PgConfigWrites(transaction_of(tx).conn)

    async def objects(self, kind: str | None = None) -> list[ConfigObject]:
        if kind is None:
            rows = await self.pool.fetch(
                f"SELECT {CONFIG_COLUMNS} FROM config_objects ORDER BY kind, name")
        else:
            rows = await self.pool.fetch(
                f"SELECT {CONFIG_COLUMNS} FROM config_objects WHERE kind = $1 ORDER BY name",
                kind)
        return [row_to_config(r) for r in rows]

    async def get(self, kind: str, name: str) -> ConfigObject | None:
        row = await self.pool.fetchrow(
            f"SELECT {CONFIG_COLUMNS} FROM config_objects WHERE kind = $1 AND name = $2",
            kind, name)
        return row_to_config(row) if row else None

    async def version(self) -> int:
        return int(await self.pool.fetchval(
            "SELECT value FROM counters WHERE name = 'config_version'") or 0)

    async def applied(self) -> AppliedFile | None:
        row = await self.pool.fetchrow(f"SELECT {FILE_COLUMNS} FROM config_file")
        return row_to_file(row) if row else None
