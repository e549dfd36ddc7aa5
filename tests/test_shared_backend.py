"""What a broker does when another process commits to the same database (what a shared
backend such as PostgreSQL reports through `Backend.start_live`): two brokers in this
process on one SQLite file stand in for two replicas; the report is made by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from broker.core import Broker
from broker.follow import follow
from broker.settings import Settings
from tests.conftest import make_event


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[tuple[Broker, Broker]]:
    settings = Settings(data_dir=str(tmp_path / "data"), durability="off")
    first, second = Broker(settings), Broker(settings)
    await first.start()
    await second.start()
    try:
        yield first, second
    finally:
        await second.stop()
        await first.stop()


async def test_events_committed_elsewhere_reach_live_readers_in_seq_order(replicas):
    here, there = replicas
    reader = follow(here.store.events, here.hub, 0, buffer=64, heartbeat=0.05)
    assert await anext(reader) == []
    elsewhere = [a.seq for a in await there.bus.publish([make_event() for _ in range(3)])]
    local = [a.seq for a in await here.bus.publish([make_event() for _ in range(2)])]
    # The local commit came after the others: it is not handed out before them.
    got: list[int] = []
    while len(got) < 5:
        got += [e.seq for e in await anext(reader)]
    assert got == elsewhere + local
    await reader.aclose()


async def test_a_watch_report_wakes_readers_and_refreshes_pauses(replicas):
    here, there = replicas
    await here.config.put("subscriptions", {"name": "pulled", "type": "pull",
                                            "filter": {"exact": {"type": "x"}}})
    await there.config.refresh()
    reader = follow(here.store.events, here.hub, 0, buffer=64, heartbeat=0.05)
    assert await anext(reader) == []
    published = await there.bus.publish([make_event()])
    await there.delivery.service.set_paused("pulled", True, "ana")
    assert not here.delivery.service.is_paused("pulled")
    # What a shared backend's live tail does: hand over the others' commits in order,
    # then report them (SQLite, written by one process, never has to).
    stored = await here.store.events.get(published[0].seq)
    assert stored is not None
    here.hub.publish([stored])
    await here.delivery.remote_commit()
    assert [e.seq for e in await anext(reader)] == [published[0].seq]
    assert here.delivery.service.is_paused("pulled")
    await reader.aclose()
