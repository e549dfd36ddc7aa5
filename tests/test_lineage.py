"""Lineage: derived events carry causationid, correlationid and hopcount; a reply loop is
stopped at the hop limit and reported as `opsbus.loop.detected` with its causal chain."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from broker.bus import StoredEvent, WriteContext
from broker.core import Broker
from broker.events import new_event
from broker.settings import Settings
from tests.broker_process import BrokerProcess
from tests.conftest import STRUCTURED, make_event

HOP_LIMIT = 3


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Broker]:
    """A broker in this process (real store, real writer) so a test can act as a target."""
    broker = Broker(Settings(data_dir=str(tmp_path / "data"), hop_limit=HOP_LIMIT))
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


def reply_with(event_type: str) -> Any:
    """A `plugin:` target that publishes a derived event, as an action result would."""

    async def handler(ctx: WriteContext, stored: StoredEvent, route: str, target: str
                      ) -> dict[str, Any]:
        derived = new_event(type=event_type, source="tests/replier", subject=stored.id)
        await ctx.publish(derived, cause=stored)
        return {"replied": derived["id"]}

    return handler


async def events_of(broker: Broker) -> list[StoredEvent]:
    return [e for e in await broker.store.events.read(limit=1000)
            if not e.source.startswith("opsbus/plugins")]


async def test_derived_events_carry_causation_correlation_and_hop_count(core: Broker):
    handlers = {"ack": reply_with("order.acked"), "echo": reply_with("order.echoed")}

    async def by_name(ctx: WriteContext, stored: StoredEvent, route: str, target: str) -> Any:
        return await handlers[target](ctx, stored, route, target)

    core.router.register_target("plugin", by_name)
    await core.config.put("routes", {"name": "echo", "filter": {"exact": {
        "type": "order.placed"}}, "targets": ["plugin:echo"]})
    await core.config.put("routes", {"name": "ack", "filter": {"exact": {
        "type": "order.echoed"}}, "targets": ["plugin:ack"]})

    root = make_event(type="order.placed", correlationid="corr-1")
    orphan = make_event(type="order.placed")
    await core.bus.publish([root, orphan])

    by_type: dict[str, list[dict[str, Any]]] = {}
    for stored in await events_of(core):
        by_type.setdefault(stored.type, []).append(stored.event)
    echoed, echoed_orphan = by_type["order.echoed"]
    acked = by_type["order.acked"][0]
    assert (echoed["causationid"], echoed["correlationid"], echoed["hopcount"]) == (
        root["id"], "corr-1", 1)
    assert (acked["causationid"], acked["correlationid"], acked["hopcount"]) == (
        echoed["id"], "corr-1", 2)
    # Without a correlationid of its own, the root's id correlates the whole chain.
    assert echoed_orphan["correlationid"] == orphan["id"]
    # The target hit records what the handler answered.
    targets = await core.store.events.targets_of((await core.store.events.find(
        root["source"], root["id"])).seq)
    assert targets[0].detail == {"replied": echoed["id"]}


async def test_a_reply_loop_is_stopped_at_the_hop_limit(core: Broker):
    core.router.register_target("plugin", reply_with("loop.ping"))
    await core.config.put("routes", {"name": "ping-pong", "filter": {"exact": {
        "type": "loop.ping"}}, "targets": ["plugin:reply"]})

    await core.bus.publish([make_event(type="loop.ping")])

    stored = await events_of(core)
    pings = [e for e in stored if e.type == "loop.ping"]
    # The root and hops 1..limit are routed; hop limit+1 is stored but goes nowhere.
    assert [e.event.get("hopcount", 0) for e in pings] == list(range(HOP_LIMIT + 2))
    assert [e.routes for e in pings] == [("ping-pong",)] * (HOP_LIMIT + 1) + [()]
    (notice,) = [e.event for e in stored if e.type == "opsbus.loop.detected"]
    assert notice["source"] == "opsbus/broker" and notice["causationid"] == pings[-1].id
    assert notice["correlationid"] == pings[0].id
    data = notice["data"]
    assert data["hopcount"] == HOP_LIMIT + 1 and data["limit"] == HOP_LIMIT
    assert [link["seq"] for link in data["chain"]] == [e.seq for e in pings]
    assert data["chain"][0]["routes"] == ["ping-pong"] and data["chain"][-1]["routes"] == []


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path_factory.mktemp("lineage") / "data",
                         args=["--hop-limit", str(HOP_LIMIT)]).start()
    try:
        yield proc
    finally:
        proc.stop()


async def post(http: Any, url: str, event: dict[str, Any]) -> int:
    async with http.post(url + "/v1/events", data=orjson.dumps(event), headers=STRUCTURED) as r:
        assert r.status == 201, await r.text()
        return int((await r.json())["seq"])


async def get(http: Any, url: str, path: str, **params: str) -> Any:
    async with http.get(url + path, params=params) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_events_over_the_hop_limit_are_stored_not_routed_and_reported(served, http):
    url = served.url
    async with http.put(url + "/v1/routes/all-loop-tests", json={
            "filter": {"exact": {"source": "tests/loop"}}, "targets": ["plugin:none"]}) as r:
        assert r.status in (200, 201)
    root = make_event(source="tests/loop", id="root")
    hop1 = make_event(source="tests/loop", id="hop1", causationid="root", hopcount=1)
    at_limit = make_event(source="tests/loop", id="at-limit", causationid="hop1",
                          hopcount=HOP_LIMIT)
    over = make_event(source="tests/loop", id="over", causationid="hop1",
                      hopcount=HOP_LIMIT + 1, correlationid="corr-loop")
    seqs = [await post(http, url, e) for e in (root, hop1, at_limit, over)]

    at_limit_stored = await get(http, url, f"/v1/events/{seqs[2]}")
    assert at_limit_stored["routes"] == ["all-loop-tests"]
    over_stored = await get(http, url, f"/v1/events/{seqs[3]}")
    assert over_stored["routes"] == [] and over_stored["targets"] == []

    found = await get(http, url, "/v1/events", type="opsbus.loop.detected")
    notices = [e["event"] for e in found["events"]]
    (notice,) = [n for n in notices if n["data"]["id"] == "over"]
    assert notice["causationid"] == "over" and notice["correlationid"] == "corr-loop"
    assert [link["id"] for link in notice["data"]["chain"]] == ["root", "hop1", "over"]
    assert notice["data"]["chain"][0]["routes"] == ["all-loop-tests"]
    assert not [n for n in notices if n["data"]["id"] == "at-limit"]


async def test_a_chain_across_sources_is_followed_through_its_correlation(served, http):
    # A loop through other systems: each hop republished under its own source, all
    # carrying the root's correlation id.
    url = served.url
    root = make_event(source="tests/loop-a", id="x-root", correlationid="corr-x")
    hop1 = make_event(source="tests/loop-b", id="x-hop1", causationid="x-root",
                      correlationid="corr-x", hopcount=1)
    over = make_event(source="tests/loop-c", id="x-over", causationid="x-hop1",
                      correlationid="corr-x", hopcount=HOP_LIMIT + 1)
    for event in (root, hop1, over):
        await post(http, url, event)

    found = await get(http, url, "/v1/events", type="opsbus.loop.detected")
    (notice,) = [e["event"] for e in found["events"] if e["event"]["data"]["id"] == "x-over"]
    assert [link["id"] for link in notice["data"]["chain"]] == ["x-root", "x-hop1", "x-over"]


async def test_a_hop_count_sent_as_a_header_string_still_counts(served, http):
    # A webhook receiver that copies ce- headers back republishes hopcount as a string.
    headers = {"ce-specversion": "1.0", "ce-id": "binary-over", "ce-source": "tests/loop",
               "ce-type": "test.binary", "ce-hopcount": str(HOP_LIMIT + 1),
               "Content-Type": "application/json"}
    async with http.post(served.url + "/v1/events", data=b"{}", headers=headers) as resp:
        assert resp.status == 201
    found = await get(http, served.url, "/v1/events", type="opsbus.loop.detected",
                      filter="data.id = 'binary-over'")
    assert len(found["events"]) == 1
