"""SqliteStore: the embedded backend behind the store interface."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson

from broker.errors import Unavailable
from broker.store.base import Store, WriteTxn
from broker.store.migrations import migrations
from broker.store.records import ConfigObject, StoredEvent, TargetRecord
from broker.store.sqlite import lock
from broker.store.sqlite.connections import ReaderPool, open_writer
from broker.store.sqlite.delivery import DeliveryReadSql, DeliveryWriteSql
from broker.store.sqlite.events import (
    EVENT_COLUMNS,
    EventWrites,
    row_to_config,
    row_to_event,
)
from broker.store.sqlite.maintenance import (
    DEFAULT_WAL_MAX_BYTES,
    SqliteMaintenance,
    WalGuard,
    refuse_newer_schema,
)
from broker.store.sqlite.todos import TodoReadSql, TodoWriteSql

log = logging.getLogger(__name__)


class SqliteTxn(EventWrites, TodoWriteSql, DeliveryWriteSql, WriteTxn):
    """A transaction on the writer connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._savepoints = 0

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        self._savepoints += 1
        name = f"sp{self._savepoints}"
        self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self.conn.execute(f"ROLLBACK TO {name}")
            self.conn.execute(f"RELEASE {name}")
            raise
        else:
            self.conn.execute(f"RELEASE {name}")


class SqliteStore(TodoReadSql, DeliveryReadSql, SqliteMaintenance, Store):
    """Embedded store in one SQLite file (WAL)."""

    def __init__(self, path: str | Path, durability: str = "full",
                 wal_max_bytes: int = DEFAULT_WAL_MAX_BYTES) -> None:
        self.path = Path(path)
        self.durability = durability
        self._wal = WalGuard(self.path, wal_max_bytes)
        self._writer: sqlite3.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._readers = ReaderPool(self.path)

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire(self.path)
        try:
            self._writer = open_writer(self.path, self.durability)
            self._wal.attach(self._writer)
            self._migrate(self._writer)
            await self._readers.open()
        except BaseException:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            lock.release(self.path)
            raise

    def _migrate(self, conn: sqlite3.Connection) -> None:
        (current,) = conn.execute("PRAGMA user_version").fetchone()
        refuse_newer_schema(current, self.path)
        pending = [m for m in migrations("sqlite") if m[0] > current]
        if not pending:
            return
        # Foreign keys are off while a migration rebuilds a table (SQLite's documented
        # way; the pragma cannot change inside a transaction) and checked before COMMIT.
        conn.execute("PRAGMA foreign_keys=OFF")
        try:
            for version, name, sql in pending:
                log.info("applying migration %s", name)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _split_sql(sql):
                        conn.execute(statement)
                    broken = conn.execute("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"migration {name} breaks foreign keys: {broken[:5]}")
                    conn.execute(f"PRAGMA user_version={version}")
                    conn.execute("COMMIT")
                except Exception:
                    conn.execute("ROLLBACK")
                    raise
        finally:
            conn.execute("PRAGMA foreign_keys=ON")

    async def close(self) -> None:
        async with self._write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
                lock.release(self.path)
            self._wal.close()
        await self._readers.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[WriteTxn]:
        async with self._write_lock:
            conn = self._writer
            if conn is None:
                raise Unavailable("the store is closed")
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield SqliteTxn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            # fsync happens here; run it off the loop so requests keep arriving and the
            # next group forms while this one hits the disk. A cancellation must not
            # release the writer while COMMIT is still running on the connection.
            commit = asyncio.ensure_future(asyncio.to_thread(conn.execute, "COMMIT"))
            try:
                await asyncio.shield(commit)
            except asyncio.CancelledError:
                await asyncio.wait([commit])
                raise
            except sqlite3.Error:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            await self._wal.after_commit()

    # -- events --------------------------------------------------------------------
    async def last_seq(self) -> int:
        row = await self._readers.fetchone("SELECT max(seq) FROM events")
        return int(row[0] or 0) if row else 0

    async def get_event(self, seq: int) -> StoredEvent | None:
        row = await self._readers.fetchone(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE seq = ?", (seq,)
        )
        return row_to_event(row) if row else None

    async def find_event(self, source: str, id: str) -> StoredEvent | None:
        row = await self._readers.fetchone(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE source = ? AND id = ?", (source, id)
        )
        return row_to_event(row) if row else None

    async def find_by_id(self, id: str) -> list[StoredEvent]:
        rows = await self._readers.fetchall(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE id = ? ORDER BY seq", (id,)
        )
        return [row_to_event(r) for r in rows]

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
        if descending:
            if after > 0:
                clauses.append("seq < ?")
                params.append(after)
        else:
            clauses.append("seq > ?")
            params.append(after)
        for column, value in (("type", type), ("source", source), ("subject", subject),
                              ("correlationid", correlationid),
                              ("causationid", causationid), ("id", id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            clauses.append("recvtime >= ?")
            params.append(since)
        if until is not None:
            clauses.append("recvtime < ?")
            params.append(until)
        where = " AND ".join(clauses) or "1"
        order = "DESC" if descending else "ASC"
        rows = await self._readers.fetchall(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE {where} ORDER BY seq {order} LIMIT ?",
            (*params, limit),
        )
        return [row_to_event(r) for r in rows]

    async def count_events(self) -> int:
        row = await self._readers.fetchone("SELECT count(*) FROM events")
        return int(row[0]) if row else 0

    async def targets_of(self, seq: int) -> list[TargetRecord]:
        rows = await self._readers.fetchall(
            "SELECT seq, route, target, detail FROM event_targets WHERE seq = ?"
            " ORDER BY route, target", (seq,)
        )
        return [TargetRecord(r[0], r[1], r[2], orjson.loads(r[3]) if r[3] else {})
                for r in rows]

    # -- configuration objects ---------------------------------------------------------
    async def list_config(self, kind: str | None = None) -> list[ConfigObject]:
        sql = "SELECT kind, name, spec, origin, version, updated_at FROM config_objects"
        params: tuple[Any, ...] = ()
        if kind is not None:
            sql += " WHERE kind = ?"
            params = (kind,)
        rows = await self._readers.fetchall(sql + " ORDER BY kind, name", params)
        return [row_to_config(r) for r in rows]

    async def get_config(self, kind: str, name: str) -> ConfigObject | None:
        row = await self._readers.fetchone(
            "SELECT kind, name, spec, origin, version, updated_at FROM config_objects"
            " WHERE kind = ? AND name = ?", (kind, name)
        )
        return row_to_config(row) if row else None

    async def config_version(self) -> int:
        row = await self._readers.fetchone(
            "SELECT value FROM counters WHERE name = 'config_version'"
        )
        return int(row[0]) if row else 0


def _split_sql(script: str) -> Sequence[str]:
    """Statements of a migration file (they contain no semicolons inside literals)."""
    lines = [ln for ln in script.splitlines() if not ln.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
