"""seq on PostgreSQL is commit-ordered across concurrent writers: no reader ever sees
seq N+1 and later N appear, and the log has no gaps (docs/postgres.md, section 1)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest

from broker.store.postgres import log as pglog
from broker.store.postgres.connection import PgOptions, connect
from broker.store.postgres.migrate import migrate
from tests.pg_support import pg_url  # noqa: F401  (fixture)
from tests.pg_writer import new_event

WRITERS = 4
BATCHES = 150
READERS = 3
RECVTIME = "2026-11-25T10:00:00Z"


class OrderViolation(AssertionError):
    """A reader saw a seq beyond a gap: an event below it could still appear."""


def check_page(cursor: int, seqs: list[int]) -> int:
    """The reader's rule: a page after `cursor` starts at cursor + 1 and has no holes.
    Returns the new cursor."""
    expected = list(range(cursor + 1, cursor + 1 + len(seqs)))
    if seqs != expected:
        raise OrderViolation(f"after {cursor} the reader saw {seqs[:10]}..., a gap: an"
                             " event below the highest seq could still commit")
    return seqs[-1] if seqs else cursor


@pytest.fixture
async def log_url(pg_url: str) -> AsyncIterator[str]:  # noqa: F811
    conn = await connect(PgOptions(pg_url))
    await migrate(conn)
    # As the store does at start and ahead of each period: no DDL on the append path
    # (creating a partition locks the whole log against readers until commit).
    await pglog.ensure_partition(conn, RECVTIME)
    await conn.close()
    yield pg_url


async def test_concurrent_writers_and_pollers_never_see_a_gap(log_url: str) -> None:
    """Writer processes append batches as fast as they can while pollers read
    `seq > cursor`; every page every poller sees continues its cursor."""
    writers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.pg_writer", log_url, f"w{i}", str(BATCHES), str(i),
            stdout=asyncio.subprocess.PIPE,
        )
        for i in range(WRITERS)
    ]
    done = asyncio.Event()
    final: list[int] = []

    async def poll(reader: int) -> int:
        conn = await asyncpg.connect(log_url)
        cursor, pages = 0, 0
        try:
            while True:
                finished = done.is_set()
                rows = await conn.fetch(
                    "SELECT seq FROM events WHERE seq > $1 ORDER BY seq LIMIT 200", cursor)
                cursor = check_page(cursor, [r["seq"] for r in rows])
                pages += bool(rows)
                if finished and cursor == final[0]:
                    return pages
                if finished and not rows:
                    raise AssertionError(f"reader {reader} stopped at {cursor}, head"
                                         f" {final[0]}")
        finally:
            await conn.close()

    readers = [asyncio.create_task(poll(i)) for i in range(READERS)]
    outputs = []
    for proc in writers:
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        outputs.append(out)
    head_conn = await asyncpg.connect(log_url)
    final.append(await pglog.committed_head(head_conn))
    done.set()
    pages = await asyncio.gather(*readers)

    acknowledged = {}
    for out in outputs:
        lines = out.decode().splitlines()
        assert len(lines) == BATCHES
        for line in lines:
            batch = orjson.loads(line)
            seqs = [seq for _, seq in batch]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # one batch, one run
            acknowledged.update({seq: event_id for event_id, seq in batch})
    stored = await head_conn.fetch("SELECT seq, source, id FROM events ORDER BY seq")
    await head_conn.close()
    assert [r["seq"] for r in stored] == list(range(1, final[0] + 1))  # no gaps, no repeats
    assert {r["seq"]: r["id"] for r in stored} == acknowledged  # every acknowledged event
    assert all(p > 1 for p in pages)  # the pollers really raced the writers


async def test_a_later_append_waits_for_the_earlier_commit(log_url: str) -> None:
    """Deterministically: B appends while A's append is uncommitted; B waits on the log's
    lock, so a reader sees neither, then A's seq, then B's — never B's alone."""
    a, b, reader = [await connect(PgOptions(log_url)) for _ in range(3)]
    try:
        tx_a = a.transaction()
        await tx_a.start()
        [first] = await pglog.append(a, [new_event("a", 1)], RECVTIME)
        b_pid = b.get_server_pid()

        async def append_b() -> int:
            async with b.transaction():
                [result] = await pglog.append(b, [new_event("b", 1)], RECVTIME)
            return result.seq

        b_task = asyncio.create_task(append_b())
        await wait_until_blocked(reader, b_pid)
        assert await pglog.read_after(reader, 0, 10) == []
        await tx_a.commit()
        second = await b_task
        assert (first.seq, second) == (1, 2)
        assert [e.seq for e in await pglog.read_after(reader, 0, 10)] == [1, 2]
    finally:
        for conn in (a, b, reader):
            await conn.close()


async def test_the_checker_catches_a_plain_sequence(log_url: str) -> None:
    """The control: with a plain bigserial, B's later value commits first and a reader
    sees 2 without 1 — the violation the checker above exists to catch."""
    a, b = [await asyncpg.connect(log_url) for _ in range(2)]
    try:
        await a.execute("CREATE TABLE naive (seq bigserial PRIMARY KEY)")
        tx_a = a.transaction()
        await tx_a.start()
        await a.execute("INSERT INTO naive DEFAULT VALUES")
        await b.execute("INSERT INTO naive DEFAULT VALUES")
        seen = [r["seq"] for r in await b.fetch("SELECT seq FROM naive ORDER BY seq")]
        with pytest.raises(OrderViolation):
            check_page(0, seen)
        await tx_a.rollback()
    finally:
        await a.close()
        await b.close()


async def wait_until_blocked(conn: asyncpg.Connection, pid: int) -> None:
    """Until backend `pid` waits for a lock (its state, read from the server)."""
    for _ in range(2000):
        waiting = await conn.fetchval(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid)
        if waiting:
            return
        await asyncio.sleep(0.005)  # polling the server's view of the wait, not a delay
    raise AssertionError(f"backend {pid} never waited for the log's lock")
