"""Silences: mute new items, still attach and resolve, expire by hand or by themselves."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.broker_process import BrokerProcess
from tests.todos_support import (
    get_json,
    item_of,
    publish,
    targets,
    todo,
    work_event,
    write_config,
)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    folder = tmp_path_factory.mktemp("silences")
    proc = BrokerProcess(folder / "data", config=write_config(folder),
                         args=["--durability", "normal"]).start()
    try:
        yield proc
    finally:
        proc.stop()


async def silence(http: Any, url: str, **body: Any) -> dict[str, Any]:
    body.setdefault("operator", "alice")
    body.setdefault("comment", "maintenance window")
    async with http.post(url + "/v1/silences", json=body) as resp:
        assert resp.status == 201, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data


async def opened_events(http: Any, url: str, after: int) -> list[dict[str, Any]]:
    page = await get_json(http, url, "/v1/events", after=str(after),
                          type="opsbus.todo.opened", limit="1000")
    return page["events"]


async def test_a_key_silence_mutes_new_items_but_not_existing_ones(broker, http):
    url = broker.url
    existing = await item_of(http, url, await publish(http, url, work_event("mute-old")))
    s = await silence(http, url, matcher={"key": "tests/suite/mute-*"}, duration="1h")
    assert s["active"] and s["author"] == "alice" and 3590 < s["remaining_s"] <= 3600

    muted = await publish(http, url, work_event("mute-new"))
    assert (await targets(http, url, muted))["queue:work"] == {
        "silenced": s["id"], "key": "tests/suite/mute-new"}
    assert await opened_events(http, url, muted) == []
    # The event is stored all the same.
    assert (await get_json(http, url, f"/v1/events/{muted}"))["event"]["subject"] == "mute-new"

    # An open item keeps collecting its events, and still resolves.
    assert await item_of(http, url, await publish(http, url, work_event("mute-old"))) == existing
    assert (await todo(http, url, existing))["count"] == 2
    await publish(http, url, work_event("mute-old", status="resolved"))
    assert (await todo(http, url, existing))["state"] == "resolved"

    listed = (await get_json(http, url, "/v1/silences"))["silences"]
    assert s["id"] in [x["id"] for x in listed]

    async with http.delete(f"{url}/v1/silences/{s['id']}", json={"operator": "bob"}) as resp:
        assert resp.status == 200
        ended = await resp.json()
    assert ended["active"] is False and ended["expired_by"] == "bob"
    assert s["id"] not in [x["id"] for x in (await get_json(http, url, "/v1/silences"))[
        "silences"]]
    assert s["id"] in [x["id"] for x in (await get_json(http, url, "/v1/silences", all="true"))[
        "silences"]]
    again = await publish(http, url, work_event("mute-new"))
    assert (await targets(http, url, again))["queue:work"]["opened"] is True


async def test_a_filter_silence_scoped_to_a_queue(broker, http):
    url = broker.url
    s = await silence(http, url, matcher={"filter": "data.labels.alertname = 'Flappy'"},
                      queue="work", duration="1h")
    event = work_event("flap-1")
    event["data"]["labels"]["alertname"] = "Flappy"
    seq = await publish(http, url, event)
    assert (await targets(http, url, seq))["queue:work"]["silenced"] == s["id"]
    # Another queue is not muted by it.
    other = work_event("flap-1", type="test.other")
    other["data"]["labels"]["alertname"] = "Flappy"
    seq = await publish(http, url, other)
    assert (await targets(http, url, seq))["queue:other"]["opened"] is True


async def test_silences_expire_by_themselves(tmp_path, http):
    # On the manual clock the silence ends exactly when the test moves time past it.
    # A minute-long silence: every second advanced runs the broker's periodic passes
    # (a sweep every quarter second here), and an hour of them proves nothing more.
    clocked = BrokerProcess(tmp_path / "data", config=write_config(tmp_path),
                            args=["--durability", "normal"], test_clock=True).start()
    try:
        url = clocked.url
        s = await silence(http, url, matcher={"key": "*/brief-*"}, duration="1m")
        seq = await publish(http, url, work_event("brief-1"))
        assert "silenced" in (await targets(http, url, seq))["queue:work"]

        async def listed() -> list[int]:
            return [x["id"] for x in (await get_json(http, url, "/v1/silences"))["silences"]]

        await clocked.advance(http, 59)
        assert s["id"] in await listed()
        seq = await publish(http, url, work_event("brief-1"))
        assert "silenced" in (await targets(http, url, seq))["queue:work"]
        await clocked.advance(http, 1)
        assert s["id"] not in await listed()
        seq = await publish(http, url, work_event("brief-1"))
        assert (await targets(http, url, seq))["queue:work"]["opened"] is True
        ended = await get_json(http, url, f"/v1/silences/{s['id']}")
        assert ended["active"] is False and ended["remaining_s"] == 0
        assert ended["expired_by"] is None
    finally:
        clocked.stop()


@pytest.mark.parametrize("body", [
    {"matcher": {"key": "x"}, "duration": "1h", "operator": ""},
    {"matcher": {"key": "x"}, "operator": "a"},  # no end
    {"matcher": {"key": "x"}, "duration": "1h", "ends_at": "2030-01-01T00:00:00Z",
     "operator": "a"},
    {"matcher": {"key": "x"}, "ends_at": "2001-01-01T00:00:00Z", "operator": "a"},
    {"matcher": {"key": ""}, "duration": "1h", "operator": "a"},
    {"matcher": {"filter": "type ="}, "duration": "1h", "operator": "a"},
    {"matcher": {"regex": ".*"}, "duration": "1h", "operator": "a"},
    {"matcher": {"key": "x"}, "duration": "soon", "operator": "a"},
    {"matcher": {"key": "x"}, "duration": "1h", "operator": "a", "colour": "red"},
])
async def test_bad_silences_answer_400(broker, http, body):
    async with http.post(broker.url + "/v1/silences", json=body) as resp:
        assert resp.status == 400, body
        assert resp.content_type == "application/problem+json"


async def test_unknown_silence_is_404(broker, http):
    async with http.delete(broker.url + "/v1/silences/999999") as resp:
        assert resp.status == 404
    async with http.get(broker.url + "/v1/silences/999999") as resp:
        assert resp.status == 404
