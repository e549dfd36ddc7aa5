"""SQLite connections: the synchronous writer and a small pool of aiosqlite readers."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import aiosqlite

SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL", "off": "OFF"}

# sqlite3 binds int, float and str directly but sends every other value (bytes and None
# too) through its adapter protocol, which, finding no adapter, looks `__adapt__` up on
# a type and formats an AttributeError only to clear it: ~1,900 instructions per value,
# six per stored event (digest, body and its absent links). Registered adapters that
# return the value as it is are found by one dict lookup instead; what is bound is the
# same (`bytes.__bytes__(b)` is `b` itself, `{}.get(None)` is None). `bytes.__bytes__`
# rather than `bytes`: calling the type looks `__bytes__` up and calls it (~770
# instructions more per value bound).
sqlite3.register_adapter(bytes, bytes.__bytes__)
sqlite3.register_adapter(type(None), cast("Callable[[None], None]", {}.get))


class WriterConnection(sqlite3.Connection):
    """The writer connection, able to hold inserts back (`later`) until its next
    statement or the transaction's end. A batch of appends that nothing else in the
    transaction reads is then inserted in a few multi-row statements, which later
    appends of the same transaction join and routing writes into in place. Any other
    statement runs the held ones first, so every statement sees what came before it:
    the held rows are an ordering detail, never visible as missing. The exceptions are
    spelled out: `beside` for a statement on tables no held statement writes, and
    savepoints, which keep what is held in its place (`savepoint`)."""

    held: list[tuple[str, list[tuple[Any, ...]]]]
    failed: BaseException | None
    """A held statement failed: whoever ran the statement that ran it saw the error,
    but the transaction lost writes, so every statement fails until it is rolled back
    (a caller that swallowed the error cannot commit the transaction without them)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held = []
        self.failed = None
        self._saved: list[list[tuple[str, list[tuple[Any, ...]], int]]] = []
        """Per open savepoint, what was held when it was taken (statement, rows, count)."""

    def later(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """`executemany(sql, rows)`, run before the next statement on this connection."""
        self.held.append((sql, rows))

    def run_held(self) -> None:
        """Run the held statements now (before anything that may read what they write)."""
        if self.failed is not None:
            raise sqlite3.OperationalError(f"held writes failed: {self.failed}")
        while self.held:
            sql, rows = self.held.pop(0)
            if not rows:
                # Held for rows that may have joined it, and none did. Even an empty
                # `executemany` lets go of the GIL (to prepare) and must take it back.
                continue
            try:
                super().executemany(sql, rows)
            except BaseException as exc:
                self.held.clear()
                self.failed = exc
                raise

    def holds(self, rows: list[tuple[Any, ...]]) -> bool:
        """True while `rows` (a list handed to `later`) wait to be inserted: until then
        the caller may still change them."""
        return any(held is rows for _, held in self.held)

    def beside(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        """`execute(sql)` leaving the held statements held: only for a statement that
        neither reads nor writes a table they write (an item of a todo queue, while the
        routed events' rows wait to be inserted)."""
        if self.failed is not None:
            self.run_held()  # raises: the transaction has lost writes
        return super().execute(sql, parameters)

    def drop_held(self) -> None:
        """Forget the held statements and their failure (before ROLLBACK)."""
        self.held.clear()
        self.failed = None
        self._saved.clear()

    # Savepoints leave held statements held: a step that only gathers (the todo
    # announcements before COMMIT) then does not force a batch's inserts to run early,
    # so the derived events it appends still join the batch's statements.
    # What was held when a savepoint was taken belongs before it; rolling back to it
    # holds exactly that again: statements held since are dropped (rows added since to
    # a held list included), and ones that ran since are held again, since the
    # rollback undid them.
    def savepoint(self, name: str) -> None:
        """SAVEPOINT `name`, with the held statements left held."""
        if self.failed is not None:
            self.run_held()  # raises: the transaction has lost writes
        super().execute(f"SAVEPOINT {name}")
        self._saved.append([(sql, rows, len(rows)) for sql, rows in self.held])

    def rollback_to(self, name: str) -> None:
        """ROLLBACK TO `name`: what ran or was held since the savepoint is undone."""
        super().execute(f"ROLLBACK TO {name}")
        saved = self._saved[-1]
        for _, rows, count in saved:
            del rows[count:]
        self.held = [(sql, rows) for sql, rows, _ in saved]
        self.failed = None

    def release(self, name: str) -> None:
        """RELEASE `name`: what is held now belongs to the enclosing scope."""
        super().execute(f"RELEASE {name}")
        self._saved.pop()

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        if self.held or self.failed is not None:
            self.run_held()
        return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        if self.held or self.failed is not None:
            self.run_held()
        return super().executemany(sql, parameters)


def insert_later(conn: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """Insert `rows` before the connection's next statement or COMMIT: held on the
    writer connection, at once on any other."""
    if isinstance(conn, WriterConnection):
        conn.later(sql, rows)
    else:
        conn.executemany(sql, rows)


def held_rows(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> bool:
    """True while `rows`, handed to `insert_later`, wait to be inserted."""
    return isinstance(conn, WriterConnection) and conn.holds(rows)


def beside_held(conn: sqlite3.Connection, sql: str, parameters: Any = ()) -> sqlite3.Cursor:
    """`conn.execute`, leaving held inserts held (`WriterConnection.beside`)."""
    if isinstance(conn, WriterConnection):
        return conn.beside(sql, parameters)
    return conn.execute(sql, parameters)


def open_writer(path: Path, durability: str) -> WriterConnection:
    """The one writing connection. Statements run on the event loop thread (they only
    touch the page cache); COMMIT, which fsyncs, runs in a worker thread."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                           factory=WriterConnection)
    # Takes effect only on a new file (before its first table): retention then hands
    # freed pages back to the file system in small steps (`incremental_vacuum`). A
    # store created by an older release reuses its free pages instead.
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={SYNCHRONOUS[durability]}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA cache_size=-65536")
    # SQLite's own checkpoints, in the commit, serve only the migrations at open: then
    # `Checkpointer` copies the log beside the writer.
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

    # One trip to the connection's thread per query (execute_fetchall): execute, fetch
    # and closing the cursor were three, each a wake-up of the event loop.
    async def fetchall(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        async with self.connection() as conn:
            return list(await conn.execute_fetchall(sql, params))

    async def fetchone(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Row | None:
        """The first row of a query that returns at most a few."""
        async with self.connection() as conn:
            rows = await conn.execute_fetchall(sql, params)
        for row in rows:
            return row
        return None
