"""One event size limit (`max_event_bytes`) at every way in: publishers are refused with
413, the broker's own records (proxy captures, action results) are elided to fit."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from broker.bus.sizing import ELIDED, elided
from broker.errors import TooLarge
from tests.broker_process import BrokerProcess
from tests.conftest import BATCH, STRUCTURED, make_event
from tests.delivery_support import Receiver, call, put_object
from tests.plugin_helpers import events_of, eventually, post_source
from tests.todos_support import item_of
from tests.upstream import Upstream

LIMIT = 4000
BIG = "x" * (LIMIT + 500)

FATTEN = '''
def register(registry):
    def fatten(event):
        if event["type"] != "fatten.me":
            return event
        return {**event, "data": {"pad": "p" * 5000}}
    registry.transform("fatten", fatten)
'''


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = Upstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream
           ) -> Iterator[BrokerProcess]:
    root = tmp_path_factory.mktemp("size-limit")
    (root / "plugins").mkdir()
    (root / "plugins" / "fatten.py").write_text(FATTEN)
    config = root / "opsbus.toml"
    config.write_text(textwrap.dedent(f"""
        [plugins]
        paths = ["./plugins"]
        transforms = ["fatten"]

        [plugins.webhook.mappings.blob]
        type = "blob.sent"
        source = "blob"

        [[proxy]]
        name = "erp"
        upstream = "{upstream.url}"
        capture_bodies = true
        max_body_capture = 65536

        [[queues]]
        name = "work"

        [[routes]]
        name = "work"
        filter = {{ exact = {{ type = "size.work" }} }}
        targets = ["queue:work"]
    """))
    proc = BrokerProcess(root / "data", config=config,
                         args=["--durability", "off", "--max-event-bytes", str(LIMIT),
                               "--allow-private-targets", "--delivery-poll-s", "0.1"]).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = await Receiver().start()
    try:
        yield rec
    finally:
        await rec.stop()


async def post(http: Any, broker: BrokerProcess, body: bytes, headers: dict[str, str]
               ) -> tuple[int, dict[str, Any]]:
    async with http.post(broker.url + "/v1/events", data=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


def assert_too_large(status: int, problem: dict[str, Any]) -> None:
    assert status == 413, problem
    assert problem["status"] == 413 and problem["limit"] == LIMIT, problem
    assert str(LIMIT) in problem["detail"]


async def test_http_single_binary_and_batch_are_refused(broker, http):
    big = make_event(data={"blob": BIG})
    assert_too_large(*await post(http, broker, orjson.dumps(big), STRUCTURED))
    binary = {"ce-specversion": "1.0", "ce-id": str(uuid.uuid4()), "ce-source": "tests/size",
              "ce-type": "size.binary", "Content-Type": "application/json"}
    assert_too_large(*await post(http, broker, orjson.dumps({"blob": BIG}), binary))
    batch = [make_event(), make_event(data={"blob": BIG})]
    status, problem = await post(http, broker, orjson.dumps(batch), BATCH)
    assert_too_large(status, problem)
    assert problem["index"] == 1
    for event in (big, *batch):
        assert await events_of(http, broker, id=event["id"]) == []


async def test_a_transform_cannot_push_an_event_past_the_limit(broker, http):
    """The check is in the write path: an event that grows after the HTTP parse (here in
    a plugin transform) is refused all the same."""
    event = make_event(type="fatten.me")
    assert_too_large(*await post(http, broker, orjson.dumps(event), STRUCTURED))
    assert await events_of(http, broker, id=event["id"]) == []
    small = make_event(type="size.other")
    status, _ = await post(http, broker, orjson.dumps(small), STRUCTURED)
    assert status == 201


async def test_a_webhook_mapping_over_the_limit_is_refused(broker, http):
    marker = uuid.uuid4().hex
    status, problem = await post_source(http, broker, "webhook/blob",
                                        orjson.dumps({"marker": marker, "blob": BIG}))
    assert_too_large(status, problem)
    assert await events_of(http, broker, source="blob") == []
    status, answer = await post_source(http, broker, "webhook/blob",
                                       orjson.dumps({"marker": marker}))
    assert status == 200, answer


async def test_an_edited_reemit_over_the_limit_is_refused(broker, http):
    event = make_event(type="size.work", data={"n": 1})
    status, answer = await post(http, broker, orjson.dumps(event), STRUCTURED)
    assert status == 201
    item = await item_of(http, broker.url, answer["seq"])
    async with http.post(f"{broker.url}/v1/todos/{item}/reemit",
                         json={"operator": "ana", "data": {"blob": BIG}}) as resp:
        assert_too_large(resp.status, await resp.json(content_type=None))
    copies = await events_of(http, broker, type="size.work")
    assert [e["id"] for e in copies] == [event["id"]]
    history = (await call(http, "GET", f"{broker.url}/v1/todos/{item}", expect=200))["history"]
    assert "reemitted" not in [h["action"] for h in history]


async def test_a_proxy_capture_is_elided_to_fit(broker, http, upstream):
    body = orjson.dumps({"note": BIG})
    async with http.post(f"{broker.url}/proxy/erp/api/v1/orders", data=body,
                         headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 201  # the call itself passes through untouched
        assert len(await resp.read()) > LIMIT

    async def capture() -> list[dict[str, Any]]:
        return await events_of(http, broker, source="opsbus/proxy")

    (event,) = await eventually(capture)
    assert len(orjson.dumps(event)) <= LIMIT
    assert ELIDED in orjson.dumps(event).decode()
    assert event["data"]["method"] == "POST" and event["data"]["status"] == 201


async def test_an_action_result_is_elided_to_fit(broker, http, receiver):
    receiver.reply = lambda got: web.json_response({"echo": BIG})
    name, etype = f"big-{uuid.uuid4().hex[:6]}", f"size.act.{uuid.uuid4().hex[:6]}"
    await put_object(http, broker.url, "actions", {"name": name, "url": receiver.url + "/r"})
    await put_object(http, broker.url, "routes", {"name": f"to-{name}",
                                                  "filter": {"exact": {"type": etype}},
                                                  "targets": [f"action:{name}"]})
    status, _ = await post(http, broker, orjson.dumps(make_event(type=etype)), STRUCTURED)
    assert status == 201

    async def result() -> list[dict[str, Any]]:
        return await events_of(http, broker, type="opsbus.action.succeeded", subject=name)

    (event,) = await eventually(result)
    assert len(orjson.dumps(event)) <= LIMIT
    assert event["data"]["ok"] is True and event["data"]["status"] == 200
    assert event["data"]["response"]["body"][ELIDED] > len(BIG)


def test_elision_keeps_the_structure_around_the_biggest_value():
    event = {"specversion": "1.0", "id": "1", "source": "opsbus/x", "type": "t",
             "data": {"keep": "small", "event": {"id": "e", "data": {"blob": BIG, "n": 1}}}}
    size = len(orjson.dumps(event))
    fitted = elided(event, size, LIMIT)
    assert len(orjson.dumps(fitted)) <= LIMIT
    assert fitted["data"]["keep"] == "small"
    assert fitted["data"]["event"]["id"] == "e"
    assert fitted["data"]["event"]["data"] == {"blob": {ELIDED: len(BIG) + 2}, "n": 1}
    assert event["data"]["event"]["data"]["blob"] == BIG  # the original is left alone


def test_elision_refuses_what_cannot_fit():
    event = {"specversion": "1.0", "id": "1", "source": "opsbus/x", "type": "t" * LIMIT,
             "data": {"n": 1}}
    with pytest.raises(TooLarge):
        elided(event, len(orjson.dumps(event)), LIMIT)
