"""The live tail feeds each replica's hub in seq order from its own commits, other
replicas' notifications and the poll (docs/postgres.md, sections 4 and 5)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from broker.bus.log import StoredEvent
from broker.store.postgres import log as pglog
from broker.store.postgres.connection import PgOptions, connect, create_pool
from broker.store.postgres.listener import Listener
from broker.store.postgres.migrate import migrate
from broker.store.postgres.tail import LogTail
from tests.pg_support import pg_url  # noqa: F401  (fixture)
from tests.pg_writer import new_event

RECVTIME = "2026-11-25T10:00:00Z"


@pytest.fixture
async def pool(pg_url: str) -> AsyncIterator[asyncpg.Pool]:  # noqa: F811
    conn = await connect(PgOptions(pg_url))
    await migrate(conn)
    await pglog.ensure_partition(conn, RECVTIME)
    await conn.close()
    pool = await create_pool(PgOptions(pg_url, pool_size=4))
    yield pool
    await pool.close()


class Replica:
    """A tail with a recorder hub and its own writer connection."""

    def __init__(self, pool: asyncpg.Pool, name: str) -> None:
        self.pool = pool
        self.name = name
        self.seen: list[int] = []
        self.arrived = asyncio.Condition()
        self.tail = LogTail(self.read_range, self.publish, 0)
        self.count = 0

    async def read_range(self, after: int, upto: int, limit: int) -> list[StoredEvent]:
        return await pglog.read_range(self.pool, after, upto, limit)

    def publish(self, batch: list[StoredEvent]) -> None:
        self.seen.extend(e.seq for e in batch)

        async def tell() -> None:
            async with self.arrived:
                self.arrived.notify_all()

        asyncio.get_running_loop().create_task(tell())

    async def append(self, n: int) -> list[StoredEvent]:
        items = []
        for _ in range(n):
            self.count += 1
            items.append(new_event(self.name, self.count))
        async with self.pool.acquire() as conn, conn.transaction():
            results = await pglog.append(conn, items, RECVTIME)
        return [StoredEvent(r.seq, RECVTIME, i.raw) for i, r in zip(items, results,
                                                                     strict=True)]

    async def until_seen(self, seq: int) -> None:
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: self.tail.head >= seq), 10)


async def test_own_contiguous_commits_are_published_from_memory(pool: asyncpg.Pool) -> None:
    replica = Replica(pool, "a")
    for _ in range(5):
        replica.tail.committed(await replica.append(3))
    assert replica.seen == list(range(1, 16))
    assert replica.tail.reads == 0


async def test_an_own_commit_after_a_gap_reads_the_gap_first(pool: asyncpg.Pool) -> None:
    a, b = Replica(pool, "a"), Replica(pool, "b")
    a.tail.committed(await a.append(2))
    await b.append(3)  # committed elsewhere; a has not heard of it yet
    a.tail.committed(await a.append(2))  # starts at 6: seqs 3..5 must come first
    assert a.seen == [1, 2]
    await a.tail.advance()
    assert a.seen == [1, 2, 3, 4, 5, 6, 7]
    assert a.tail.reads == 1


async def test_replicas_see_every_commit_in_order_through_notifications(
    pool: asyncpg.Pool, pg_url: str  # noqa: F811
) -> None:
    """Three replicas append concurrently; each learns of the others' commits through
    its LISTEN connection and the poll, and publishes 1..N exactly once, in order."""
    replicas = [Replica(pool, name) for name in "abc"]
    schema = await pool.fetchval("SELECT current_schema()")
    tasks = []
    listeners = []
    for replica in replicas:
        listener = Listener(lambda: connect(PgOptions(pg_url)), [f"opsbus_head.{schema}"],
                            lambda _ch, payload, r=replica: r.tail.signal(
                                None if payload is None else int(payload)))
        listeners.append(listener)
        tasks.append(asyncio.create_task(listener.run()))
        tasks.append(asyncio.create_task(
            replica.tail.run(lambda: pglog.committed_head(pool), poll_s=0.5)))
    try:
        for listener in listeners:
            await asyncio.wait_for(listener.connected.wait(), 10)

        async def write(replica: Replica) -> None:
            for n in range(1, 30):
                replica.tail.committed(await replica.append(n % 4 + 1))

        await asyncio.gather(*(write(r) for r in replicas))
        head = await pglog.committed_head(pool)
        for replica in replicas:
            await replica.until_seen(head)
            assert replica.seen == list(range(1, head + 1))
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
