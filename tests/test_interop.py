"""Third-party clients against a real broker: the CloudEvents SDK's current API publishing
and receiving, `standardwebhooks` verifying our signatures, `httpx-sse` resuming a stream."""

from __future__ import annotations

import base64
import textwrap
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import orjson
import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_http, to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from httpx_sse import aconnect_sse
from standardwebhooks import Webhook

from tests.broker_process import BrokerProcess
from tests.delivery_support import publish, put_object
from tests.plugin_helpers import events_of

SECRET = "whsec_" + base64.b64encode(b"interop-signing-key-0123456789ab").decode()
SUBJECT = "Größe der Platte \u2013 db 1 (€, 100 %)"
XML = '<alert host="db-1">Größe überschritten</alert>'


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    root = tmp_path_factory.mktemp("interop")
    (root / "opsbus.toml").write_text(textwrap.dedent("""
        [server]
        delivery_poll_s = 0.1
    """))
    proc = BrokerProcess(root / "data", config=root / "opsbus.toml", args=[
        "--allow-private-targets", "--durability", "off"]).start()
    try:
        yield proc
    finally:
        proc.stop()


def auth(broker: BrokerProcess) -> dict[str, str]:
    token = getattr(broker, "token", None)
    return {"Authorization": f"Bearer {token}"} if token else {}


def sdk_event(**attributes) -> CloudEvent:
    data = attributes.pop("data", {"used_pct": 93})
    return CloudEvent({"id": str(uuid.uuid4()), "source": "tests/sdk", "type": "sdk.disk",
                       "time": datetime(2026, 11, 25, 10, tzinfo=UTC), **attributes}, data)


async def post(http, broker, message: HTTPMessage) -> dict:
    async with http.post(broker.url + "/v1/events", data=message.body,
                         headers={**message.headers, **auth(broker)}) as resp:
        assert resp.status == 201, await resp.text()
        return await resp.json()


async def test_the_sdk_publishes_in_every_mode(broker, http):
    fmt = JSONFormat()
    binary = sdk_event(subject=SUBJECT, datacontenttype="application/json", team="storage ops")
    structured = sdk_event(subject=SUBJECT, datacontenttype="application/json")
    raw = sdk_event(datacontenttype="application/octet-stream", data=bytes(range(256)))
    await post(http, broker, to_binary(binary, fmt))
    await post(http, broker, to_structured(structured, fmt))
    await post(http, broker, to_structured(raw, fmt))  # the SDK writes data_base64
    stored = {e["id"]: e for e in await events_of(http, broker, source="tests/sdk")}
    for sent in (binary, structured):
        event = stored[sent.get_id()]
        assert event["subject"] == SUBJECT and event["data"] == {"used_pct": 93}
    assert stored[binary.get_id()]["team"] == "storage ops"
    assert base64.b64decode(stored[raw.get_id()]["data_base64"]) == bytes(range(256))


async def test_the_sdk_receives_our_deliveries(broker, http, receiver):
    for mode in ("binary", "structured"):
        await put_object(http, broker.url, "subscriptions", {
            "name": f"sdk-{mode}", "type": "push", "url": f"{receiver.url}/{mode}",
            "content_mode": mode, "filter": {"exact": {"type": "interop.delivered"}}})
    sent_json = await publish(http, broker.url, type="interop.delivered", subject=SUBJECT,
                              data={"n": 1})
    sent_bytes = await publish(http, broker.url, type="interop.delivered",
                               datacontenttype="application/octet-stream", data=...,
                               data_base64=base64.b64encode(b"\x00\xffraw").decode())
    got = await receiver.wait_for(4)
    fmt = JSONFormat()
    for request in got:
        event = from_http(HTTPMessage(dict(request.headers), request.body), fmt)
        if event.get_id() == sent_json["id"]:
            assert event.get_subject() == SUBJECT  # percent-decoded by the SDK
            assert event.get_data() == {"n": 1}
        else:
            assert event.get_id() == sent_bytes["id"]
            assert event.get_data() == b"\x00\xffraw"
    assert sorted(r.path for r in got) == ["/binary", "/binary", "/structured", "/structured"]


async def test_standard_webhooks_verifies_our_signatures(broker, http, receiver):
    for mode in ("binary", "structured"):
        await put_object(http, broker.url, "subscriptions", {
            "name": f"signed-{mode}", "type": "push", "url": f"{receiver.url}/{mode}",
            "content_mode": mode, "secret": SECRET,
            "filter": {"exact": {"type": "interop.signed"}}})
    sent = await publish(http, broker.url, type="interop.signed", datacontenttype="text/xml",
                         data=XML)
    got = {r.path: r for r in await receiver.wait_for(2)}
    hook = Webhook(SECRET)
    structured = hook.verify(got["/structured"].body, got["/structured"].headers)
    assert structured["id"] == sent["id"] and structured["data"] == XML
    # Binary mode: the body is the event's data (here XML), so no JSON parsing.
    assert hook.verify(got["/binary"].body, got["/binary"].headers, json_parse=False) is None
    assert got["/binary"].body.decode() == XML
    forged = {**got["/binary"].headers, "webhook-id": "msg_forged"}
    with pytest.raises(Exception, match="signature"):
        hook.verify(got["/binary"].body, forged, json_parse=False)


async def test_httpx_sse_resumes_with_last_event_id(broker, http):
    first = [await publish(http, broker.url, type="interop.sse", data={"n": n})
             for n in range(3)]
    filter_ = {"filter": "type = 'interop.sse'", "after": str(first[0]["seq"] - 1)}
    async with httpx.AsyncClient(base_url=broker.url, headers=auth(broker),
                                 timeout=30) as client:
        seen = []
        async with aconnect_sse(client, "GET", "/v1/stream", params=filter_) as source:
            async for sse in source.aiter_sse():
                if sse.event == "cloudevent":
                    seen.append((int(sse.id), orjson.loads(sse.data)["data"]["n"]))
                if len(seen) == 2:
                    break
        last_id = str(seen[-1][0])
        more = [await publish(http, broker.url, type="interop.sse", data={"n": n})
                for n in range(3, 5)]
        resumed = []
        async with aconnect_sse(client, "GET", "/v1/stream",
                                params={"filter": filter_["filter"]},
                                headers={"Last-Event-ID": last_id}) as source:
            async for sse in source.aiter_sse():
                if sse.event == "cloudevent":
                    resumed.append((int(sse.id), orjson.loads(sse.data)["data"]["n"]))
                if len(resumed) == 3:
                    break
    assert [n for _, n in seen] == [0, 1]
    assert [n for _, n in resumed] == [2, 3, 4]
    assert [s for s, _ in resumed] == [first[2]["seq"], more[0]["seq"], more[1]["seq"]]
