"""SQLite connections: the synchronous writer and a small pool of aiosqlite readers."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL", "off": "OFF"}


def open_writer(path: Path, durability: str) -> sqlite3.Connection:
    """The one writing connection. Statements run on the event loop thread (they only
    touch the page cache); COMMIT, which fsyncs, runs in a worker thread."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # Takes effect only on a new file (before its first table): retention then hands
    # freed pages back to the file system in small steps (`incremental_vacuum`). A
    # store created by an older release reuses its free pages instead.
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={SYNCHRONOUS[durability]}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA cache_size=-65536")
    # Checkpoints in the commit path would stall ingest; a larger WAL is cheaper.
    conn.execute("PRAGMA wal_autocheckpoint=4000")
    return conn


class ReaderPool:
    """A few aiosqlite connections; each query is its own short read transaction, so a
    long-lived stream never pins a WAL snapshot."""

    def __init__(self, path: Path, size: int = 3) -> None:
        self._path = path
        self._size = size
        self._idle: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all: list[aiosqlite.Connection] = []

    async def open(self) -> None:
        for _ in range(self._size):
            conn = await aiosqlite.connect(self._path, isolation_level=None)
            await conn.execute("PRAGMA busy_timeout=10000")
            await conn.execute("PRAGMA query_only=ON")
            self._all.append(conn)
            self._idle.put_nowait(conn)

    async def close(self) -> None:
        for conn in self._all:
            await conn.close()
        self._all.clear()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[aiosqlite.Connection]:
        conn = await self._idle.get()
        try:
            yield conn
        finally:
            self._idle.put_nowait(conn)

    async def fetchall(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        async with self.connection() as conn:
            async with conn.execute(sql, params) as cursor:
                return list(await cursor.fetchall())

    async def fetchone(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Row | None:
        async with self.connection() as conn:
            async with conn.execute(sql, params) as cursor:
                return await cursor.fetchone()
