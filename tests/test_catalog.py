"""The event catalog against a real broker on the test clock: drift announcements for an
added, a removed and a retyped field and for a silent producer, routed to a queue like
any event; the listing; the CONFORMS() filter function; a restart keeps what was learned."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.broker_process import BrokerProcess
from tests.cli_support import run_cli
from tests.conftest import STRUCTURED, make_event
from tests.delivery_support import call
from tests.plugin_helpers import eventually
from tests.todos_support import write_config

LEARN = 3
CONFIG = """
[[queues]]
name = "drift"
group_key = "{subject}"
title = "{subject} changed"

[[routes]]
name = "drift"
filter = { prefix = { type = "opsbus.catalog." } }
targets = ["queue:drift"]

[[queues]]
name = "misfits"
group_key = "{id}"

[[routes]]
name = "misfits"
filter = { sql = "source = 'tests/conform' AND NOT CONFORMS()" }
targets = ["queue:misfits"]
"""
ARGS = ["--durability", "off", "--catalog-learn-events", str(LEARN),
        "--catalog-interval-s", "10", "--catalog-silence-factor", "3",
        "--catalog-silence-min-s", "0"]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path / "data", config=write_config(tmp_path, CONFIG), args=ARGS,
                         test_clock=True).start()
    try:
        yield proc
    finally:
        proc.stop()


async def publish(http: Any, broker: BrokerProcess, source: str, type_: str,
                  data: Any) -> int:
    event = make_event(source=source, type=type_, data=data)
    async with http.post(broker.url + "/v1/events", data=orjson.dumps(event),
                         headers=STRUCTURED) as resp:
        assert resp.status == 201, await resp.text()
        return int((await resp.json())["seq"])


async def announcements(http: Any, broker: BrokerProcess) -> list[dict[str, Any]]:
    page = await call(http, "GET", broker.url + "/v1/events?type=opsbus.catalog.changed"
                      "&limit=1000", expect=200)
    return [item["event"] for item in page["events"]]


async def announced(http: Any, broker: BrokerProcess, count: int) -> list[dict[str, Any]]:
    """The first `count` announcements, once that many were published (they follow
    the commit that showed the drift)."""
    async def enough() -> list[dict[str, Any]] | None:
        found = await announcements(http, broker)
        return found if len(found) >= count else None

    found = await eventually(enough)
    assert len(found) == count, found
    return found


ORDER = {"id": 7, "status": "paid", "customer": {"name": "ana", "vip": True}}


async def test_drift_announces_added_removed_and_retyped_fields(broker, http):
    source, type_ = "tests/shop", "shop.order.paid"
    for _ in range(LEARN):
        await publish(http, broker, source, type_, ORDER)
    await publish(http, broker, source, type_, ORDER)  # the same shape: nothing to say
    added = await publish(http, broker, source, type_,
                          {**ORDER, "coupon": {"code": "X", "pct": 10}})
    (first,) = await announced(http, broker, 1)
    assert first["source"] == "opsbus/catalog" and first["subject"] == type_
    assert first["causationid"] and first["data"]["seq"] == added
    assert first["data"]["source"] == source and first["data"]["type"] == type_
    # The new object is one change, not one per field inside it.
    assert first["data"]["changes"] == [
        {"change": "added", "path": "data.coupon", "types": ["object"]}]

    without = {k: v for k, v in ORDER.items() if k != "customer"}
    await publish(http, broker, source, type_, without)
    second = (await announced(http, broker, 2))[1]
    assert second["data"]["changes"] == [
        {"change": "removed", "path": "data.customer", "types": ["object"]}]

    await publish(http, broker, source, type_, {**ORDER, "id": "7"})
    third = (await announced(http, broker, 3))[2]
    assert third["data"]["changes"] == [
        {"change": "retyped", "path": "data.id", "from": ["integer"], "to": ["string"]}]

    # Routable like any event: the route naming opsbus.catalog. put them in a queue.
    items = (await call(http, "GET", broker.url + "/v1/todos?queue=drift", expect=200))["items"]
    assert len(items) == 1 and items[0]["count"] == 3
    assert items[0]["title"] == f"{type_} changed"

    entry = await call(http, "GET", f"{broker.url}/v1/catalog/{source}/{type_}", expect=200)
    shape = entry["shape"]
    assert shape["data.id"] == {"types": ["integer", "string"], "required": True, "seen": 7}
    assert shape["data.customer.name"]["required"] is False
    assert shape["data.coupon.pct"] == {"types": ["integer"], "required": False, "seen": 1}
    assert entry["count"] == 7 and entry["sampled"] == 7


async def test_a_silent_producer_is_announced_once_and_its_return_too(broker, http):
    source, type_ = "tests/cron", "backup.finished"
    for _ in range(4):  # four arrivals, 10 s apart: the usual gap is 10 s
        await publish(http, broker, source, type_, {"ok": True})
        await broker.advance(http, 10)
    await broker.advance(http, 10)  # 20 s quiet: within 3 x the usual gap
    assert await announcements(http, broker) == []
    await broker.advance(http, 10)  # 30 s quiet: not more than 3 x 10 yet
    assert await announcements(http, broker) == []
    await broker.advance(http, 10)  # 40 s: silent
    (silent,) = await announcements(http, broker)
    change = silent["data"]["changes"][0]
    assert change["change"] == "silent" and change["usual_gap_s"] == 10.0
    assert change["silent_for_s"] == 40.0 and change["allowed_s"] == 30.0
    assert "causationid" not in silent
    listed = (await call(http, "GET", broker.url + "/v1/catalog", expect=200))["entries"]
    assert [e["silent"] for e in listed if e["type"] == type_] == [True]

    await broker.advance(http, 100)  # announced once, not at every check
    assert len(await announcements(http, broker)) == 1

    await publish(http, broker, source, type_, {"ok": True})
    back = (await announced(http, broker, 2))[1]
    assert back["data"]["changes"] == [
        {"change": "resumed", "silent_for_s": 140.0, "usual_gap_s": 10.0}]


async def test_the_listing(broker, http):
    await publish(http, broker, "github.com/org/repo", "github.push", {"ref": "main"})
    await broker.advance(http, 5)
    await publish(http, broker, "github.com/org/repo", "github.push", {"ref": "dev"})
    await publish(http, broker, "tests/other", "other.thing", "plain text")
    listing = await call(http, "GET", broker.url + "/v1/catalog", expect=200)
    assert listing["enabled"] is True
    entries = {(e["source"], e["type"]): e for e in listing["entries"]}
    # The bus's own events are not catalogued (announcements would feed the catalog).
    assert set(entries) == {("github.com/org/repo", "github.push"),
                            ("tests/other", "other.thing")}
    push = entries[("github.com/org/repo", "github.push")]
    assert push["count"] == 2 and push["arrivals"] == 2 and push["usual_gap_s"] == 5.0
    assert push["first_seen"] < push["last_seen"] and push["rate_per_s"] > 0
    assert "shape" not in push
    # A source with slashes: the last segment is the type.
    one = await call(http, "GET", broker.url + "/v1/catalog/github.com/org/repo/github.push",
                     expect=200)
    assert one["shape"] == {"data": {"types": ["object"], "required": True, "seen": 2},
                            "data.ref": {"types": ["string"], "required": True, "seen": 2}}
    other = await call(http, "GET", broker.url + "/v1/catalog/tests/other/other.thing",
                       expect=200)
    assert other["shape"] == {"data": {"types": ["string"], "required": True, "seen": 1}}
    async with http.get(broker.url + "/v1/catalog/tests/other/nothing.here") as resp:
        assert resp.status == 404
        assert resp.content_type == "application/problem+json"


async def test_conforms_routes_what_does_not_fit_the_learned_shape(broker, http):
    source, type_ = "tests/conform", "conform.reading"
    seqs = [await publish(http, broker, source, type_, {"value": n, "unit": "C"})
            for n in range(LEARN)]
    fits = await publish(http, broker, source, type_, {"value": 9, "unit": "C"})
    odd = await publish(http, broker, source, type_, {"value": "9", "unit": "C"})
    short = await publish(http, broker, source, type_, {"value": 9})
    misfits = (await call(http, "GET", broker.url + "/v1/todos?queue=misfits",
                          expect=200))["items"]
    assert sorted(i["first_event_seq"] for i in misfits) == [odd, short]
    assert fits not in [i["first_event_seq"] for i in misfits] and seqs

    async def evaluate(data: Any) -> Any:
        event = make_event(source=source, type=type_, data=data)
        return await call(http, "POST", broker.url + "/v1/filters/evaluate",
                          {"expression": "CONFORMS()", "event": event}, expect=200)

    assert (await evaluate({"value": 1, "unit": "K"}))["value"] is True
    assert (await evaluate({"value": 1, "unit": "K", "extra": 1}))["value"] is False
    unknown = make_event(source="tests/new", type=f"new.{uuid.uuid4().hex[:6]}", data={})
    answer = await call(http, "POST", broker.url + "/v1/filters/evaluate",
                        {"expression": "CONFORMS()", "event": unknown}, expect=200)
    assert answer == {**answer, "value": True, "error": None}


async def test_a_restart_keeps_the_catalog(broker, http):
    source, type_ = "tests/keep", "keep.me"
    for _ in range(LEARN):
        await publish(http, broker, source, type_, {"a": 1})
    before = await call(http, "GET", f"{broker.url}/v1/catalog/{source}/{type_}", expect=200)
    broker.stop()
    broker.start()
    after = await call(http, "GET", f"{broker.url}/v1/catalog/{source}/{type_}", expect=200)
    del before["rate_per_s"], after["rate_per_s"]  # decayed to the (new) clock's now
    assert after == before
    # What was learned stays learned: a new field is drift straight away.
    await publish(http, broker, source, type_, {"a": 1, "b": 2})
    (drift,) = await announced(http, broker, 1)
    assert drift["data"]["changes"] == [{"change": "added", "path": "data.b",
                                         "types": ["integer"]}]
    await publish(http, broker, source, type_, {"a": 2})  # no drift: written by the flush
    await broker.advance(http, 10)
    broker.kill()
    broker.start()
    again = await call(http, "GET", f"{broker.url}/v1/catalog/{source}/{type_}", expect=200)
    assert again["count"] == LEARN + 2 and again["shape"]["data.b"]["seen"] == 1


async def test_the_command_line(broker, http):
    for ref in ("main", "dev"):
        await publish(http, broker, "github.com/org/repo", "github.push", {"ref": ref})
        await broker.advance(http, 90)
    code, out, err = await run_cli("catalog", "--url", broker.url)
    assert code == 0, err
    header, row = out.splitlines()
    assert header.split()[:4] == ["SOURCE", "TYPE", "COUNT", "RATE/MIN"]
    assert row.split()[:3] == ["github.com/org/repo", "github.push", "2"]
    assert "1.5m" in row.split()  # the usual gap

    code, out, err = await run_cli("catalog", "--url", broker.url, "--json")
    assert code == 0 and orjson.loads(out)["entries"][0]["count"] == 2

    code, out, err = await run_cli("catalog", "--url", broker.url, "github.com/org/repo",
                                   "github.push")
    assert code == 0, err
    assert out.splitlines()[0] == "github.push from github.com/org/repo"
    assert ["data.ref", "string", "required", "2"] in [line.split() for line in
                                                        out.splitlines()]

    code, out, err = await run_cli("catalog", "--url", broker.url, "nosuch", "no.type")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "no.type" in err and "nosuch" in err
    code, out, err = await run_cli("catalog", "--url", broker.url, "only-a-source")
    assert code == 1 and "SOURCE and TYPE" in err
