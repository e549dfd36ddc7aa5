"""SQLite's commit off the event loop: a writer cancelled while its COMMIT runs on a
worker thread keeps the connection until that thread is done with it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from broker.bus import canonical
from broker.store.sqlite import SqliteBackend
from broker.store.sqlite.transaction import SqliteTransaction
from tests.conftest import make_event

T0 = "2026-11-25T10:00:00.000000Z"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteBackend]:
    backend = SqliteBackend(tmp_path / "store.db", durability="normal")
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


async def test_a_writer_cancelled_twice_during_its_commit_keeps_the_connection(
        store: SqliteBackend, monkeypatch: pytest.MonkeyPatch):
    """Cancelled twice while the commit thread still runs, the writer lets go of the
    connection only once the thread has committed; the next transaction then starts
    cleanly and sees the committed event."""
    flushing, release = threading.Event(), threading.Event()
    flush = SqliteTransaction.flush

    def slow(self: SqliteTransaction) -> None:
        flushing.set()
        release.wait(30)
        flush(self)

    monkeypatch.setattr(SqliteTransaction, "flush", slow)
    first = make_event(subject="first")

    async def write() -> None:
        async with store.transaction() as tx:
            await store.events.writes(tx).append(first, canonical(first), T0, None)

    task = asyncio.create_task(write())
    try:
        assert await asyncio.to_thread(flushing.wait, 30)
        for _ in range(2):
            task.cancel()
            for _ in range(20):  # turns enough for a writer that did not wait to let go
                await asyncio.sleep(0)
            assert not task.done(), "the writer let go while the commit thread used it"
    finally:
        release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    monkeypatch.setattr(SqliteTransaction, "flush", flush)
    second = make_event(subject="second")
    async with store.transaction() as tx:
        await store.events.writes(tx).append(second, canonical(second), T0, None)
    assert [e.event for e in await store.events.read(limit=10)] == [first, second]
