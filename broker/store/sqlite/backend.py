"""SqliteBackend: the embedded backend behind the store contract."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from broker.errors import Unavailable
from broker.store.base import Backend
from broker.store.keys import key64
from broker.store.migrations import migrations
from broker.store.sqlite import lock
from broker.store.sqlite.catalog import SqliteCatalog
from broker.store.sqlite.checkpoint import DEFAULT_CHECKPOINT_BYTES, Checkpointer
from broker.store.sqlite.config import SqliteConfig
from broker.store.sqlite.connections import ReaderPool, WriterConnection, open_writer
from broker.store.sqlite.delivery import SqliteDeliveries
from broker.store.sqlite.events import SqliteEventLog
from broker.store.sqlite.jobs import SqliteJobs
from broker.store.sqlite.maintenance import (
    DEFAULT_WAL_MAX_BYTES,
    SqliteMaintenance,
    WalGuard,
    refuse_newer_schema,
)
from broker.store.sqlite.periods import FILING_MIGRATIONS, file_existing
from broker.store.sqlite.retention import SqliteRetention
from broker.store.sqlite.todos import SqliteSilences, SqliteTodos
from broker.store.sqlite.tokens import SqliteTokens
from broker.store.sqlite.transaction import SqliteTransaction
from broker.store.transaction import Transaction
from broker.store.window import DedupeWindow

log = logging.getLogger(__name__)


class SqliteBackend(SqliteMaintenance, Backend):
    """The embedded store: one SQLite file in WAL mode, one writer connection (the bus's
    group commit) and a small pool of readers."""

    def __init__(self, path: str | Path, durability: str = "full",
                 wal_max_bytes: int = DEFAULT_WAL_MAX_BYTES,
                 window: DedupeWindow | None = None,
                 wal_checkpoint_bytes: int = DEFAULT_CHECKPOINT_BYTES) -> None:
        self.path = Path(path)
        self.durability = durability
        self._wal = WalGuard(self.path, wal_max_bytes)
        self._checkpoints = Checkpointer(self.path, wal_checkpoint_bytes, wal_max_bytes,
                                        durability)
        self._writer: WriterConnection | None = None
        self._write_lock = asyncio.Lock()
        self._readers = ReaderPool(self.path)
        self._period_s = (window or DedupeWindow()).period_s
        self.events = SqliteEventLog(self._readers, window)
        self.config = SqliteConfig(self._readers)
        self.todos = SqliteTodos(self._readers)
        self.silences = SqliteSilences(self._readers)
        self.deliveries = SqliteDeliveries(self._readers)
        self.jobs = SqliteJobs(self._readers)
        self.catalog = SqliteCatalog(self._readers)
        self.retention = SqliteRetention(self._readers)
        self.tokens = SqliteTokens(self._readers)

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire(self.path)
        try:
            self._writer = open_writer(self.path, self.durability)
            self._wal.attach(self._writer)
            self._migrate(self._writer)
            # A statement that changes several rows keeps the pages it changes in a
            # statement journal, which spills to a temporary file past 64 KiB: a group's
            # identity keys land on a page each, so nearly every commit created, wrote
            # and deleted a file (its keys cost 3-4x what they cost in memory). In
            # memory it is bounded by what one statement of a group changes. Set after
            # the migrations, whose sorts and temporary tables may be as large as the log.
            self._writer.execute("PRAGMA temp_store=MEMORY")
            self._checkpoints.attach(self._writer)
            await self._readers.open()
        except BaseException:
            self._checkpoints.close()
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            await self._readers.close()
            self._checkpoints.release()
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
        conn.create_function("opsbus_key64", -1, _sql_key64, deterministic=True)
        try:
            for version, name, sql in pending:
                log.info("applying migration %s", name)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _split_sql(sql):
                        conn.execute(statement)
                    if version in FILING_MIGRATIONS:  # keys of the stored log, by period
                        file_existing(conn, self._period_s)
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
            await asyncio.to_thread(self._checkpoints.close)  # may wait for a pass to end
            if self._writer is not None:
                self._writer.close()
                self._writer = None
                lock.release(self.path)
            self._wal.close()
        await self._readers.close()
        self._checkpoints.release()  # after every connection to the file is closed

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._write_lock:
            conn = self._writer
            if conn is None:
                raise Unavailable("the store is closed")
            conn.execute("BEGIN IMMEDIATE")
            tx = SqliteTransaction(conn)
            try:
                yield tx
                # Every write runs here, on the loop; only COMMIT, which fsyncs, goes to
                # a thread. Each statement run there would end in a wait for the GIL
                # while the loop parses requests (up to the switch interval), which cost
                # more than the inserts' time on the loop: single, batched and todo
                # ingest and push delivery all went as fast or faster (bench/README.md).
                tx.flush()
                conn.run_held()
            except BaseException:
                conn.drop_held()
                conn.execute("ROLLBACK")
                raise
            # COMMIT runs off the loop, so requests keep arriving and the next group
            # forms meanwhile. The thread wakes this frame itself, through a future of the
            # loop's that it settles once done with the connection: the executor's own
            # future would reach it two turns of the loop later (its state copied over,
            # then through a shield), turns in which a busy loop parses requests while the
            # writer, and every caller waiting on the next group, waits. A cancellation
            # must not release the writer while the thread still runs on the connection.
            loop = asyncio.get_running_loop()
            done: asyncio.Future[None] = asyncio.Future(loop=loop)
            thread = loop.run_in_executor(None, _finish, tx, conn, loop, self._checkpoints,
                                          done)
            try:
                await done
            except asyncio.CancelledError:
                await _until_done(thread)
                raise
            except Exception:
                conn.drop_held()
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            await self._wal.after_commit()


def _finish(tx: SqliteTransaction, conn: WriterConnection, loop: asyncio.AbstractEventLoop,
            checkpoints: Checkpointer, done: asyncio.Future[None]) -> None:
    """The end of a write transaction, on a worker thread while the writer is held;
    settles `done` (on the loop) once the connection is free again."""
    try:
        conn.execute("COMMIT")
        if tx.committed is not None:
            # Queued before `done` is, so it runs on the loop before the awaiting
            # writer hears that the commit is done.
            loop.call_soon_threadsafe(tx.committed)
        checkpoints.after_commit(conn)  # readers are told already; the next group waits
    except BaseException as exc:
        loop.call_soon_threadsafe(_settle, done, exc)
        if not isinstance(exc, Exception):
            raise
    else:
        loop.call_soon_threadsafe(_settle, done, None)


async def _until_done(thread: asyncio.Future[None]) -> None:
    """Wait for the commit thread to be done with the writer connection, through any
    further cancellation: until it is, the connection is not the caller's to release
    (the caller raises its cancellation afterwards)."""
    while not thread.done():
        try:
            await asyncio.wait([thread])
        except asyncio.CancelledError:
            continue


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    """`done`'s outcome, unless its waiter was cancelled meanwhile."""
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


def _sql_key64(*parts: object) -> int | None:
    """`opsbus_key64(...)` in migrations: the writer's 64-bit key, NULL for NULL."""
    if any(p is None for p in parts):
        return None
    return key64(*(str(p) for p in parts))


def _split_sql(script: str) -> Sequence[str]:
    """Statements of a migration file. A trigger's body holds semicolons of its own, so
    pieces are joined until SQLite calls the statement complete (no literal in our
    migrations holds a semicolon)."""
    lines = [ln for ln in script.splitlines() if not ln.strip().startswith("--")]
    statements: list[str] = []
    pending = ""
    for piece in "\n".join(lines).split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending.strip().removesuffix(";"))
            pending = ""
    return statements
