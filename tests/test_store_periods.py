"""SQLite's key tables by period (docs/storage.md): each period's keys in a table of its
own, catalogued with its seq range; lookups across periods; retention dropping a passed
period whole while the events it kept stay findable; the migration that files an
existing log's keys by recvtime."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from broker.bus import canonical, digest_of
from broker.bus.log import EventItem
from broker.store.keys import identity_key, link_key
from broker.store.migrations import migrations
from broker.store.sqlite import SqliteBackend
from broker.store.sqlite.events import JOIN_TABLES
from broker.store.sqlite.transaction import connection_of
from broker.store.window import DedupeWindow
from tests.conftest import make_event

DAYS = ["2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23"]


def at(day: str, time: str = "10:00:00") -> str:
    return f"{day}T{time}.000000Z"


def item(event: dict) -> EventItem:
    raw = canonical(event)
    return event, raw, digest_of(raw)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteBackend]:
    backend = SqliteBackend(tmp_path / "store.db", durability="normal")
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


async def append(store: SqliteBackend, recvtime: str, *events: dict) -> list[int]:
    async with store.transaction() as tx:
        results = await store.events.writes(tx).append_many([item(e) for e in events],
                                                             recvtime)
    return [r.seq for r in results]


def catalogue(path: Path) -> list[tuple[str, int, int | None]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT name, first_seq, last_seq FROM event_key_periods"
                            " ORDER BY first_seq").fetchall()
    finally:
        conn.close()


def key_tables(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
            " AND name LIKE 'event_keys_2%' ORDER BY name")]
    finally:
        conn.close()


async def test_each_period_files_its_keys_in_its_own_table(store: SqliteBackend):
    seqs = []
    for n, day in enumerate(DAYS[:3]):
        seqs += await append(store, at(day), *[
            make_event(id=f"d{n}-{i}", correlationid="incident-1") for i in range(3)])
    assert catalogue(store.path) == [("event_keys_20261120", 1, 3),
                                     ("event_keys_20261121", 4, 6),
                                     ("event_keys_20261122", 7, None)]
    conn = sqlite3.connect(store.path)
    (rows,) = conn.execute("SELECT count(*) FROM event_keys_20261121").fetchone()
    assert rows == 6  # identity and correlation of three events
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'events_idhash'"
                        ).fetchone() is None
    conn.close()
    linked = await store.events.read(correlationid="incident-1", limit=100)
    assert [e.seq for e in linked] == seqs
    newest = await store.events.read(correlationid="incident-1", descending=True, limit=2)
    assert [e.seq for e in newest] == seqs[:-3:-1]
    found = await store.events.find("tests/suite", "d0-1")
    assert found is not None and found.seq == 2


async def test_a_group_s_keys_go_in_with_their_statement_journal_in_memory(
        store: SqliteBackend):
    # 2,000 random keys land on hundreds of pages: the statement that files them keeps
    # far more than the 64 KiB past which SQLite spills a statement journal to a
    # temporary file, which every such commit would create and delete.
    events = [make_event(id=f"group-{n}") for n in range(2000)]
    async with store.transaction() as tx:
        (temp_store,) = connection_of(tx).execute("PRAGMA temp_store").fetchone()
        results = await store.events.writes(tx).append_many(
            [item(e) for e in events], at(DAYS[0]))
    assert temp_store == 2  # MEMORY
    assert [r.seq for r in results] == list(range(1, 2001))
    conn = sqlite3.connect(store.path)
    (filed,) = conn.execute("SELECT count(*) FROM event_keys_20261120").fetchone()
    conn.close()
    assert filed == 2000
    assert (await store.events.find("tests/suite", "group-1999")).seq == 2000


async def test_a_period_opened_by_a_rolled_back_unit_is_opened_again(store: SqliteBackend):
    await append(store, at(DAYS[0]), make_event(id="first"))
    async with store.transaction() as tx:
        writes = store.events.writes(tx)
        with pytest.raises(RuntimeError):
            async with tx.savepoint():
                await writes.append_many([item(make_event(id="undone"))], at(DAYS[1]))
                raise RuntimeError("the unit fails")
        [kept] = await writes.append_many([item(make_event(id="kept"))], at(DAYS[1]))
    assert catalogue(store.path) == [("event_keys_20261120", 1, 1),
                                     ("event_keys_20261121", kept.seq, None)]
    assert (await store.events.find("tests/suite", "kept")) is not None
    assert (await store.events.find("tests/suite", "undone")) is None


async def test_the_window_reaches_back_one_period_and_forever_reaches_all(tmp_path: Path):
    for window, repeat_is_duplicate in ((DedupeWindow(), False),
                                        (DedupeWindow(periods=0), True)):
        path = tmp_path / f"{window.periods}.db"
        store = SqliteBackend(path, durability="normal", window=window)
        await store.open()
        try:
            (first,) = await append(store, at(DAYS[0]), make_event(id="again"))
            await append(store, at(DAYS[1]), make_event(id="between"))
            async with store.transaction() as tx:
                [repeat] = await store.events.writes(tx).append_many(
                    [item(make_event(id="again"))], at(DAYS[3]))
            assert repeat.duplicate is repeat_is_duplicate
            assert (repeat.seq == first) is repeat_is_duplicate
        finally:
            await store.close()


async def test_a_batch_probes_every_period_of_a_forever_window(tmp_path: Path):
    """With more key tables than the probe joins one by one (each then looks the keys
    up with `IN`), a batch of many keys finds a repeat in every period, and repeats of
    its own, and stores the rest."""
    store = SqliteBackend(tmp_path / "store.db", durability="normal",
                          window=DedupeWindow(periods=0))
    await store.open()
    try:
        days = [f"2026-11-{day:02d}" for day in range(10, 10 + JOIN_TABLES + 2)]
        firsts = [(await append(store, at(day), make_event(id=f"old-{day}")))[0]
                  for day in days]
        assert len(catalogue(store.path)) == len(days)
        fresh = [make_event(id=f"new-{n}") for n in range(600)]
        batch = [*fresh[:300], *[make_event(id=f"old-{day}") for day in days],
                 *fresh[300:], fresh[599]]
        async with store.transaction() as tx:
            results = await store.events.writes(tx).append_many(
                [item(e) for e in batch], at("2026-11-30"))
        assert [(r.duplicate, r.seq) for r in results[300:300 + len(days)]] == [
            (True, seq) for seq in firsts]
        assert [r.seq for r in results[:300] + results[300 + len(days):-1]] == list(
            range(firsts[-1] + 1, firsts[-1] + 601))
        assert (results[-1].duplicate, results[-1].seq) == (True, results[-2].seq)
    finally:
        await store.close()


async def test_retention_drops_a_passed_period_and_keeps_the_keys_it_still_needs(
    store: SqliteBackend,
):
    old = await append(store, at(DAYS[0]), *[
        make_event(id=f"old-{i}", correlationid="incident-2") for i in range(4)])
    young = await append(store, at(DAYS[1]), make_event(id="young",
                                                         correlationid="incident-2"))
    async with store.transaction() as tx:
        await store.deliveries.writes(tx).add("hook", old[1], at(DAYS[1]))
    async with store.transaction() as tx:
        removal = await store.retention.writes(tx).remove(old, cut=old[-1])
    assert (removal.removed, removal.needed) == (3, 1)
    # The first day's table is gone whole; the current one stays.
    assert key_tables(store.path) == ["event_keys_20261121"]
    assert catalogue(store.path) == [("event_keys_20261121", young[0], None)]
    # The event retention kept is still found by identity, by link and by dedupe.
    linked = await store.events.read(correlationid="incident-2", limit=10)
    assert [e.seq for e in linked] == [old[1], young[0]]
    found = await store.events.find("tests/suite", "old-1")
    assert found is not None and found.seq == old[1]
    async with store.transaction() as tx:
        [repeat] = await store.events.writes(tx).append_many(
            [item(make_event(id="old-1", correlationid="incident-2"))], at(DAYS[1]))
    assert repeat.duplicate and repeat.seq == old[1]
    # Once nothing needs it, the kept event goes and its keys with it.
    conn = sqlite3.connect(store.path)
    conn.execute("UPDATE deliveries SET state = 'delivered'")
    conn.commit()
    conn.close()
    async with store.transaction() as tx:
        removal = await store.retention.writes(tx).remove([old[1]])
    assert removal.removed == 1
    conn = sqlite3.connect(store.path)
    assert conn.execute("SELECT count(*) FROM event_keys_kept").fetchone() == (0,)
    conn.close()
    assert (await store.events.find("tests/suite", "old-1")) is None


def previous_schema(path: Path) -> sqlite3.Connection:
    """A connection to a new store with the previous release's schema (one `events`
    table with hashed key indexes), before this release's migrations."""
    conn = sqlite3.connect(path, isolation_level=None)
    for version, name, sql in migrations("sqlite"):
        if name.endswith("_key_periods.sql"):  # the first of this release
            break
        conn.create_function("opsbus_key64", -1, lambda *p: None)  # no rows yet
        conn.executescript(sql)
        conn.execute(f"PRAGMA user_version={version}")
    return conn


def previous_release(path: Path, recvtimes: list[str]) -> list[dict]:
    """A store built by the previous release's migrations (one `events` table with
    hashed key indexes) holding one event per recvtime, in that order."""
    conn = previous_schema(path)
    events = []
    for n, recvtime in enumerate(recvtimes):
        event = make_event(id=f"e{n}", correlationid=f"inc-{n % 5}")
        raw = orjson.dumps(event)
        conn.execute(
            "INSERT INTO events (source, id, type, recvtime, correlationid, digest, body,"
            " idhash, corrkey) VALUES (?,?,?,?,?,?,?,?,?)",
            (event["source"], event["id"], event["type"], recvtime, event["correlationid"],
             digest_of(raw), raw, identity_key(event["source"], event["id"]),
             link_key(event["correlationid"])))
        events.append(event)
    conn.close()
    return events


async def test_keys_filed_where_recvtime_fell_back_stay_before_their_tables_end(
    tmp_path: Path,
):
    """A log whose recvtimes once went back (a clock step, a bulk load with a fixed
    stamp) is filed so that every key of a table was received before its end: the dedupe
    window finds each of them from any later moment."""
    times = [at(DAYS[n // 10 % 3], f"{n % 10:02d}:00:00") for n in range(30)]
    times[12], times[25] = at(DAYS[3]), at(DAYS[0])  # one ahead, one behind
    path = tmp_path / "previous.db"
    events = previous_release(path, times)
    store = SqliteBackend(path, durability="normal")
    await store.open()
    try:
        conn = sqlite3.connect(path)
        for name, ends_at in conn.execute("SELECT name, ends_at FROM event_key_periods"):
            (latest,) = conn.execute(f"SELECT max(e.recvtime) FROM {name} k JOIN events e"
                                     " ON e.seq = k.seq").fetchone()
            assert latest < ends_at, name
        (keys,) = conn.execute("SELECT count(*) FROM event_keys").fetchone()
        conn.close()
        assert keys == 2 * len(events)
        async with store.transaction() as tx:
            results = await store.events.writes(tx).append_many(
                [item(e) for e in events], at(DAYS[3], "12:00:00"))
        # The window (the 23rd and the 22nd) reaches exactly the events received then.
        assert [r.seq for r in results if r.duplicate] == [n + 1 for n, t in enumerate(times)
                                                           if t >= at(DAYS[2], "00:00:00")]
    finally:
        await store.close()


async def test_a_store_of_the_previous_release_files_its_keys_by_recvtime(tmp_path: Path):
    """Built by the previous release's migrations (one `events` table with hashed key
    indexes), then opened: each event's keys land in its recvtime's period, the old
    indexes are gone, and lookups, dedupe and the checks all hold."""
    path = tmp_path / "previous.db"
    conn = previous_schema(path)
    stored = []
    for n, day in enumerate(DAYS):
        for i in range(50):
            event = make_event(id=f"e{n}-{i}", correlationid=f"inc-{i % 5}",
                               causationid=f"cause-{n}")
            raw = orjson.dumps(event)
            stored.append((event, at(day, f"{i // 10:02d}:00:00")))
            conn.execute(
                "INSERT INTO events (source, id, type, recvtime, correlationid, causationid,"
                " digest, body, idhash, corrkey, causekey) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (event["source"], event["id"], event["type"], stored[-1][1],
                 event["correlationid"], event["causationid"], digest_of(raw), raw,
                 identity_key(event["source"], event["id"]),
                 link_key(event["correlationid"]), link_key(event["causationid"])))
    conn.close()
    store = SqliteBackend(path, durability="normal")
    await store.open()
    try:
        assert catalogue(path) == [("event_keys_20261120", 1, 50),
                                   ("event_keys_20261121", 51, 100),
                                   ("event_keys_20261122", 101, 150),
                                   ("event_keys_20261123", 151, None)]
        conn = sqlite3.connect(path)
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert not names & {"events_idhash", "events_corrkey", "events_causekey"}
        (keys,) = conn.execute("SELECT count(*) FROM event_keys").fetchone()
        assert keys == 3 * len(stored)
        conn.close()
        linked = await store.events.read(correlationid="inc-3", limit=1000)
        assert [e.seq for e in linked] == [s for s in range(1, 201) if (s - 1) % 5 == 3]
        caused = await store.events.read(causationid="cause-2", limit=1000)
        assert [e.seq for e in caused] == list(range(101, 151))
        found = await store.events.find("tests/suite", "e1-7")
        assert found is not None and found.seq == 58
        async with store.transaction() as tx:
            [again, fresh] = await store.events.writes(tx).append_many(
                [item(stored[-1][0]), item(make_event(id="new"))], at(DAYS[3], "12:00:00"))
        assert again.duplicate and again.seq == 200 and fresh.seq == 201
        async with store.transaction() as tx:
            [later] = await store.events.writes(tx).append_many(
                [item(make_event(id="next day"))], at("2026-11-24"))
        assert catalogue(path)[-2:] == [("event_keys_20261123", 151, 201),
                                        ("event_keys_20261124", later.seq, None)]
    finally:
        await store.close()
    report = await SqliteBackend(path).check()
    assert report.ok, report.findings
