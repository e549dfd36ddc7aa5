"""The bus's own events do not amplify: a route sees them only when it names them, a
subscription never gets its own dead letters or breaker events, and the events one root
event causes are bounded, with one loop notice per root (real broker, real receivers)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.broker_process import BrokerProcess
from tests.delivery_support import Receiver, call, eventually, publish, put_object

LIMIT = 4


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    # One broker per test: a catch-all subscription left by another test would take
    # this test's events too.
    proc = BrokerProcess(tmp_path / "data", args=[
        "--allow-private-targets", "--delivery-poll-s", "0.1", "--durability", "normal",
        "--max-descendants", str(LIMIT)]).start()
    try:
        yield proc
    finally:
        proc.stop()


def refusing(received: Any) -> web.Response:
    return web.Response(status=400, text="no")


async def family(http, base: str, root_id: str) -> list[dict[str, Any]]:
    """The root event and every event derived from it (they share its correlation)."""
    page = await call(http, "GET", f"{base}/v1/events?correlationid={root_id}&limit=1000",
                      expect=200)
    root = await call(http, "GET", f"{base}/v1/events?id={root_id}", expect=200)
    return [e["event"] for e in root["events"] + page["events"]]


async def settled(http, base: str, name: str) -> list[dict[str, Any]] | None:
    """The subscription's deliveries once none is pending or in flight."""
    page = await call(http, "GET", f"{base}/v1/subscriptions/{name}/deliveries", expect=200)
    deliveries = page["deliveries"]
    if any(d["state"] in ("pending", "leased") for d in deliveries):
        return None
    return deliveries


async def test_a_match_all_webhook_that_refuses_everything_gets_one_delivery(
        broker, http, receiver: Receiver):
    # "Send everything to our chat webhook", and the webhook answers 400.
    name = f"all-{uuid.uuid4().hex[:8]}"
    receiver.reply = refusing
    await put_object(http, broker.url, "subscriptions", {
        "name": name, "type": "push", "url": receiver.url + "/hook", "filter": {}})
    sent = await publish(http, broker.url, type="test.anything")

    async def dead_letter_item() -> list[dict[str, Any]]:
        events = await family(http, broker.url, sent["id"])
        return [e for e in events if e["type"] == "opsbus.todo.opened"]

    await eventually(dead_letter_item)
    deliveries = await eventually(lambda: settled(http, broker.url, name))
    # The dead letter and the todo item it opened are the bus's own events: a filter of
    # {} does not name them, so they were never delivered back to the webhook.
    assert [d["seq"] for d in deliveries] == [sent["seq"]]
    assert len(receiver.requests) == 1
    types = [e["type"] for e in await family(http, broker.url, sent["id"])]
    assert types == ["test.anything", "opsbus.delivery.deadlettered", "opsbus.todo.opened"]


async def test_a_webhook_naming_the_bus_events_is_bounded_with_one_notice(
        broker, http, receiver: Receiver):
    # This one asks for the bus's todo events and loop notices too, and refuses them all:
    # each refusal dead-letters into the same item, whose update it is sent again...
    name = f"ops-{uuid.uuid4().hex[:8]}"
    etype = f"test.{name}"
    receiver.reply = refusing
    await put_object(http, broker.url, "subscriptions", {
        "name": name, "type": "push", "url": receiver.url + "/hook",
        "filter": {"any": [{"exact": {"type": etype}}, {"prefix": {"type": "opsbus."}}]}})
    sent = await publish(http, broker.url, type=etype)

    async def notice() -> list[dict[str, Any]]:
        events = await family(http, broker.url, sent["id"])
        return [e for e in events if e["type"] == "opsbus.loop.detected"]

    [loop] = await eventually(notice)
    await eventually(lambda: settled(http, broker.url, name))
    events = await family(http, broker.url, sent["id"])
    # LIMIT events in all, the one loop notice included.
    assert len(events) - 1 == LIMIT
    assert [e["type"] for e in events].count("opsbus.loop.detected") == 1
    assert loop["data"]["reason"] == "descendant_limit" and loop["data"]["limit"] == LIMIT
    assert loop["data"]["root"]["id"] == sent["id"]
    # Its own dead letters were never sent to it; the other events were, once each.
    dead_letters = [e for e in events if e["type"] == "opsbus.delivery.deadlettered"]
    delivered = {r.json.get("id") if r.headers.get("Content-Type", "").startswith(
        "application/cloudevents") else r.headers.get("ce-id") for r in receiver.requests}
    assert dead_letters and not delivered & {e["id"] for e in dead_letters}
    assert len(receiver.requests) == len(events) - len(dead_letters)
