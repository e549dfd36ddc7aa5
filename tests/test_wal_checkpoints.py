"""The commit off the event loop: a cancelled writer keeps the connection until its
commit thread is done with it. Checkpoints off the commit: the log is copied back beside
the writer, restarts, and stays bounded when the copy cannot keep up."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from broker.bus import canonical, digest_of
from broker.store.sqlite import SqliteBackend
from broker.store.sqlite.checkpoint import TAIL_FRAMES, Checkpointer, WalIndex
from broker.store.sqlite.connections import WriterConnection
from tests.broker_process import BrokerProcess
from tests.conftest import BATCH, make_event

CHECKPOINT = 256 * 1024  # 63 frames of 4 KiB pages: restart at 126, bound at 252
T0 = "2026-11-25T10:00:00.000000Z"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteBackend]:
    store = SqliteBackend(tmp_path / "store.db", durability="full",
                          wal_checkpoint_bytes=CHECKPOINT)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def commit_events(store: SqliteBackend, count: int) -> None:
    items = []
    for _ in range(count):
        raw = orjson.dumps(make_event(data={"pad": "x" * 1000}))
        items.append((orjson.loads(raw), raw, digest_of(raw)))
    async with store.transaction() as tx:
        await store.events.writes(tx).append_many(items, "t")


def checkpointer(store: SqliteBackend) -> Checkpointer:
    return store._checkpoints


def index_of(store: SqliteBackend) -> WalIndex:
    """The store's own view of the log's index (another would have to stay open as
    long as the store: closing a descriptor drops the process's locks on the file)."""
    index = store._checkpoints._index
    assert index is not None
    return index


def hold_background(ck: Checkpointer) -> tuple[threading.Event, threading.Event]:
    """Hold the background copy before its first pass: (asked for, let go)."""
    asked, resume = threading.Event(), threading.Event()
    catch_up = ck._catch_up

    def held() -> None:
        asked.set()
        resume.wait()
        catch_up()

    ck._catch_up = held  # type: ignore[method-assign]
    return asked, resume


async def test_the_log_is_copied_beside_the_writer_and_restarts(store: SqliteBackend):
    ck = checkpointer(store)
    index = ck._index
    assert index is not None
    largest, restarts, previous = 0, 0, 0
    for _ in range(150):
        await commit_events(store, 10)  # ~4 frames a commit
        frames, _ = index.frames()
        restarts += frames < previous
        largest, previous = max(largest, frames), frames
        ck.wait_idle()  # the copy keeps up: the committing thread only adds the tails
    stats = store.storage_stats()
    copied = stats.frames_copied_background + stats.frames_copied_commit
    print(f"\nlargest log {largest} frames (restart at {ck.restart_frames}, bound at"
          f" {ck.bound_frames}); {restarts} restarts; copied {copied} frames,"
          f" {stats.frames_copied_commit} of them by the committing thread")
    assert restarts >= 2
    assert largest < ck.bound_frames
    # The committing thread copies only what is left once the background caught up.
    assert stats.frames_copied_commit * 5 < stats.frames_copied_background
    assert store.path.with_name("store.db-wal").stat().st_size <= ck.bound_frames * 4120


async def test_no_commit_copies_the_log_itself(tmp_path: Path):
    """With the background copy held back, commits go on past the point where SQLite's
    own checkpoint would have run inside one of them (4,000 pages): none copies a page."""
    store = SqliteBackend(tmp_path / "store.db", durability="full")  # default sizes
    await store.open()
    ck = checkpointer(store)
    asked, resume = hold_background(ck)
    index = index_of(store)
    try:
        frames, copied = index.frames()
        while frames < 4500 and copied == 0:
            await commit_events(store, 100)
            frames, copied = index.frames()
        assert copied == 0, f"a COMMIT checkpointed at {frames} frames"
        assert frames < ck.restart_frames and asked.is_set()
        resume.set()
        ck.wait_idle()
        assert index.frames() == (frames, frames)
        assert store.storage_stats().frames_copied_background == frames
    finally:
        resume.set()
        await store.close()


async def test_the_committing_thread_copies_only_the_tail_before_a_restart(
        store: SqliteBackend):
    ck = checkpointer(store)
    passed, resume = threading.Event(), threading.Event()
    copy = ck._copy

    def pass_then_hold(conn: sqlite3.Connection, background: bool) -> bool:
        done = copy(conn, background)
        index = ck._index
        assert index is not None
        if background and index.frames()[0] >= ck.restart_frames and not resume.is_set():
            passed.set()
            resume.wait()
        return done

    ck._copy = pass_then_hold  # type: ignore[method-assign]
    index = index_of(store)
    try:
        for _ in range(2000):  # commits beside the background's passes
            await commit_events(store, 1)
            if passed.is_set():
                break
        assert passed.is_set(), "the log reached its restart size"
        await commit_events(store, 1)  # lands after the pass: part of the tail
        resume.set()
        ck.wait_idle()
        frames = index.frames()[0]
        assert ck.writer_frames == 0
        await commit_events(store, 1)  # the tail is copied after this COMMIT ...
        tail = ck.writer_frames
        await commit_events(store, 1)  # ... so this transaction restarts the log
        assert index.frames()[0] < frames
    finally:
        resume.set()
    print(f"\nrestart at {frames} frames after a tail of {tail} copied on commit")
    assert 0 < tail <= 2 * TAIL_FRAMES


async def test_a_copy_that_cannot_keep_up_leaves_the_log_bounded(store: SqliteBackend):
    ck = checkpointer(store)
    stalled, resume = hold_background(ck)  # a copy slower than the writer, at its extreme
    index = index_of(store)
    try:
        largest, commit_frames, restarts, previous = 0, 0, 0, 0
        for _ in range(300):
            await commit_events(store, 10)
            frames, _ = index.frames()
            if frames > previous:
                commit_frames = max(commit_frames, frames - previous)
            restarts += frames < previous
            largest, previous = max(largest, frames), frames
        assert stalled.is_set(), "the background copy was asked for"
    finally:
        resume.set()
    stats = store.storage_stats()
    print(f"\nbackground stalled: largest log {largest} frames (bound {ck.bound_frames}),"
          f" {restarts} restarts, {stats.frames_copied_commit} frames copied on commit")
    assert largest <= ck.bound_frames + commit_frames
    assert restarts >= 2
    assert stats.frames_copied_background == 0 and stats.frames_copied_commit > 0


async def test_the_copy_never_reaches_past_a_readers_snapshot(store: SqliteBackend):
    """A reader keeps its snapshot while the log is copied and restarts are held off;
    after it ends, the log restarts again."""
    await commit_events(store, 1)
    reader = sqlite3.connect(store.path, isolation_level=None)
    reader.execute("BEGIN")
    (seen,) = reader.execute("SELECT count(*) FROM events").fetchone()
    index = index_of(store)
    try:
        for _ in range(150):
            await commit_events(store, 10)
            checkpointer(store).wait_idle()
        assert reader.execute("SELECT count(*) FROM events").fetchone() == (seen,)
        pinned, _ = index.frames()
        assert pinned > checkpointer(store).bound_frames  # no restart under the reader
        reader.execute("COMMIT")
        for _ in range(3):
            await commit_events(store, 10)
            checkpointer(store).wait_idle()
        assert index.frames()[0] < pinned
    finally:
        reader.close()


async def test_another_process_opening_the_database_leaves_the_broker_undisturbed(
        tmp_path: Path, http: aiohttp.ClientSession):
    """An operator's `sqlite3` shell or a script reading the file while the broker
    writes: the broker keeps its locks on the log's index while it reads the index
    itself, so the other process does not take itself for the only user and rebuild
    the index under the broker's commits (the broker died of SIGBUS when it did)."""
    proc = BrokerProcess(tmp_path / "data").start()
    db = proc.data_dir / "opsbus.db"
    published = 0
    stop = asyncio.Event()

    async def publish() -> None:
        nonlocal published
        while not stop.is_set():
            batch = [make_event(data={"pad": "x" * 1000}) for _ in range(50)]
            async with http.post(proc.url + "/v1/events", data=orjson.dumps(batch),
                                 headers=BATCH) as resp:
                assert resp.status == 200, await resp.text()
            published += len(batch)

    def read_only_pages() -> int:
        conn = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            return int(conn.execute("PRAGMA page_count").fetchone()[0])
        finally:
            conn.close()

    try:
        publisher = asyncio.create_task(publish())
        for _ in range(40):  # each open waits on its thread while the broker commits
            assert await asyncio.to_thread(read_only_pages) > 0
        stop.set()
        await publisher
    finally:
        proc.stop()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == published
    finally:
        conn.close()


async def test_a_writer_cancelled_twice_during_its_commit_keeps_the_connection(
        store: SqliteBackend, monkeypatch: pytest.MonkeyPatch):
    """Cancelled twice while the commit thread still runs, the writer lets go of the
    connection only once the thread has committed; the next transaction then starts
    cleanly and sees the committed event."""
    committing, release = threading.Event(), threading.Event()
    execute = WriterConnection.execute

    def slow(self: WriterConnection, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        if sql == "COMMIT":  # on the commit thread: the loop goes on meanwhile
            committing.set()
            release.wait(30)
        return execute(self, sql, parameters)

    monkeypatch.setattr(WriterConnection, "execute", slow)
    first = make_event(subject="first")

    async def write() -> None:
        async with store.transaction() as tx:
            await store.events.writes(tx).append(first, canonical(first), T0, None)

    task = asyncio.create_task(write())
    try:
        assert await asyncio.to_thread(committing.wait, 30)
        for _ in range(2):
            task.cancel()
            for _ in range(20):  # turns enough for a writer that did not wait to let go
                await asyncio.sleep(0)
            assert not task.done(), "the writer let go while the commit thread used it"
    finally:
        release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    monkeypatch.setattr(WriterConnection, "execute", execute)
    second = make_event(subject="second")
    async with store.transaction() as tx:
        await store.events.writes(tx).append(second, canonical(second), T0, None)
    assert [e.event for e in await store.events.read(limit=10)] == [first, second]
