"""PgBackend: the PostgreSQL backend behind the store contract, for several replicas."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from broker.bus.log import StoredEvent
from broker.clock import Clock, SystemClock
from broker.errors import Unavailable
from broker.store.base import Backend, Publish
from broker.store.base_maintenance import StorageStats
from broker.store.postgres import log as pglog
from broker.store.postgres.catalog import PgCatalog
from broker.store.postgres.config import PgConfig
from broker.store.postgres.connection import PgOptions, check_server, connect, create_pool
from broker.store.postgres.delivery import PgDeliveries, PgJobs
from broker.store.postgres.events import PgEventLog
from broker.store.postgres.listener import Listener
from broker.store.postgres.maintenance import PgMaintenance
from broker.store.postgres.migrate import migrate
from broker.store.postgres.retention import PgRetention
from broker.store.postgres.tail import LogTail
from broker.store.postgres.todos import PgSilences, PgTodos
from broker.store.postgres.tokens import PgTokens
from broker.store.postgres.transaction import PgTransaction
from broker.store.transaction import Transaction

if TYPE_CHECKING:
    import asyncpg

    from broker.store.postgres.connection import Conn

log = logging.getLogger(__name__)

HEAD_CHANNEL = "opsbus_head"
CONFIG_CHANNEL = "opsbus_config"
"""Channel names, suffixed with `.<schema>`: channels are per database, and each schema
is its own installation."""

# The counter row is every write transaction's first lock (docs/postgres.md, section 1):
# taken with BEGIN in one round trip, so no two write transactions of any replicas can
# ever wait for each other's row locks in a cycle.
BEGIN_ORDERED = ("BEGIN ISOLATION LEVEL READ COMMITTED;"
                 " SELECT 1 FROM log_head WHERE id = 1 FOR UPDATE")


class PgBackend(PgMaintenance, Backend):
    """The log, items, deliveries and configuration in one PostgreSQL database (or schema)
    shared by every replica."""

    def __init__(self, options: PgOptions, period_s: int = pglog.DEFAULT_PERIOD_S,
                 clock: Clock | None = None, window: int = pglog.DEFAULT_WINDOW) -> None:
        self.options = options
        self.period_s = period_s
        self.window = window
        self.clock = clock or SystemClock()
        """The broker's clock: the fallback polls and the listener's back-off wait on
        it (with `--test-clock`, they fire when the test moves time)."""
        self._pool: asyncpg.Pool | None = None
        self._write_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self.tail: LogTail | None = None
        self.schema = "public"
        self._stats = StorageStats()
        self.listener: Listener | None = None
        self.events = PgEventLog(self)
        self.config = PgConfig(self)
        self.todos = PgTodos(self)
        self.silences = PgSilences(self)
        self.deliveries = PgDeliveries(self)
        self.jobs = PgJobs(self)
        self.catalog = PgCatalog(self)
        self.retention = PgRetention(self)
        self.tokens = PgTokens(self)

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise Unavailable("the store is closed")
        return self._pool

    async def open(self) -> None:
        conn = await connect(self.options)
        try:
            await check_server(conn)
            await migrate(conn)
            await self.ensure_partitions(conn)
            self.schema = str(await conn.fetchval("SELECT current_schema()"))
        finally:
            await conn.close()
        self._pool = await create_pool(self.options)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        async with self._write_lock:
            if self._pool is not None:
                await self._pool.close()
                self._pool = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._write_lock:
            async with self.pool.acquire() as conn:
                await conn.execute(BEGIN_ORDERED)
                tx = PgTransaction(conn, self.period_s, self.window)
                try:
                    yield tx
                    await tx.flush()  # the writes repositories gathered, before COMMIT
                except BaseException:
                    await _rollback(conn)
                    raise
                # A cancellation must not hand the connection back mid-COMMIT.
                commit = asyncio.ensure_future(conn.execute("COMMIT"))
                try:
                    await asyncio.shield(commit)
                except asyncio.CancelledError:
                    await asyncio.wait([commit])
                    raise
                except Exception:
                    await _rollback(conn)
                    raise
                if tx.committed is not None:
                    tx.committed()

    def start_live(self, publish: Publish, head: int, on_config: Callable[[], None],
                   on_remote: Callable[[], None]) -> Publish:
        """Feed `publish` with every replica's commits in seq order (the live tail), call
        `on_remote` after events read from the table (other replicas' commits) and
        `on_config` when another replica changes the configuration. Returns what the
        writer hands its own committed batches to."""
        tail = self.tail = LogTail(self._read_range, publish, head, on_read=on_remote)
        seen_config = [-1]

        head_channel = f"{HEAD_CHANNEL}.{self.schema}"
        config_channel = f"{CONFIG_CHANNEL}.{self.schema}"

        def signal(channel: str, payload: str | None) -> None:
            if channel == head_channel:
                tail.signal(None if payload is None else int(payload))
            elif payload is None or int(payload) > seen_config[0]:
                on_config()

        async def poll_config() -> None:
            while True:
                await self.clock.sleep(self.options.poll_s)  # the fallback poll's period
                try:
                    version = await self.config.version()
                except Exception:
                    log.exception("could not read the configuration version")
                    continue
                if seen_config[0] >= 0 and version != seen_config[0]:
                    on_config()
                seen_config[0] = version

        self.listener = Listener(lambda: connect(self.options),
                                 (head_channel, config_channel), signal, clock=self.clock)
        self._tasks += [
            asyncio.create_task(self.listener.run(), name="pg-listener"),
            asyncio.create_task(tail.run(self.events.last_seq, self.options.poll_s,
                                         self.clock), name="pg-tail"),
            asyncio.create_task(poll_config(), name="pg-config-poll"),
        ]
        return tail.committed

    async def _read_range(self, after: int, upto: int, limit: int) -> list[StoredEvent]:
        return await pglog.read_range(self.pool, after, upto, limit)


async def _rollback(conn: Conn) -> None:
    if conn.is_closed():
        return
    try:
        await conn.execute("ROLLBACK")
    except Exception:  # the connection is broken: the pool replaces it
        log.warning("rollback failed; discarding the connection")
        conn.terminate()
