"""The store contract, run against every backend (a real SQLite file here)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from broker.bus import canonical, digest_of
from broker.errors import Conflict
from broker.store.base import Store
from broker.store.migrations import migrations
from broker.store.sqlite import SqliteStore
from tests.conftest import make_event

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "postgresql":
        from broker.store.postgres.connection import PgOptions
        from broker.store.postgres.store import PgStore
        from tests.pg_support import PG_URL, create_schema_async, drop_schema_async, with_schema

        schema = await create_schema_async()
        backend: Store = PgStore(PgOptions(with_schema(PG_URL, schema), pool_size=2))
    else:
        backend = SqliteStore(tmp_path / "store.db", durability="normal")
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()
        if request.param == "postgresql":
            await drop_schema_async(schema)


def item(event: dict) -> tuple[dict, bytes, bytes]:
    raw = canonical(event)
    return event, raw, digest_of(raw)


async def test_append_assigns_increasing_seqs_and_dedupes(store: Store):
    first, second = make_event(id="a"), make_event(id="b")
    async with store.transaction() as tx:
        r1 = await tx.append_event(*item(first)[:2], "t", item(first)[2])
        r2 = await tx.append_event(*item(second)[:2], "t", item(second)[2])
        again = await tx.append_event(*item(first)[:2], "t", item(first)[2])
    assert r2.seq > r1.seq and not r1.duplicate
    assert again.duplicate and again.seq == r1.seq and not again.conflict
    assert await store.last_seq() == r2.seq
    stored = await store.get_event(r1.seq)
    assert stored is not None and stored.event == first


async def test_repeat_with_other_content_is_flagged_as_conflict(store: Store):
    event = make_event(id="c", data={"v": 1})
    async with store.transaction() as tx:
        await tx.append_event(*item(event)[:2], "t", item(event)[2])
    changed = {**event, "data": {"v": 2}}
    async with store.transaction() as tx:
        result = await tx.append_event(*item(changed)[:2], "t", item(changed)[2])
    assert result.duplicate and result.conflict


async def test_batch_append_handles_repeats_inside_and_across_batches(store: Store):
    old = make_event(id="old")
    async with store.transaction() as tx:
        (first,) = await tx.append_events([item(old)], "t")
    batch = [make_event(id="n1"), old, make_event(id="n2"), make_event(id="n1")]
    async with store.transaction() as tx:
        results = await tx.append_events([item(e) for e in batch], "t")
    assert [r.duplicate for r in results] == [False, True, False, True]
    assert results[1].seq == first.seq
    assert results[3].seq == results[0].seq
    assert results[2].seq > results[0].seq > first.seq


async def test_a_failed_transaction_leaves_nothing(store: Store):
    with pytest.raises(Conflict):
        async with store.transaction() as tx:
            await tx.append_event(*item(make_event(id="x"))[:2], "t",
                                  item(make_event(id="x"))[2])
            raise Conflict("abandon")
    assert await store.count_events() == 0


async def test_savepoint_undoes_only_its_own_work(store: Store):
    keep, drop = make_event(id="keep"), make_event(id="drop")
    async with store.transaction() as tx:
        await tx.append_event(*item(keep)[:2], "t", item(keep)[2])
        with pytest.raises(Conflict):
            async with tx.savepoint():
                await tx.append_event(*item(drop)[:2], "t", item(drop)[2])
                raise Conflict("undo")
    assert await store.find_event("tests/suite", "keep") is not None
    assert await store.find_event("tests/suite", "drop") is None


async def test_read_events_pages_and_filters(store: Store):
    events = [make_event(id=f"e{i}", type="a" if i % 2 else "b", correlationid="c1",
                         causationid="root" if i == 3 else None) for i in range(6)]
    async with store.transaction() as tx:
        await tx.append_events([item({k: v for k, v in e.items() if v is not None})
                                for e in events], "2026-11-25T10:00:00.000000Z")
    page = await store.read_events(after=0, limit=4)
    assert [e.id for e in page] == ["e0", "e1", "e2", "e3"]
    assert [e.id for e in await store.read_events(after=page[-1].seq)] == ["e4", "e5"]
    assert [e.id for e in await store.read_events(type="a")] == ["e1", "e3", "e5"]
    assert [e.id for e in await store.read_events(causationid="root")] == ["e3"]
    assert len(await store.read_events(correlationid="c1")) == 6
    newest = await store.read_events(limit=2, descending=True)
    assert [e.id for e in newest] == ["e5", "e4"]


async def test_routes_and_targets_are_recorded(store: Store):
    from broker.store.records import TargetRecord

    async with store.transaction() as tx:
        (r,) = await tx.append_events([item(make_event())], "t")
        await tx.set_routes_many([(r.seq, ["db-alerts"])])
        await tx.add_targets([TargetRecord(r.seq, "db-alerts", "queue:db", {"item": 1})])
    stored = await store.get_event(r.seq)
    assert stored is not None and stored.routes == ("db-alerts",)
    (target,) = await store.targets_of(r.seq)
    assert (target.target, target.detail) == ("queue:db", {"item": 1})


async def test_config_objects_round_trip_and_version_grows(store: Store):
    v0 = await store.config_version()
    async with store.transaction() as tx:
        await tx.put_config("routes", "r1", {"name": "r1", "targets": ["queue:a"]}, "api",
                            "2026-11-25T10:00:00.000000Z")
    obj = await store.get_config("routes", "r1")
    assert obj is not None and obj.origin == "api" and obj.spec["targets"] == ["queue:a"]
    assert await store.config_version() > v0
    async with store.transaction() as tx:
        assert await tx.delete_config("routes", "r1")
        assert not await tx.delete_config("routes", "r1")
    assert await store.list_config("routes") == []


async def test_a_data_directory_from_the_first_schema_opens_with_the_current_one(
    tmp_path: Path,
):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    version, _, sql = migrations("sqlite")[0]
    conn.executescript(sql)
    conn.execute(f"PRAGMA user_version={version}")
    event = make_event(id="from-v1")
    raw = orjson.dumps(event)
    conn.execute(
        "INSERT INTO events (source, id, type, recvtime, digest, body) VALUES (?,?,?,?,?,?)",
        (event["source"], event["id"], event["type"], "t", digest_of(raw), raw))
    conn.close()
    store = SqliteStore(path, durability="normal")
    await store.open()
    try:
        stored = await store.find_event("tests/suite", "from-v1")
        assert stored is not None and stored.event == event
        async with store.transaction() as tx:
            result = await tx.append_event(*item(event)[:2], "t", item(event)[2])
        assert result.duplicate
    finally:
        await store.close()
    (current,) = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()
    assert current == migrations("sqlite")[-1][0]
