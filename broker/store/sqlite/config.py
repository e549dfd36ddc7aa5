"""SQLite statements for configuration objects."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from broker.config.repository import AppliedFile, ConfigObject, ConfigRepository, ConfigWrites
from broker.store.sqlite.connections import ReaderPool
from broker.store.sqlite.transaction import connection_of
from broker.store.transaction import Transaction

CONFIG_COLUMNS = "kind, name, spec, origin, version, updated_at"
FILE_COLUMNS = "digest, revision, applied_by, applied_at, version"


def row_to_file(row: Sequence[Any]) -> AppliedFile:
    return AppliedFile(row[0], row[1], row[2], row[3], int(row[4]))


def row_to_config(row: Sequence[Any]) -> ConfigObject:
    return ConfigObject(row[0], row[1], orjson.loads(row[2]), row[3], row[4], row[5])


class SqliteConfigWrites(ConfigWrites):
    """Configuration writes on the writer connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    async def put(self, kind: str, name: str, spec: dict[str, Any], origin: str, now: str
                  ) -> ConfigObject:
        version = self._bump_config_version()
        self.conn.execute(
            "INSERT INTO config_objects (kind, name, spec, origin, version, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, name) DO UPDATE SET"
            " spec = excluded.spec, origin = excluded.origin, version = excluded.version,"
            " updated_at = excluded.updated_at",
            (kind, name, orjson.dumps(spec).decode(), origin, version, now),
        )
        return ConfigObject(kind, name, spec, origin, version, now)

    async def delete(self, kind: str, name: str) -> bool:
        cursor = self.conn.execute(
            "DELETE FROM config_objects WHERE kind = ? AND name = ?", (kind, name)
        )
        if cursor.rowcount:
            self._bump_config_version()
        return cursor.rowcount > 0

    async def applied_file(self) -> AppliedFile | None:
        row = self.conn.execute(f"SELECT {FILE_COLUMNS} FROM config_file").fetchone()
        return row_to_file(row) if row else None

    async def record_file(self, digest: str, revision: str, applied_by: str, now: str
                          ) -> AppliedFile:
        (version,) = self.conn.execute(
            "SELECT value FROM counters WHERE name = 'config_version'").fetchone()
        self.conn.execute(
            f"INSERT OR REPLACE INTO config_file (id, {FILE_COLUMNS})"
            " VALUES (1, ?, ?, ?, ?, ?)", (digest, revision, applied_by, now, int(version)))
        return AppliedFile(digest, revision, applied_by, now, int(version))

    def _bump_config_version(self) -> int:
        (version,) = self.conn.execute(
            "UPDATE counters SET value = value + 1 WHERE name = 'config_version'"
            " RETURNING value"
        ).fetchone()
        return int(version)


class SqliteConfig(ConfigRepository):
    """Configuration objects in `config_objects`; reads on the reader pool."""

    def __init__(self, readers: ReaderPool) -> None:
        self._readers = readers

    def writes(self, tx: Transaction) -> SqliteConfigWrites:
        return SqliteConfigWrites(connection_of(tx))

    async def objects(self, kind: str | None = None) -> list[ConfigObject]:
        sql = "SELECT kind, name, spec, origin, version, updated_at FROM config_objects"
        params: tuple[Any, ...] = ()
        if kind is not None:
            sql += " WHERE kind = ?"
            params = (kind,)
        rows = await self._readers.fetchall(sql + " ORDER BY kind, name", params)
        return [row_to_config(r) for r in rows]

    async def get(self, kind: str, name: str) -> ConfigObject | None:
        row = await self._readers.fetchone(
            "SELECT kind, name, spec, origin, version, updated_at FROM config_objects"
            " WHERE kind = ? AND name = ?", (kind, name)
        )
        return row_to_config(row) if row else None

    async def version(self) -> int:
        row = await self._readers.fetchone(
            "SELECT value FROM counters WHERE name = 'config_version'"
        )
        return int(row[0]) if row else 0

    async def applied(self) -> AppliedFile | None:
        row = await self._readers.fetchone(f"SELECT {FILE_COLUMNS} FROM config_file")
        return row_to_file(row) if row else None
