"""Live readers never lose events: a reader that falls behind the hub, or whose socket
is full, catches up from the store by seq and rejoins live (a real broker in process,
a real SQLite file)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from broker.bus import StoredEvent, canonical, digest_of
from broker.core import Broker
from broker.follow import follow
from broker.settings import Settings
from tests.conftest import make_event


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    instance = Broker(Settings(data_dir=str(tmp_path / "data"), durability="off"))
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()


async def publish(broker: Broker, count: int) -> list[int]:
    answers = await broker.bus.publish([make_event() for _ in range(count)])
    return [a.seq for a in answers]


async def test_a_reader_that_falls_behind_catches_up_from_the_store(broker: Broker):
    reader = follow(broker.store.events, broker.hub, 0, buffer=8, heartbeat=0.05)
    got: list[int] = []
    sent = await publish(broker, 5)
    got += [e.seq for e in await anext(reader)]
    # While the reader is not reading, commits far beyond its mailbox arrive.
    for _ in range(6):
        sent += await publish(broker, 10)
    assert broker.hub.overflows >= 1
    while len(got) < len(sent):
        got += [e.seq for e in await anext(reader)]
    assert got == sent
    await reader.aclose()


async def test_a_full_socket_sends_a_direct_reader_back_to_the_store(broker: Broker):
    delivered: list[int] = []  # in the order the client would see them
    direct: list[int] = []
    refuse = True

    def write_now(batch: list[StoredEvent]) -> bool:
        direct.extend(e.seq for e in batch)
        delivered.extend(e.seq for e in batch)
        return not refuse  # "the socket buffer is full" until the reader drains it

    async def read() -> list[StoredEvent]:
        batch = await anext(reader)
        delivered.extend(e.seq for e in batch)
        return batch

    reader = follow(broker.store.events, broker.hub, 0, buffer=8, heartbeat=0.05, direct=write_now)
    sent = await publish(broker, 3)
    await read()                                 # caught up: the next read goes direct
    assert await read() == []                    # idle tick; the sink is installed now
    sent += await publish(broker, 4)             # written directly, then "full"
    assert broker.hub.overflows == 1
    refuse = False
    sent += await publish(broker, 4)             # meanwhile more commits arrive
    while len(delivered) < len(sent):
        await read()                             # the rest comes from the store
    for _ in range(3):                           # back to direct writes once caught up
        assert await read() == []
    sent += await publish(broker, 2)
    assert delivered == sent                     # every event once, in seq order
    assert direct[-2:] == sent[-2:]
    await reader.aclose()


async def commit_without_fan_out(broker: Broker, count: int) -> list[StoredEvent]:
    """Commit events to the store as the writer does, without the hub's fan-out yet:
    the moment between COMMIT and the writer handing the batch to the hub."""
    events = [make_event() for _ in range(count)]
    items = [(e, canonical(e), digest_of(canonical(e))) for e in events]
    async with broker.store.transaction() as tx:
        results = await broker.store.events.writes(tx).append_many(
            items, "2026-11-25T10:00:00.000000Z")
    return [await broker.store.events.get(r.seq) for r in results]  # type: ignore[misc]


async def test_events_read_from_the_store_and_then_fanned_out_are_delivered_once(
        broker: Broker):
    # The subscribe-then-read race, forced: the reader subscribes, its store read already
    # sees a commit whose fan-out reaches the mailbox only afterwards.
    committed = await commit_without_fan_out(broker, 3)
    reader = follow(broker.store.events, broker.hub, 0, buffer=64, heartbeat=0.05)
    assert [e.seq for e in await anext(reader)] == [e.seq for e in committed]
    later = await commit_without_fan_out(broker, 1)
    broker.hub.publish(committed + later)  # the writer's fan-out of both commits
    assert [e.seq for e in await anext(reader)] == [later[0].seq]
    await reader.aclose()


async def test_a_direct_reader_drops_what_it_already_read(broker: Broker):
    written: list[int] = []

    def write_now(batch: list[StoredEvent]) -> bool:
        written.extend(e.seq for e in batch)
        return True

    reader = follow(broker.store.events, broker.hub, 0, buffer=64, heartbeat=0.05, direct=write_now)
    assert await anext(reader) == []             # caught up; the sink is installed
    committed = await commit_without_fan_out(broker, 2)
    sub = next(iter(broker.hub._subscribers))
    assert sub.sink is not None
    sub.sink(committed)
    sub.sink(committed + await commit_without_fan_out(broker, 1))
    assert written == [committed[0].seq, committed[1].seq, committed[1].seq + 1]
    await reader.aclose()


async def test_the_hub_hands_out_batches_in_seq_order_whatever_the_writer_gave(
        broker: Broker):
    committed = await commit_without_fan_out(broker, 4)
    reader = follow(broker.store.events, broker.hub, committed[-1].seq, buffer=64, heartbeat=0.05)
    assert await anext(reader) == []
    more = await commit_without_fan_out(broker, 4)
    # An event, its derived event, the next event...: append order, not seq order.
    broker.hub.publish([more[0], more[2], more[1], more[3]])
    broker.hub.publish([more[1]])                # already fanned out: never again
    assert [e.seq for e in await anext(reader)] == [e.seq for e in more]
    await reader.aclose()


async def test_a_batch_after_a_gap_sends_readers_to_the_store_for_the_gap(broker: Broker):
    # Commits made by another process on a shared database are not fanned out here: a
    # local batch that does not follow the hub's head must not be handed out before them.
    reader = follow(broker.store.events, broker.hub, 0, buffer=64, heartbeat=0.05)
    assert await anext(reader) == []
    sent = await publish(broker, 2)
    assert [e.seq for e in await anext(reader)] == sent
    elsewhere = await commit_without_fan_out(broker, 3)  # as another process would
    local = await commit_without_fan_out(broker, 2)
    broker.hub.publish(local)
    got: list[int] = []
    while len(got) < 5:
        got += [e.seq for e in await anext(reader)]
    assert got == [e.seq for e in elsewhere + local]
    assert broker.hub.overflows == 1
    await reader.aclose()
