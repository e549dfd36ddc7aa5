"""The store contract, run against every backend (a real SQLite file here): each feature's
repository as its interface's docstrings promise, written through the backend's
transaction and read back through its readers."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from broker.actions.model import JobState
from broker.bus import TargetRecord, canonical, digest_of
from broker.bus.log import EventItem
from broker.catalog.model import CatalogEntry, FieldStat
from broker.delivery import breaker
from broker.delivery.breaker import BreakerState
from broker.delivery.model import DeliveryState, Outcome, Settlement
from broker.errors import Conflict
from broker.filters.narrow import Narrow, like_pattern
from broker.store.base import Backend
from broker.store.migrations import migrations
from broker.store.sqlite import SqliteBackend
from broker.store.sqlite.events import CHUNK, pieces
from broker.todos.model import TodoHistoryEntry, TodoState
from tests.conftest import make_event
from tests.store_support import sqlite_store_before

BACKENDS = ["sqlite", "postgresql"]
T0 = "2026-11-25T10:00:00.000000Z"
T1 = "2026-11-25T10:00:30.000000Z"
T2 = "2026-11-25T10:01:00.000000Z"


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    backend: Backend
    if request.param == "postgresql":
        from broker.store.postgres.backend import PgBackend
        from broker.store.postgres.connection import PgOptions
        from tests.pg_support import PG_URL, create_schema_async, drop_schema_async, with_schema

        schema = await create_schema_async()
        backend = PgBackend(PgOptions(with_schema(PG_URL, schema), pool_size=2))
    else:
        backend = SqliteBackend(tmp_path / "store.db", durability="normal")
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()
        if request.param == "postgresql":
            await drop_schema_async(schema)


def item(event: dict) -> EventItem:
    raw = canonical(event)
    return event, raw, digest_of(raw)


async def append(store: Backend, *events: dict, recvtime: str = T0) -> list[int]:
    async with store.transaction() as tx:
        results = await store.events.writes(tx).append_many([item(e) for e in events], recvtime)
    return [r.seq for r in results]


# -- the event log ------------------------------------------------------------------------
async def test_append_assigns_increasing_seqs_and_dedupes(store: Backend):
    first, second = make_event(id="a"), make_event(id="b")
    async with store.transaction() as tx:
        log = store.events.writes(tx)
        r1 = await log.append(*item(first)[:2], "t", item(first)[2])
        r2 = await log.append(*item(second)[:2], "t", item(second)[2])
        again = await log.append(*item(first)[:2], "t", item(first)[2])
    assert r2.seq > r1.seq and not r1.duplicate
    assert again.duplicate and again.seq == r1.seq and not again.conflict
    assert await store.events.last_seq() == r2.seq
    assert await store.events.first_seq() == r1.seq
    stored = await store.events.get(r1.seq)
    assert stored is not None and stored.event == first and stored.root == 0


async def test_a_derived_event_remembers_its_root(store: Backend):
    (root,) = await append(store, make_event(id="root"))
    derived = make_event(id="child")
    async with store.transaction() as tx:
        result = await store.events.writes(tx).append(*item(derived)[:2], "t",
                                                      item(derived)[2], root)
    stored = await store.events.get(result.seq)
    assert stored is not None and stored.root == root and stored.lineage_root == root


async def test_derived_events_appended_together_each_remember_their_root(store: Backend):
    def child(id: str, cause: str) -> dict:
        return make_event(id=id, causationid=cause, correlationid=cause, hopcount=1)

    async with store.transaction() as tx:
        log = store.events.writes(tx)
        roots = [r.seq for r in await log.append_many(
            [item(make_event(id="r1")), item(make_event(id="r2"))], T0)]
        # Beside the roots of the same transaction, a repeat inside the call included.
        same = await log.append_many([item(child("c1", "r1")), item(child("c2", "r2")),
                                      item(child("c1", "r1"))], T0, [roots[0], roots[1],
                                                                     roots[0]])
    # And in a transaction of their own.
    async with store.transaction() as tx:
        later = await store.events.writes(tx).append_many(
            [item(child("c3", "r2")), item(child("c4", "r1"))], T0, [roots[1], roots[0]])
    assert [r.duplicate for r in same] == [False, False, True] and same[2].seq == same[0].seq
    assert not any(r.duplicate for r in later)
    for result, root in zip([*same[:2], *later], [roots[0], roots[1], roots[1], roots[0]],
                            strict=True):
        stored = await store.events.get(result.seq)
        assert stored is not None and stored.root == root and stored.lineage_root == root
    assert [e.id for e in await store.events.read(0, correlationid="r1")] == ["c1", "c4"]
    assert [e.id for e in await store.events.read(0, causationid="r2")] == ["c2", "c3"]


async def test_root_use_adds_up_across_transactions(store: Backend):
    (root,) = await append(store, make_event())
    async with store.transaction() as tx:
        log = store.events.writes(tx)
        assert (await log.root_use(root)).descendants == 0
        await log.add_root_use([(root, 3, False)])
    async with store.transaction() as tx:
        log = store.events.writes(tx)
        await log.add_root_use([(root, 2, True)])
        await log.add_root_use([(root, 1, False)])
        use = await log.root_use(root)
    assert (use.descendants, use.noticed) == (6, True)


async def test_repeat_with_other_content_is_flagged_as_conflict(store: Backend):
    event = make_event(id="c", data={"v": 1})
    await append(store, event)
    changed = {**event, "data": {"v": 2}}
    async with store.transaction() as tx:
        result = await store.events.writes(tx).append(*item(changed)[:2], "t",
                                                      item(changed)[2])
    assert result.duplicate and result.conflict


async def test_a_repeat_appended_without_a_digest_is_told_by_its_content(store: Backend):
    """The writer hands events over without a digest: the store tells a duplicate from a
    conflict by the content, also against a row stored with a digest."""
    with_digest, without = make_event(id="d1", data={"v": 1}), make_event(id="d2")
    await append(store, with_digest)
    changed = {**with_digest, "data": {"v": 2}}
    async with store.transaction() as tx:
        writes = store.events.writes(tx)
        [stored] = await writes.append_many([(without, canonical(without), None)], T0)
        assert not stored.duplicate
        again = await writes.append(without, canonical(without), T0, None)
        results = await writes.append_many(
            [(with_digest, canonical(with_digest), None), (changed, canonical(changed), None),
             (without, canonical(without), None)], T0)
    assert (again.seq, again.duplicate, again.conflict) == (stored.seq, True, False)
    assert [(r.duplicate, r.conflict) for r in results] == [
        (True, False), (True, True), (True, False)]
    async with store.transaction() as tx:
        later = await store.events.writes(tx).append_many(
            [item(without), (changed, canonical(changed), None)], T1)
    assert [(r.seq, r.duplicate, r.conflict) for r in later] == [
        (stored.seq, True, False), (results[0].seq, True, True)]


async def test_batch_append_handles_repeats_inside_and_across_batches(store: Backend):
    old = make_event(id="old")
    (first,) = await append(store, old)
    batch = [make_event(id="n1"), old, make_event(id="n2"), make_event(id="n1")]
    async with store.transaction() as tx:
        results = await store.events.writes(tx).append_many([item(e) for e in batch], "t")
    assert [r.duplicate for r in results] == [False, True, False, True]
    assert results[1].seq == first
    assert results[3].seq == results[0].seq
    assert results[2].seq > results[0].seq > first


async def test_a_failed_transaction_leaves_nothing(store: Backend):
    with pytest.raises(Conflict):
        async with store.transaction() as tx:
            await store.events.writes(tx).append_many([item(make_event(id="x"))], "t")
            raise Conflict("abandon")
    assert await store.events.count() == 0
    assert await store.events.last_seq() == 0


async def test_the_committed_hook_runs_once_commit_returned_before_the_block_is_left(
        store: Backend):
    # The writer hands the live fan-out to it: readers must hear of a commit only once
    # it is durable, and as soon as the loop can run it, not after the writer resumes.
    calls: list[str] = []
    async with store.transaction() as tx:
        await store.events.writes(tx).append_many([item(make_event(id="c"))], T0)
        tx.committed = lambda: calls.append("committed")
    assert calls == ["committed"]

    with pytest.raises(Conflict):
        async with store.transaction() as tx:
            tx.committed = lambda: calls.append("failed")
            await store.events.writes(tx).append_many([item(make_event(id="d"))], T0)
            raise Conflict("abandon")
    assert calls == ["committed"]
    assert await store.events.count() == 1


async def test_savepoint_undoes_only_its_own_work(store: Backend):
    keep, drop = make_event(id="keep"), make_event(id="drop")
    async with store.transaction() as tx:
        log = store.events.writes(tx)
        await log.append_many([item(keep)], "t")
        with pytest.raises(Conflict):
            async with tx.savepoint():
                await log.append_many([item(drop)], "t")
                raise Conflict("undo")
    assert await store.events.find("tests/suite", "keep") is not None
    assert await store.events.find("tests/suite", "drop") is None


async def test_reads_page_and_filter(store: Backend):
    events = [make_event(id=f"e{i}", type="a" if i % 2 else "b", correlationid="c1",
                         causationid="root" if i == 3 else None) for i in range(6)]
    await append(store, *({k: v for k, v in e.items() if v is not None} for e in events))
    page = await store.events.read(after=0, limit=4)
    assert [e.id for e in page] == ["e0", "e1", "e2", "e3"]
    assert [e.id for e in await store.events.read(after=page[-1].seq)] == ["e4", "e5"]
    assert [e.id for e in await store.events.read(type="a")] == ["e1", "e3", "e5"]
    assert [e.id for e in await store.events.read(causationid="root")] == ["e3"]
    assert len(await store.events.read(correlationid="c1")) == 6
    newest = await store.events.read(limit=2, descending=True)
    assert [e.id for e in newest] == ["e5", "e4"]


async def test_reads_narrowed_by_what_a_filter_requires(store: Backend):
    subjects = ["db-1", "db_1", "dbx1", "db%1", "DB-1", "web\\1", "web-1", "é-1"]
    events = [make_event(id=f"n{i}", type=f"t{i % 2}", subject=subject)
              for i, subject in enumerate(subjects)]
    await append(store, *events)

    async def subjects_of(*narrow: Narrow) -> set[str]:
        return {e.event["subject"] for e in await store.events.read(narrow=narrow)}

    # A narrowing may let more through (SQLite's LIKE folds ASCII case), never less.
    assert await subjects_of(Narrow("subject", exact=frozenset(["db-1", "web-1"]))) \
        == {"db-1", "web-1"}
    assert {"db-1", "db_1", "dbx1", "db%1"} <= await subjects_of(
        Narrow("subject", patterns=frozenset([like_pattern("db_1")]))) \
        <= {"db-1", "db_1", "dbx1", "db%1", "DB-1"}
    assert {"db_1"} <= await subjects_of(
        Narrow("subject", patterns=frozenset([like_pattern("db\\_1")]))) <= {"db_1"}
    assert {"db%1"} <= await subjects_of(
        Narrow("subject", patterns=frozenset([like_pattern("db\\%%")]))) <= {"db%1"}
    assert await subjects_of(
        Narrow("subject", patterns=frozenset([like_pattern("web\\1")]))) == {"web\\1"}
    assert await subjects_of(Narrow("subject", patterns=frozenset(["%-1"])),
                             Narrow("type", exact=frozenset(["t0"]))) == {"db-1", "DB-1", "web-1"}
    assert await subjects_of(Narrow("subject", patterns=frozenset(["é%"]))) == {"é-1"}


async def test_routes_and_targets_are_recorded(store: Backend):
    (seq,) = await append(store, make_event())
    async with store.transaction() as tx:
        log = store.events.writes(tx)
        await log.set_routes([(seq, ["db-alerts"], [])])
        await log.add_targets([TargetRecord(seq, "db-alerts", "queue:db", {"item": 1})])
    stored = await store.events.get(seq)
    assert stored is not None and stored.routes == ("db-alerts",)
    (target,) = await store.events.targets_of(seq)
    assert (target.target, target.detail) == ("queue:db", {"item": 1})


async def test_target_hits_are_kept_with_their_event(store: Backend):
    """Hits written with the routes (into rows a batch still holds, and into rows
    already written), then more added by a later hand-over, in this transaction and the
    next: each event lists its own, by route then target, each (route, target) once
    (the first hit of a pair), with an empty detail as {}."""
    def hits(seq: int) -> list[TargetRecord]:
        return [TargetRecord(seq, "r2", "queue:b", {"todo": seq}),
                TargetRecord(seq, "r1", "subscription:s", {"delivery": 1}),
                TargetRecord(seq, "r2", "queue:b", {"todo": 0}),
                TargetRecord(seq, "r1", "queue:a")]

    events = [make_event(subject=f"s{n}") for n in range(70)]
    events[64]["correlationid"] = "c"  # roots after it are not chunked (on SQLite)
    async with store.transaction() as tx:
        log = store.events.writes(tx)
        seqs = [r.seq for r in await log.append_many([item(e) for e in events], T0)]
        # seqs[0] in a chunk of root rows, seqs[65] after them (on SQLite).
        await log.set_routes([(seqs[0], ["r2", "r1"], hits(seqs[0])),
                              (seqs[65], ["r2", "r1"], hits(seqs[65])),
                              (seqs[1], ["r3"], [])])
        await log.add_targets([TargetRecord(seqs[65], "r1", "queue:a", {"again": True}),
                               TargetRecord(seqs[65], "dead", "queue:z", {"todo": 9})])
        await log.root_use(seqs[0])  # a statement: on SQLite the held rows run first
        late = (await log.append(*item(make_event(subject="late"))[:2], T0, None)).seq
        await log.set_routes([(late, ["r2", "r1"], hits(late))])
        await log.add_targets([TargetRecord(late, "dead", "queue:z", {"todo": 7})])
    async with store.transaction() as tx:
        await store.events.writes(tx).add_targets([
            TargetRecord(late, "dead", "queue:z", {"todo": 8}),
            TargetRecord(late, "dead", "later", {"todo": 8}),
            TargetRecord(seqs[2], "dead", "queue:z")])

    def listed(targets: list[TargetRecord]) -> list[tuple[int, str, str, dict]]:
        return [(t.seq, t.route, t.target, t.detail) for t in targets]

    def routed(seq: int) -> list[tuple[int, str, str, dict]]:
        return [(seq, "r1", "queue:a", {}), (seq, "r1", "subscription:s", {"delivery": 1}),
                (seq, "r2", "queue:b", {"todo": seq})]

    assert listed(await store.events.targets_of(seqs[0])) == routed(seqs[0])
    assert listed(await store.events.targets_of(seqs[65])) == [
        (seqs[65], "dead", "queue:z", {"todo": 9}), *routed(seqs[65])]
    assert listed(await store.events.targets_of(late)) == [
        (late, "dead", "later", {"todo": 8}), (late, "dead", "queue:z", {"todo": 7}),
        *routed(late)]
    assert listed(await store.events.targets_of(seqs[2])) == [(seqs[2], "dead", "queue:z", {})]
    assert await store.events.targets_of(seqs[1]) == []
    assert await store.events.targets_of(seqs[3]) == []
    stored = await store.events.get(seqs[1])
    assert stored is not None and stored.routes == ("r3",)


async def test_appends_after_a_batch_in_one_transaction(store: Backend):
    """Single appends after a batch in the same transaction (on SQLite they join the
    batch's rows while those wait for COMMIT): seqs ascend, a repeat of a batch event is
    its duplicate, every row gets its routes, and a savepoint rolled back drops what was
    appended inside it and nothing before it."""
    first = [make_event(subject=f"b{n}") for n in range(3)]
    async with store.transaction() as tx:
        log = store.events.writes(tx)
        batch = await log.append_many([item(e) for e in first], T0)
        again = await log.append(*item(first[1])[:2], T0, item(first[1])[2])
        one = await log.append(*item(make_event(subject="one"))[:2], T0,
                               item(make_event(subject="one"))[2])
        with pytest.raises(RuntimeError):
            async with tx.savepoint():
                lost = make_event(subject="lost")
                await log.append(*item(lost)[:2], T0, item(lost)[2])
                await log.append_many([item(make_event(subject="lost")) for _ in range(2)], T0)
                raise RuntimeError("undo the step")
        retry = await log.append(*item(lost)[:2], T0, item(lost)[2])
        repeat = await log.append_many([item(first[0]), item(make_event(subject="last"))], T0)
        seqs = [r.seq for r in batch] + [one.seq, retry.seq, repeat[1].seq]
        await log.set_routes([(seq, [f"r{n}"], []) for n, seq in enumerate(seqs)])
    assert again.duplicate and again.seq == batch[1].seq and not again.conflict
    assert not retry.duplicate, "an append rolled back leaves no trace to be a duplicate of"
    assert repeat[0].duplicate and repeat[0].seq == batch[0].seq
    assert seqs == sorted(seqs) and len(set(seqs)) == 6
    stored = await store.events.read(limit=100)
    assert [(e.seq, e.event["subject"], e.routes) for e in stored] == [
        (seq, subject, (f"r{n}",)) for n, (seq, subject) in
        enumerate(zip(seqs, ["b0", "b1", "b2", "one", "lost", "last"], strict=True))]
    following = await append(store, make_event())
    assert following[0] > seqs[-1]



async def test_a_large_batch_is_stored_as_its_events_one_by_one(store: Backend):
    """A batch of many events (on SQLite its roots go in many rows to a statement, their
    identity keys read back from the rows) stores what single appends would: seqs in
    order, each event found by identity and by link, repeats inside it, after it in the
    same transaction and in the next one told as duplicates, routes written into any
    of its rows, and no routes where none were set."""
    events = [make_event(subject=f"s{n}") for n in range(150)]
    events[140] = make_event(subject="s140", correlationid="corr-1")
    later = [make_event(subject="after"), events[70], make_event(subject="after"), events[3]]
    later[2]["id"] = later[0]["id"]
    async with store.transaction() as tx:
        log = store.events.writes(tx)
        results = await log.append_many([item(e) for e in events], T0)
        again = await log.append_many([item(e) for e in later], T0)
        one = await log.append(*item(events[5])[:2], T0, item(events[5])[2])
        routed = [results[0].seq, results[100].seq, results[140].seq, again[0].seq]
        await log.set_routes([(seq, [f"r{seq}"], []) for seq in routed])
    seqs = [r.seq for r in results]
    assert seqs == list(range(seqs[0], seqs[0] + 150)) and not any(r.duplicate for r in results)
    assert [(r.duplicate, r.seq) for r in again] == [
        (False, seqs[-1] + 1), (True, seqs[70]), (True, seqs[-1] + 1), (True, seqs[3])]
    assert one.duplicate and one.seq == seqs[5]
    stored = await store.events.read(limit=1000)
    assert [e.event for e in stored] == [*events, later[0]]
    assert {e.seq: e.routes for e in stored if e.routes} == {
        seq: (f"r{seq}",) for seq in routed}
    for n in (0, 63, 64, 127, 128, 140, 149):
        found = await store.events.find(events[n]["source"], events[n]["id"])
        assert found is not None and found.seq == seqs[n]
    (linked,) = await store.events.read(limit=10, correlationid="corr-1")
    assert linked.seq == seqs[140]
    async with store.transaction() as tx:
        repeats = await store.events.writes(tx).append_many(
            [item(events[n]) for n in (1, 100, 149)], T1)
    assert [(r.duplicate, r.seq) for r in repeats] == [
        (True, seqs[1]), (True, seqs[100]), (True, seqs[149])]


def test_sqlite_root_rows_go_in_whole_chunks_then_a_statement_per_power_of_two():
    # Each statement costs the commit thread a wait for the GIL: few of them, of few
    # distinct texts (each size is compiled and cached once).
    assert pieces(300) == [256, 32, 8, 4]
    assert pieces(CHUNK * 2 + 1) == [CHUNK, CHUNK, 1]
    assert pieces(0) == []
    for rows in range(1, 3 * CHUNK):
        counts = pieces(rows)
        assert sum(counts) == rows and counts == sorted(counts, reverse=True)
        assert len(counts) <= rows // CHUNK + CHUNK.bit_length() - 1
        assert all(c & (c - 1) == 0 and c <= CHUNK for c in counts)


async def test_a_batch_past_a_whole_chunk_is_found_and_routed_in_every_piece(store: Backend):
    """A batch of 300 roots (on SQLite one statement of 256 rows, then pieces of 32, 8
    and 4 rows): while its rows wait for COMMIT, a repeat of any of them is its duplicate
    and routes and target hits are written into any of them; the pieces' boundaries
    included."""
    events = [make_event(subject=f"p{n}") for n in range(300)]
    edges = [0, 255, 256, 287, 288, 295, 296, 299]
    async with store.transaction() as tx:
        log = store.events.writes(tx)
        results = await log.append_many([item(e) for e in events], T0)
        repeats = await log.append_many([item(events[n]) for n in edges], T0)
        one = await log.append(*item(events[290])[:2], T0, item(events[290])[2])
        await log.set_routes([(results[n].seq, [f"r{n}"],
                               [TargetRecord(results[n].seq, f"r{n}", "queue:a", {"n": n})])
                              for n in edges])
        await log.add_targets([TargetRecord(results[n].seq, "dead", "queue:z")
                               for n in edges[1:]])
    seqs = [r.seq for r in results]
    assert seqs == list(range(seqs[0], seqs[0] + 300))
    assert [(r.duplicate, r.seq) for r in repeats] == [(True, seqs[n]) for n in edges]
    assert one.duplicate and one.seq == seqs[290]
    stored = await store.events.read(limit=1000)
    assert [e.event for e in stored] == events
    assert {e.seq: e.routes for e in stored if e.routes} == {
        seqs[n]: (f"r{n}",) for n in edges}
    for n in edges:
        found = await store.events.find(events[n]["source"], events[n]["id"])
        assert found is not None and found.seq == seqs[n]
        assert [(t.route, t.target, t.detail) for t in await store.events.targets_of(seqs[n])
                ] == [*([("dead", "queue:z", {})] if n else []), (f"r{n}", "queue:a", {"n": n})]


async def test_a_batch_stores_each_events_bytes_exactly(store: Backend):
    """What a batch stores is each event's own bytes, whatever characters and escapes
    they hold: read back unchanged, and a repeat told from a conflict by them, while
    the rows wait for COMMIT and after it."""
    texts = ["é", "日本語", "\U0001f525 \u2028", 'quote " back \\ slash', "\u0000 \u001f tab\t"]
    events = [make_event(subject=f"u{n}", data={"text": text, "n": n})
              for n, text in enumerate(texts * 4)]
    changed = {**events[3], "data": {"text": texts[3], "n": -1}}
    async with store.transaction() as tx:
        log = store.events.writes(tx)
        results = await log.append_many([item(e) for e in events], T0)
        held = await log.append_many([item(events[3]), item(changed)], T0)
    assert [(r.duplicate, r.conflict) for r in held] == [(True, False), (True, True)]
    for event, result in zip(events, results, strict=True):
        stored = await store.events.get(result.seq)
        assert stored is not None and stored.raw == canonical(event)
    async with store.transaction() as tx:
        later = await store.events.writes(tx).append_many([item(events[1]), item(changed)],
                                                          T0)
    assert [(r.duplicate, r.conflict) for r in later] == [(True, False), (True, True)]


# -- configuration ------------------------------------------------------------------------
async def test_config_objects_round_trip_and_version_grows(store: Backend):
    v0 = await store.config.version()
    async with store.transaction() as tx:
        await store.config.writes(tx).put("routes", "r1",
                                          {"name": "r1", "targets": ["queue:a"]}, "api", T0)
    obj = await store.config.get("routes", "r1")
    assert obj is not None and obj.origin == "api" and obj.spec["targets"] == ["queue:a"]
    assert obj.updated_at == T0
    assert await store.config.version() > v0
    async with store.transaction() as tx:
        assert await store.config.writes(tx).delete("routes", "r1")
        assert not await store.config.writes(tx).delete("routes", "r1")
    assert await store.config.objects("routes") == []


async def test_the_applied_config_file_is_recorded_at_the_version_it_reached(
    store: Backend,
):
    assert await store.config.applied() is None
    async with store.transaction() as tx:
        writes = store.config.writes(tx)
        assert await writes.applied_file() is None
        await writes.put("routes", "r1", {"name": "r1", "targets": ["queue:a"]}, "file", T0)
        recorded = await writes.record_file("ab" * 32, "7", "host/127.0.0.1:1", T0)
        assert await writes.applied_file() == recorded
    assert recorded.version == await store.config.version()
    assert await store.config.applied() == recorded
    assert (recorded.digest, recorded.revision, recorded.applied_by) == \
        ("ab" * 32, "7", "host/127.0.0.1:1")


# -- todo items and silences --------------------------------------------------------------
async def test_one_active_item_per_key_claims_and_lapsed_leases(store: Backend):
    first, second = await append(store, make_event(), make_event())
    async with store.transaction() as tx:
        todos = store.todos.writes(tx)
        created = await todos.insert(queue="q", key="k", title="t", priority=None,
                                     seq=first, at=T0)
        assert (await todos.find_active("q", "k")) == created
        await todos.add_event(created.id, second)
        await todos.save(created.__class__(**{
            **created.to_dict(), "state": TodoState.CLAIMED, "owner": "ana",
            "lease_expires": T1, "count": 2, "event_seq": second}))
        await todos.add_history(created.id, TodoHistoryEntry(T0, "claimed", "ana"))
    assert await store.todos.event_seqs(created.id) == [first, second]
    assert [h.action for h in await store.todos.history(created.id)] == ["claimed"]
    assert not await store.todos.due(T0)
    assert await store.todos.due(T2)
    async with store.transaction() as tx:
        (lapsed,) = await store.todos.writes(tx).expired_claims(T2)
    assert lapsed.owner == "ana" and lapsed.count == 2
    (counts,) = await store.todos.queue_counts(T0)
    assert (counts.name, counts.claimed) == ("q", 1)
    (listed,) = await store.todos.page(now=T0, queue="q", view="claimed")
    assert listed.id == created.id


async def test_item_writes_in_one_transaction_read_back_and_undo_with_a_savepoint(
        store: Backend):
    from dataclasses import replace

    seqs = await append(store, *(make_event() for _ in range(5)))
    async with store.transaction() as tx:
        todos = store.todos.writes(tx)
        item = await todos.insert(queue="q", key="k", title="t0", priority=None,
                                  seq=seqs[0], at=T0)
        for n, seq in enumerate(seqs[1:3], start=2):  # two events attach
            found = await todos.find_active("q", "k")
            assert found is not None and found.count == n - 1
            item = replace(found, count=n, title=f"t{n}", event_seq=seq, updated_at=T1)
            await todos.add_event(item.id, seq)
            await todos.save(item)
            await todos.add_history(item.id, TodoHistoryEntry(T1, "updated", None))
        with pytest.raises(Conflict):
            async with tx.savepoint():  # a third is undone with its savepoint
                await todos.add_event(item.id, seqs[3])
                await todos.save(replace(item, count=9, event_seq=seqs[3]))
                await todos.add_history(item.id, TodoHistoryEntry(T1, "updated", None))
                raise Conflict("undo")
        assert await todos.find_active("q", "k") == item
        assert await todos.lock(item.id) == item
        # Resolved, the key is free again in the same transaction.
        await todos.save(replace(item, state=TodoState.RESOLVED, resolved_at=T2))
        assert await todos.find_active("q", "k") is None
        again = await todos.insert(queue="q", key="k", title="new", priority=None,
                                   seq=seqs[4], at=T2)
        assert await todos.find_active("q", "k") == again
    stored = await store.todos.get(item.id)
    assert stored is not None and stored.state is TodoState.RESOLVED
    assert (stored.count, stored.title, stored.event_seq) == (3, "t3", seqs[2])
    assert await store.todos.event_seqs(item.id) == seqs[:3]
    assert [h.action for h in await store.todos.history(item.id)] == ["updated"] * 2
    (counts,) = await store.todos.queue_counts(T2)
    assert (counts.open, counts.resolved) == (1, 1)


async def test_many_item_writes_in_one_transaction_keep_every_row_and_its_order(
        store: Backend):
    """300 events attached to 7 items in one transaction (on SQLite their event and
    history rows go many to a statement: 256, then 32, 8 and 4; the 7 saves 4, 2 and
    1): every row is written once, history in the order it was added, each item as its
    last save left it."""
    from dataclasses import replace

    seqs = await append(store, *(make_event() for _ in range(300)))
    async with store.transaction() as tx:
        todos = store.todos.writes(tx)
        items = [await todos.insert(queue="q", key=f"k{n}", title="t", priority=None,
                                    seq=seqs[n], at=T0) for n in range(7)]
        for n, seq in enumerate(seqs[7:], start=7):
            found = await todos.find_active("q", f"k{n % 7}")
            assert found is not None
            changed = replace(found, count=found.count + 1, title=f"t{n}", event_seq=seq,
                              last_seen=T1, updated_at=T2)
            await todos.add_event(changed.id, seq)
            await todos.save(changed)
            await todos.add_history(changed.id, TodoHistoryEntry(T1, "updated", None,
                                                                 note=str(n)))
    for k, created in enumerate(items):
        mine = [seq for n, seq in enumerate(seqs) if n % 7 == k]
        assert await store.todos.event_seqs(created.id) == mine
        assert [h.note for h in await store.todos.history(created.id)] == [
            str(n) for n in range(7, 300) if n % 7 == k]
        stored = await store.todos.get(created.id)
        assert stored is not None
        last = max(n for n in range(300) if n % 7 == k)
        assert (stored.count, stored.title, stored.event_seq, stored.last_seen,
                stored.updated_at, stored.state, stored.first_seen) == (
            len(mine), f"t{last}", seqs[last], T1, T2, TodoState.OPEN, T0)


async def test_silences_hold_until_they_end(store: Backend):
    async with store.transaction() as tx:
        silence = await store.silences.writes(tx).insert(
            matcher={"key": "db-*"}, queue=None, comment="", author="ana",
            created_at=T0, ends_at=T2)
        assert [s.id for s in await store.silences.writes(tx).active(T1)] == [silence.id]
    assert [s.id for s in await store.silences.recent(T1)] == [silence.id]
    async with store.transaction() as tx:
        ended = await store.silences.writes(tx).expire(silence.id, T1, "bob")
    assert ended is not None and ended.ends_at == T1 and ended.expired_by == "bob"
    assert await store.silences.recent(T2) == []
    assert len(await store.silences.recent(T2, include_expired=True)) == 1


# -- deliveries and action jobs -----------------------------------------------------------
async def test_a_lease_token_settles_once(store: Backend):
    (seq,) = await append(store, make_event())
    async with store.transaction() as tx:
        deliveries = store.deliveries.writes(tx)
        delivery_id = await deliveries.add("hook", seq, T0)
        assert await deliveries.add("hook", seq, T0) is None  # once per subscription
        batch = await deliveries.lease("hook", 10, T0, 30.0, max_attempts=3)
    (leased,) = batch.leased
    assert leased.delivery.id == delivery_id and leased.event.seq == seq
    assert leased.delivery.next_at == T1 and leased.delivery.state is DeliveryState.LEASED
    assert await store.deliveries.next_due("hook") == T1
    async with store.transaction() as tx:
        deliveries = store.deliveries.writes(tx)
        settled = await deliveries.settle(delivery_id, leased.lease, Outcome.DELIVERED, T0,
                                          status=200)
        again = await deliveries.settle(delivery_id, leased.lease, Outcome.DELIVERED, T0)
    assert settled is not None and settled.state is DeliveryState.DELIVERED and again is None
    assert (await store.deliveries.counts("hook"))["delivered"] == 1
    attempts = await store.deliveries.attempts([delivery_id])
    assert [a.outcome for a in attempts[delivery_id]] == [Outcome.DELIVERED]


async def test_a_claim_and_its_settlements_are_recorded_together(store: Backend):
    """A claim of several deliveries and the batch settling them: each returned lease is
    the one stored, and a settlement under a lease that is no longer current (settled
    before, or never the delivery's) changes nothing, its attempt row included."""
    seqs = await append(store, *(make_event() for _ in range(4)))
    async with store.transaction() as tx:
        deliveries = store.deliveries.writes(tx)
        ids = [await deliveries.add("hook", seq, T0) for seq in seqs]
        batch = await deliveries.lease("hook", 3, T0, 30.0, max_attempts=3)
    assert [d.delivery.id for d in batch.leased] == ids[:3]  # in seq order, up to the limit
    for leased in batch.leased:
        stored = await store.deliveries.get(leased.delivery.id)
        assert stored == leased.delivery and stored.attempts == 1
        assert leased.event.seq == stored.seq
    first, second, third = batch.leased
    async with store.transaction() as tx:
        deliveries = store.deliveries.writes(tx)
        await deliveries.settle(first.delivery.id, first.lease, Outcome.DELIVERED, T0)
        await deliveries.settle_many([
            Settlement(first.delivery.id, first.lease, Outcome.RETRY, T1, next_at=T2,
                       status=503, error="late"),  # already settled: a stale token
            Settlement(second.delivery.id, second.lease, Outcome.DELIVERED, T1, status=204,
                       latency_ms=1.5),
            Settlement(third.delivery.id, second.lease, Outcome.DELIVERED, T1),  # not its
            Settlement(ids[3], "none", Outcome.DELIVERED, T1),  # never leased
        ])
    states = {i: (await store.deliveries.get(i)) for i in ids}
    assert [(d.state, d.last_status, d.last_error) for d in states.values()] == [
        (DeliveryState.DELIVERED, None, None), (DeliveryState.DELIVERED, 204, None),
        (DeliveryState.LEASED, None, None), (DeliveryState.PENDING, None, None)]
    attempts = await store.deliveries.attempts(ids)
    assert [(a.outcome, a.status, a.latency_ms) for a in attempts[ids[1]]] == [
        (Outcome.DELIVERED, 204, 1.5)]
    assert [a.outcome for a in attempts[ids[0]]] == [Outcome.DELIVERED]
    assert [a.outcome for a in attempts[ids[2]]] == [Outcome.LEASED]
    assert attempts[ids[3]] == []
    async with store.transaction() as tx:
        await store.deliveries.writes(tx).settle_many([
            Settlement(third.delivery.id, third.lease, Outcome.RETRY, T1, next_at=T2,
                       status=503, error="HTTP 503")])
    retried = await store.deliveries.get(third.delivery.id)
    assert retried is not None and (retried.state, retried.next_at, retried.lease,
                                     retried.last_error) == (DeliveryState.PENDING, T2,
                                                             None, "HTTP 503")


async def test_a_large_claim_and_its_settlements_keep_every_row(store: Backend):
    """300 deliveries claimed in one transaction and settled in one batch (on SQLite many
    rows to a statement: 256, then 32, 8 and 4): each delivery and attempt row holds
    exactly its own lease, outcome, status, latency and error."""
    seqs = await append(store, *(make_event() for _ in range(300)))
    async with store.transaction() as tx:
        deliveries = store.deliveries.writes(tx)
        ids = [await deliveries.add("hook", seq, T0) for seq in seqs]
        batch = await deliveries.lease("hook", 300, T0, 30.0, max_attempts=3)
    assert [d.delivery.id for d in batch.leased] == ids
    assert len({d.lease for d in batch.leased}) == 300
    for leased in batch.leased:
        assert await store.deliveries.get(leased.delivery.id) == leased.delivery
    attempts = await store.deliveries.attempts(ids)
    assert [[(a.n, a.lease, a.outcome) for a in attempts[d.delivery.id]]
            for d in batch.leased] == [[(1, d.lease, Outcome.LEASED)] for d in batch.leased]
    async with store.transaction() as tx:
        await store.deliveries.writes(tx).settle_many([
            Settlement(d.delivery.id, d.lease, Outcome.DELIVERED, T1, status=200 + n % 7,
                       latency_ms=n / 4) if n % 3 else
            Settlement(d.delivery.id, d.lease, Outcome.RETRY, T1, next_at=T2, status=503,
                       latency_ms=n / 4, error=f"HTTP 503 ({n})")
            for n, d in enumerate(batch.leased)])
    attempts = await store.deliveries.attempts(ids)
    for n, delivery_id in enumerate(ids):
        stored = await store.deliveries.get(delivery_id)
        assert stored is not None
        (attempt,) = attempts[delivery_id]
        if n % 3:
            assert (stored.state, stored.next_at, stored.lease, stored.last_status,
                    stored.last_error, stored.updated_at) == (
                DeliveryState.DELIVERED, T1, None, 200 + n % 7, None, T1)
            assert (attempt.outcome, attempt.status, attempt.latency_ms, attempt.error) == (
                Outcome.DELIVERED, 200 + n % 7, n / 4, None)
        else:
            assert (stored.state, stored.next_at, stored.lease, stored.last_status,
                    stored.last_error) == (DeliveryState.PENDING, T2, None, 503,
                                           f"HTTP 503 ({n})")
            assert (attempt.outcome, attempt.status, attempt.latency_ms, attempt.error) == (
                Outcome.RETRY, 503, n / 4, f"HTTP 503 ({n})")


async def test_a_delivery_twice_in_one_batch_is_settled_by_the_first(store: Backend):
    """Settlements apply in order: a second one under the same lease finds it spent."""
    (seq,) = await append(store, make_event())
    async with store.transaction() as tx:
        deliveries = store.deliveries.writes(tx)
        delivery_id = await deliveries.add("hook", seq, T0)
        (leased,) = (await deliveries.lease("hook", 1, T0, 30.0, max_attempts=3)).leased
    async with store.transaction() as tx:
        await store.deliveries.writes(tx).settle_many([
            Settlement(delivery_id, leased.lease, Outcome.RETRY, T1, next_at=T2, status=503,
                       error="HTTP 503"),
            Settlement(delivery_id, leased.lease, Outcome.DELIVERED, T1, status=204)])
    stored = await store.deliveries.get(delivery_id)
    assert stored is not None
    assert (stored.state, stored.last_status) == (DeliveryState.PENDING, 503)
    (attempt,) = (await store.deliveries.attempts([delivery_id]))[delivery_id]
    assert (attempt.outcome, attempt.status) == (Outcome.RETRY, 503)


async def test_a_breaker_is_stored_and_read_back_by_every_reader(store: Backend):
    assert await store.deliveries.breakers() == {}
    tripped = breaker.after_failure(breaker.closed("hook", T0), "503", T0, threshold=1,
                                    cooldown_s=30)[0]
    async with store.transaction() as tx:
        deliveries = store.deliveries.writes(tx)
        assert await deliveries.breaker("hook") is None
        await deliveries.save_breaker(tripped)
        assert await deliveries.breaker("hook") == tripped
    assert await store.deliveries.breakers() == {"hook": tripped}
    assert tripped.state is BreakerState.OPEN and tripped.reopen_at == T1
    probe = breaker.start_probe(tripped, T1, 30.0)
    async with store.transaction() as tx:
        await store.deliveries.writes(tx).save_breaker(probe)
    assert await store.deliveries.breakers() == {"hook": probe}


async def test_an_expired_lease_is_leased_again_then_dead_lettered(store: Backend):
    (seq,) = await append(store, make_event())
    async with store.transaction() as tx:
        deliveries = store.deliveries.writes(tx)
        await deliveries.add("pull", seq, T0)
        (first,) = (await deliveries.lease("pull", 1, T0, 10.0, max_attempts=2)).leased
    assert await store.deliveries.count_exhausted("pull", 1, T2) == 1
    async with store.transaction() as tx:
        deliveries = store.deliveries.writes(tx)
        (second,) = (await deliveries.lease("pull", 1, T1, 10.0, max_attempts=2)).leased
        assert second.lease != first.lease and second.delivery.attempts == 2
        batch = await deliveries.lease("pull", 1, T2, 10.0, max_attempts=2)
    assert batch.leased == [] and [d.delivery.id for d in batch.exhausted] == [
        first.delivery.id]
    found = await store.deliveries.get(first.delivery.id)
    assert found is not None and found.state is DeliveryState.DEADLETTERED
    async with store.transaction() as tx:
        requeued = await store.deliveries.writes(tx).requeue(first.delivery.id, T2)
    assert requeued is not None and requeued.state is DeliveryState.PENDING
    assert requeued.round_attempts == 0


async def test_jobs_are_claimed_by_lease_and_finished_once(store: Backend):
    (seq,) = await append(store, make_event())
    async with store.transaction() as tx:
        jobs = store.jobs.writes(tx)
        job_id = await jobs.add("page", seq, T0, params={"p": 1})
        (claimed,) = await jobs.claim(5, T0, 60.0)
        assert await jobs.claim(5, T0, 60.0) == []  # running, lease not expired
    assert claimed.job.id == job_id and claimed.event.seq == seq
    assert await store.jobs.next_due() == T2
    async with store.transaction() as tx:
        jobs = store.jobs.writes(tx)
        done = await jobs.finish(job_id, claimed.job.lease or "", JobState.SUCCEEDED, T1)
        assert await jobs.finish(job_id, claimed.job.lease or "", JobState.FAILED, T1) is None
    assert done is not None and done.state is JobState.SUCCEEDED
    assert [j.id for j in await store.jobs.page("page")] == [job_id]


# -- the event catalog --------------------------------------------------------------------
async def test_catalog_merges_what_each_flush_saw(store: Backend):
    first = CatalogEntry("tests/src", "t.x", T0, T1, 3, 2, 30.0, 0.01, False, 3,
                         {"data": FieldStat(("object",), 3), "data.a": FieldStat(("integer",), 3)})
    async with store.transaction() as tx:
        (stored,) = await store.catalog.writes(tx).merge([first], max_fields=3)
    assert stored == first
    # Another flush (this process later, or another replica): counts add up, types join,
    # the newest gap, rate and silence win, the field cap holds.
    later = CatalogEntry("tests/src", "t.x", T1, T2, 2, 1, 20.0, 0.02, True, 2,
                         {"data.a": FieldStat(("string",), 1), "data.b": FieldStat(("null",), 2),
                          "data.c": FieldStat(("null",), 2)})
    async with store.transaction() as tx:
        (merged,) = await store.catalog.writes(tx).merge([later], max_fields=3)
    assert merged == CatalogEntry(
        "tests/src", "t.x", T0, T2, 5, 3, 20.0, 0.02, True, 5,
        {"data": FieldStat(("object",), 3), "data.a": FieldStat(("integer", "string"), 4),
         "data.b": FieldStat(("null",), 2)}, truncated=True)
    assert await store.catalog.entries() == [merged]


async def test_a_rolled_back_catalog_merge_leaves_nothing(store: Backend):
    entry = CatalogEntry("tests/src", "t.y", T0, T0, 1, 1, None, 0.0, False, 0, {})
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await store.catalog.writes(tx).merge([entry], max_fields=10)
            raise RuntimeError("abort")
    assert await store.catalog.entries() == []


# -- the dedupe window and retention -------------------------------------------------------
DAY1 = "2026-11-25T10:00:00.000000Z"
DAY2 = "2026-11-26T23:00:00.000000Z"
DAY3 = "2026-11-27T00:00:01.000000Z"


async def test_a_repeat_is_a_duplicate_inside_the_window_and_new_outside(store: Backend):
    event = make_event(id="retry-me")
    (first,) = await append(store, event, recvtime=DAY1)
    async with store.transaction() as tx:
        [inside] = await store.events.writes(tx).append_many([item(event)], DAY2)
    assert inside.duplicate and inside.seq == first
    # Two days on, the original lies outside the current and previous period.
    async with store.transaction() as tx:
        [outside, again] = await store.events.writes(tx).append_many(
            [item(event), item(event)], DAY3)
    assert not outside.duplicate and outside.seq > first
    assert again.duplicate and again.seq == outside.seq
    found = await store.events.find(event["source"], "retry-me")
    assert found is not None and found.seq == outside.seq
    listed = await store.events.read(source=event["source"], id="retry-me")
    assert [e.seq for e in listed] == [first, outside.seq]


async def test_retention_removes_what_nothing_needs_and_keeps_the_rest(store: Backend):
    seqs = await append(store, *[make_event(type=f"t.{i}") for i in range(8)])
    assert await store.events.retained_from() == 1
    async with store.transaction() as tx:
        item_ = await store.todos.writes(tx).insert(queue="q", key="k", title="t",
                                                    priority=None, seq=seqs[1], at=T0)
        await store.todos.writes(tx).add_event(item_.id, seqs[2])
        await store.deliveries.writes(tx).add("hook", seqs[3], T0)
        await store.jobs.writes(tx).add("page", seqs[4], T0)
        await store.events.writes(tx).add_targets([TargetRecord(seqs[0], "r", "queue:q")])
    candidates = await store.retention.scan(0, 100)
    assert [c.seq for c in candidates] == seqs and candidates[0].type == "t.0"
    async with store.transaction() as tx:
        removal = await store.retention.writes(tx).remove(seqs[:6], cut=seqs[5])
    assert (removal.removed, removal.needed) == (2, 4)
    assert [e.seq for e in await store.events.read()] == seqs[1:5] + seqs[6:]
    assert await store.events.get(seqs[0]) is None
    assert await store.events.targets_of(seqs[0]) == []
    assert await store.retention.cut() == seqs[5]
    assert await store.events.retained_from() == seqs[5] + 1
    assert [c.seq for c in await store.retention.scan(0, 100, upto=seqs[5])] == seqs[1:5]
    usage = await store.retention.usage(count=True, size=True)
    assert usage.events == 6 and usage.bytes > 0


# -- migrations ---------------------------------------------------------------------------
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
    store = SqliteBackend(path, durability="normal")
    await store.open()
    try:
        stored = await store.events.find("tests/suite", "from-v1")
        assert stored is not None and stored.event == event
        async with store.transaction() as tx:
            result = await store.events.writes(tx).append(*item(event)[:2], "t",
                                                          item(event)[2])
        assert result.duplicate
    finally:
        await store.close()
    (current,) = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()
    assert current == migrations("sqlite")[-1][0]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_target_hits_of_a_previous_release_move_into_their_events(
    backend: str, tmp_path: Path
):
    """A store of the previous release (hits in `event_targets`), then opened: every
    event lists the hits it had, as it listed them (by route then target, an empty
    detail as {}), the table is gone, and a later hit is added beside them."""
    events = [make_event(id=f"hit-{n}") for n in range(4)]
    kept = [(1, "r2", "queue:b", b'{"todo":1,"key":"k","opened":true}'),
            (1, "r1", "queue:a", None),
            (1, "r1", "subscription:s", b'{"delivery":3}'),
            (3, "subscription:s", "subscription:s", b'{"duplicate":true}')]
    if backend == "sqlite":
        path = tmp_path / "previous.db"
        conn = sqlite_store_before(path, "_targets_in_row.sql")
        for event in events:
            raw = orjson.dumps(event)
            conn.execute("INSERT INTO events (source, id, type, recvtime, digest, body)"
                         " VALUES (?,?,?,?,x'',?)",
                         (event["source"], event["id"], event["type"], T0, raw))
        conn.executemany("INSERT INTO event_targets VALUES (?, ?, ?, ?)", kept)
        conn.close()
        store: Backend = SqliteBackend(path, durability="normal")
    else:
        from broker.store.postgres import log as pglog
        from broker.store.postgres.backend import PgBackend
        from broker.store.postgres.connection import PgOptions, connect
        from tests.pg_support import PG_URL, create_schema_async, drop_schema_async, with_schema

        schema = await create_schema_async()
        url = with_schema(PG_URL, schema)
        pg = await connect(PgOptions(url))
        try:
            async with pg.transaction():
                await pg.execute("CREATE TABLE opsbus_migrations (version int PRIMARY KEY,"
                                 " name text NOT NULL, applied_at timestamptz NOT NULL"
                                 " DEFAULT now())")
                for version, name, sql in migrations("postgres"):
                    if name.endswith("_targets_in_row.sql"):
                        break
                    await pg.execute(sql)
                    await pg.execute("INSERT INTO opsbus_migrations (version, name)"
                                     " VALUES ($1, $2)", version, name)
            await pglog.ensure_partition(pg, T0)
            async with pg.transaction():
                await pglog.append(pg, [pglog.NewEvent(e, raw, digest_of(raw), 0) for e, raw
                                        in ((e, orjson.dumps(e)) for e in events)], T0)
                await pg.executemany("INSERT INTO event_targets VALUES ($1, $2, $3, $4)",
                                     [(seq, r, t, d and d.decode()) for seq, r, t, d in kept])
        finally:
            await pg.close()
        store = PgBackend(PgOptions(url, pool_size=2))
    await store.open()
    try:
        listed = {seq: [(t.route, t.target, t.detail)
                        for t in await store.events.targets_of(seq)] for seq in (1, 2, 3)}
        assert listed == {
            1: [("r1", "queue:a", {}), ("r1", "subscription:s", {"delivery": 3}),
                ("r2", "queue:b", {"todo": 1, "key": "k", "opened": True})],
            2: [],
            3: [("subscription:s", "subscription:s", {"duplicate": True})]}
        async with store.transaction() as tx:
            await store.events.writes(tx).add_targets([
                TargetRecord(1, "r1", "queue:a", {"again": True}),
                TargetRecord(1, "dead", "queue:z", {"todo": 2})])
        assert [(t.route, t.target, t.detail) for t in await store.events.targets_of(1)] == [
            ("dead", "queue:z", {"todo": 2}), *listed[1]]
    finally:
        await store.close()
        if backend == "postgresql":
            await drop_schema_async(schema)
    if backend == "sqlite":
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'event_targets'"
                             ).fetchall() == []
        conn.close()


async def test_due_times_in_epoch_seconds_become_stamps(tmp_path: Path):
    path = tmp_path / "old.db"
    conn = sqlite_store_before(path, "_stamps.sql")
    event = make_event(id="due")
    raw = orjson.dumps(event)
    conn.execute("INSERT INTO events (source, id, type, recvtime, digest, body)"
                 " VALUES (?,?,?,?,?,?)",
                 (event["source"], event["id"], event["type"], T0, digest_of(raw), raw))
    conn.execute("INSERT INTO deliveries (subscription, seq, state, next_at, first_at,"
                 " created_at, updated_at) VALUES ('hook', 1, 'pending', 1795600800.25,"
                 " 1795600800.0, ?, ?)", (T0, T0))
    conn.execute("INSERT INTO action_jobs (action, seq, state, next_at, created_at,"
                 " updated_at) VALUES ('page', 1, 'pending', 1795600830.5, ?, ?)", (T0, T0))
    conn.close()
    store = SqliteBackend(path, durability="normal")
    await store.open()
    try:
        assert await store.deliveries.next_due("hook") == "2026-11-25T10:00:00.250000Z"
        (delivery,) = await store.deliveries.page("hook")
        assert delivery.first_at == T0
        assert await store.jobs.next_due() == "2026-11-25T10:00:30.500000Z"
    finally:
        await store.close()


async def test_a_store_of_the_previous_release_upgrades_to_hashed_identity(tmp_path: Path):
    """Built by the previous release's migrations (text identity index, foreign keys on
    the log), then opened: every event reads back, dedupe and links use the hashes."""
    path = tmp_path / "previous.db"
    conn = sqlite_store_before(path, "_hashed_identity.sql")
    events = [make_event(id=f"old-{i}", correlationid="incident-7") for i in range(300)]
    for event in events:
        raw = orjson.dumps(event)
        conn.execute("INSERT INTO events (source, id, type, recvtime, correlationid, digest,"
                     " body) VALUES (?,?,?,?,?,?,?)",
                     (event["source"], event["id"], event["type"], T0, "incident-7",
                      digest_of(raw), raw))
    conn.execute("INSERT INTO deliveries (subscription, seq, state, next_at, first_at,"
                 " created_at, updated_at) VALUES ('hook', 2, 'pending', ?, ?, ?, ?)",
                 (T0, T0, T0, T0))
    conn.close()
    store = SqliteBackend(path, durability="normal")
    await store.open()
    try:
        stored = await store.events.read(limit=1000)
        assert [e.event for e in stored] == events
        assert [e.seq for e in await store.events.read(correlationid="incident-7",
                                                         limit=1000)] == list(range(1, 301))
        async with store.transaction() as tx:
            [again, fresh] = await store.events.writes(tx).append_many(
                [item(events[5]), item(make_event(id="new"))], T0)
        assert again.duplicate and again.seq == 6 and fresh.seq == 301
        # The log no longer carries foreign keys: retention may remove a settled event.
        async with store.transaction() as tx:
            removal = await store.retention.writes(tx).remove([1, 2], cut=2)
        assert (removal.removed, removal.needed) == (1, 1)
    finally:
        await store.close()
    report = await SqliteBackend(path).check()
    assert report.ok, report.findings
async def test_tokens_are_added_once_found_by_digest_and_revoked(store: Backend):
    from broker.auth.model import TokenRecord

    ana = TokenRecord("ana", "a" * 64, ("operate", "read"), (), T0, "admin")
    ci = TokenRecord("ci", "c" * 64, ("publish",), ("ci/*",), T0, "admin")
    async with store.transaction() as tx:
        writes = store.tokens.writes(tx)
        assert await writes.add(ana) and await writes.add(ci)
        assert not await writes.add(TokenRecord("ana", "b" * 64, ("read",), (), T0, "x"))
    assert await store.tokens.by_digest("a" * 64) == ana
    assert await store.tokens.by_digest("c" * 64) == ci
    assert await store.tokens.by_digest("b" * 64) is None
    assert [t.name for t in await store.tokens.all()] == ["ana", "ci"]
    async with store.transaction() as tx:
        assert await store.tokens.writes(tx).revoke("ana")
        assert not await store.tokens.writes(tx).revoke("nobody")
    assert await store.tokens.by_digest("a" * 64) is None
    assert [t.name for t in await store.tokens.all()] == ["ci"]
