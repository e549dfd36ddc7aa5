"""A target that fails is undone alone: what it published or scheduled is gone, the
event and the other targets' work stay, and the failure is recorded with the event.
A target kind registered as not writing runs without a savepoint: only what it
scheduled in the write context is undone (publishing is writing)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from broker.bus import StoredEvent, WriteContext
from broker.core import Broker
from broker.events import new_event
from broker.settings import Settings
from tests.conftest import make_event


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Broker]:
    broker = Broker(Settings(data_dir=str(tmp_path / "data")))
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


@pytest.mark.parametrize("writes", [True, False])
async def test_a_failing_target_is_undone_alone_and_recorded(core: Broker, writes: bool):
    ran: list[str] = []

    async def handler(ctx: WriteContext, stored: StoredEvent, route: str, target: str
                      ) -> dict[str, Any]:
        derived = new_event(type=f"reply.{target}", source="tests/replier")
        if writes:
            await ctx.publish(derived, cause=stored)
        ctx.on_commit(lambda: ran.append(target))
        if target == "bad":
            raise RuntimeError("the target broke")
        return {"replied": derived["id"]}

    core.router.register_target("plugin", handler, writes=writes)
    await core.config.put("routes", {"name": "both", "filter": {"exact": {
        "type": "order.placed"}}, "targets": ["plugin:bad", "plugin:good"]})

    event = make_event(type="order.placed")
    (answer,) = await core.bus.publish([event])
    types = [e.type for e in await core.store.events.read(limit=1000)]
    if writes:
        assert "reply.good" in types and "reply.bad" not in types
    assert ran == ["good"]
    targets = {t.target: t.detail for t in await core.store.events.targets_of(answer.seq)}
    assert targets["plugin:bad"] == {"error": "the target broke"}
    assert "replied" in targets["plugin:good"]


async def test_a_target_that_undoes_its_own_work_runs_in_no_step_of_the_routers(
        core: Broker):
    """Registered as undoing its own work (a queue's intake), a target's failure is
    recorded with the event, and the router undoes nothing for it: taking steps around
    what it changes is the handler's part."""
    ran: list[str] = []

    async def handler(ctx: WriteContext, stored: StoredEvent, route: str, target: str
                      ) -> dict[str, Any]:
        ctx.on_commit(lambda: ran.append(target))
        if target == "bad":
            raise RuntimeError("the target broke")
        return {"done": True}

    core.router.register_target("plugin", handler, undoes=True)
    await core.config.put("routes", {"name": "both", "filter": {"exact": {
        "type": "order.placed"}}, "targets": ["plugin:bad", "plugin:good"]})

    (answer,) = await core.bus.publish([make_event(type="order.placed")])
    assert ran == ["bad", "good"]
    targets = {t.target: t.detail for t in await core.store.events.targets_of(answer.seq)}
    assert targets == {"plugin:bad": {"error": "the target broke"},
                       "plugin:good": {"done": True}}


async def test_a_quick_part_acts_first_and_leaves_the_rest_to_its_handler(core: Broker):
    """A target's quick part (a queue attaching an event to an item its transaction
    holds) is tried first on every hit: its detail is recorded and the handler does not
    run; None hands the hit to the handler; its failure is recorded as the handler's."""
    ran: list[str] = []

    def quick(ctx: WriteContext, stored: StoredEvent, route: str, target: str
              ) -> dict[str, Any] | None:
        if target == "bad":
            raise RuntimeError("the quick part broke")
        return {"by": "quick"} if target == "quick" else None

    async def handler(ctx: WriteContext, stored: StoredEvent, route: str, target: str
                      ) -> dict[str, Any]:
        ran.append(target)
        return {"by": "handler"}

    core.router.register_target("plugin", handler, undoes=True, quick=quick)
    await core.config.put("routes", {"name": "three", "filter": {"exact": {
        "type": "order.placed"}}, "targets": ["plugin:quick", "plugin:slow", "plugin:bad"]})

    (answer,) = await core.bus.publish([make_event(type="order.placed")])
    assert ran == ["slow"]
    targets = {t.target: t.detail for t in await core.store.events.targets_of(answer.seq)}
    assert targets == {"plugin:quick": {"by": "quick"}, "plugin:slow": {"by": "handler"},
                       "plugin:bad": {"error": "the quick part broke"}}


async def test_a_failing_unit_undoes_what_its_events_gathered_for_an_item(core: Broker):
    """Two units in one transaction attach events to the same item; the second fails:
    the item, its events and its one announcement are as the first left them."""
    await core.config.put("routes", {"name": "disks", "filter": {"exact": {
        "type": "disk.full"}}, "targets": ["queue:ops"]})
    await core.bus.publish([make_event(type="disk.full", subject="db1")])  # opens it
    stored: list[int] = []

    async def attach(ctx: WriteContext) -> None:
        published = await ctx.publish(make_event(type="disk.full", subject="db1"))
        stored.append(published.seq)

    async def attach_then_fail(ctx: WriteContext) -> None:
        await attach(ctx)
        raise RuntimeError("the unit broke")

    commits = core.bus.commits
    done = await asyncio.gather(core.bus.run(attach), core.bus.run(attach_then_fail),
                                return_exceptions=True)
    assert done[0] is None and isinstance(done[1], RuntimeError)
    assert core.bus.commits == commits + 1, "both units ran in one transaction"
    (item,) = await core.store.todos.page(now="2100-01-01T00:00:00.000000Z", queue="ops")
    assert item.count == 2 and item.event_seq == stored[0]
    assert len(await core.store.todos.event_seqs(item.id)) == 2
    updates = [h for h in await core.store.todos.history(item.id) if h.action == "updated"]
    assert [h.detail["events"] for h in updates] == [[stored[0]]]
    kept = await core.store.events.get(stored[1])  # its seq is free again
    assert kept is None or kept.type != "disk.full"
