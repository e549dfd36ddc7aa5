"""Input read one way only: an event giving a member twice is refused (parsers disagree on
which one counts), binary-mode booleans are `true`/`false` as CloudEvents spells them, and
a method an endpoint does not take is answered with that endpoint's own `Allow`."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import orjson
import pytest

from tests.broker_process import AUTH, BrokerProcess
from tests.conftest import BATCH, STRUCTURED
from tests.delivery_support import events_of_type, eventually, put_object
from tests.security.problems import assert_problem, call

HEAD = b'"specversion":"1.0","source":"tests/strict","type":"strict.event"'


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path_factory.mktemp("strict") / "data",
                         args=["--durability", "normal", "--allow-private-targets"]).start()
    try:
        yield proc
    finally:
        proc.stop()


def stored_ids(broker: BrokerProcess) -> list[str]:
    status, doc, _ = call(broker, "GET", "/v1/events?source=tests/strict&limit=1000")
    assert status == 200, doc
    return [e["event"]["id"] for e in doc["events"]]


# -- members given twice -------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "name"), [
    (b'{' + HEAD + b',"id":"a","id":"b"}', "id"),
    (b'{"id":"a",' + HEAD + b',"type":"other"}', "type"),
    (b'{"id":"a",' + HEAD + b',"source":"elsewhere"}', "source"),
    (b'{"id":"a",' + HEAD + b',"specversion":"1.0"}', "specversion"),
    (b'{"id":"a",' + HEAD + b',"subject":"x","subject":"y"}', "subject"),
    (b'{"id":"a",' + HEAD + b',"severity":"low","severity":"high"}', "severity"),
    (b'{"id":"a",' + HEAD + b',"data":1,"data":2}', "data"),
    # Written with an escape: still the same member to every parser.
    (b'{"id":"a",' + HEAD + b',"\\u0069d":"b"}', "id"),
    (b'{ "id" : "a" ,' + HEAD + b',\n "id"\t: "b"}', "id"),
])
def test_a_member_given_twice_is_refused(broker: BrokerProcess, body: bytes,
                                         name: str) -> None:
    status, doc, _ = call(broker, "POST", "/v1/events", raw=body, headers=STRUCTURED)
    assert_problem(status, doc, 400, "more than once", attribute=name)
    assert "a" not in stored_ids(broker) and "b" not in stored_ids(broker)


def test_a_batch_names_the_event_with_a_repeated_member(broker: BrokerProcess) -> None:
    body = (b'[{"id":"ok-1",' + HEAD + b'},{"id":"ok-2",' + HEAD + b'},'
            b'{"id":"dup",' + HEAD + b',"id":"other"}]')
    status, doc, _ = call(broker, "POST", "/v1/events", raw=body, headers=BATCH)
    assert_problem(status, doc, 400, "batch entry 2", attribute="id", index=2)
    assert not {"ok-1", "ok-2", "dup", "other"} & set(stored_ids(broker))


def test_repeated_names_inside_data_are_the_data_own_business(broker: BrokerProcess) -> None:
    # Names reused inside data, or as values, take the exact path and pass.
    body = (b'{"id":"nested",' + HEAD + b',"subject":"id",'
            b'"data":{"id":1,"type":"t","source":"s","inner":{"id":2,"id":3}}}')
    status, doc, _ = call(broker, "POST", "/v1/events", raw=body, headers=STRUCTURED)
    assert status == 201, doc
    status, stored, _ = call(broker, "GET", f"/v1/events/{doc['seq']}")
    assert stored["event"]["data"] == {"id": 1, "type": "t", "source": "s", "inner": {"id": 3}}


def test_huge_numbers_in_data_do_not_trip_the_check(broker: BrokerProcess) -> None:
    body = (b'{"id":"big",' + HEAD + b',"data":{"id":' + b"9" * 5000 + b',"id":1}}')
    status, doc, _ = call(broker, "POST", "/v1/events", raw=body, headers=STRUCTURED)
    assert 400 <= status < 500, doc  # orjson refuses the number itself, as before


# -- booleans in binary mode ---------------------------------------------------------------------

async def test_binary_replay_false_is_not_a_replay(broker: BrokerProcess, receiver) -> None:
    async with aiohttp.ClientSession(headers=AUTH) as http:
        name, etype = "flags", "strict.flags"
        await put_object(http, broker.url, "subscriptions", {
            "name": name, "type": "push", "url": receiver.url + "/hook",
            "filter": {"exact": {"type": etype}}})

        async def post(event_id: str, **flags: str) -> None:
            headers = {"ce-specversion": "1.0", "ce-id": event_id, "ce-source": "tests/flags",
                       "ce-type": etype, "Content-Type": "application/json",
                       **{f"ce-{k}": v for k, v in flags.items()}}
            async with http.post(broker.url + "/v1/events", data=b"{}",
                                 headers=headers) as resp:
                assert resp.status == 201, await resp.text()

        await post("not-a-replay", replay="false")
        await post("a-replay", replay="run-7")
        await post("a-replay-shouted-live", replay="run-8", replaylive="TRUE")
        await post("a-live-replay", replay="run-9", replaylive="true")
        got = await receiver.wait_for(2)
        assert sorted(r.headers["ce-id"] for r in got) == ["a-live-replay", "not-a-replay"]

        async def recorded() -> list[dict]:
            found = await events_of_type(http, broker.url, "opsbus.action.recorded",
                                         subject=f"subscription:{name}")
            return found if len(found) == 2 else []

        records = await eventually(recorded)
        assert sorted(r["data"]["replay"] for r in records) == ["run-7", "run-8"]
        assert len(receiver.requests) == 2


# -- 405 and Allow ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("POST", "/v1/config/status", {"GET", "HEAD"}),
    ("DELETE", "/v1/config/status", {"GET", "HEAD"}),
    ("PUT", "/v1/events", {"GET", "HEAD", "POST"}),
    ("DELETE", "/v1/stream", {"GET", "HEAD"}),
    ("POST", "/v1/routes/some-route", {"GET", "HEAD", "PUT", "DELETE"}),
    ("PATCH", "/v1/queues", {"GET", "HEAD", "POST"}),
    ("GET", "/v1/filters/evaluate", {"POST"}),
])
def test_method_not_allowed_names_the_right_methods(broker: BrokerProcess, method: str,
                                                    path: str, allowed: set[str]) -> None:
    status, doc, headers = call(broker, method, path, {} if method != "GET" else None)
    assert_problem(status, doc, 405, method)
    assert {m.strip() for m in headers["allow"].split(",")} == allowed


def test_config_kinds_still_answer(broker: BrokerProcess) -> None:
    spec = {"name": "allow-q"}
    status, doc, _ = call(broker, "PUT", "/v1/queues/allow-q", spec)
    assert status == 201, doc
    status, doc, _ = call(broker, "GET", "/v1/queues")
    assert status == 200 and any(q["name"] == "allow-q" for q in doc["queues"]), doc
    status, doc, _ = call(broker, "GET", "/v1/nosuchkind")
    assert status == 404, doc
    status, doc, _ = call(broker, "GET", "/v1/config/status")
    assert status == 200 and orjson.dumps(doc), doc
